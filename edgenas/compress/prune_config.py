"""Fine-tuning and pruning settings, kept apart from the code so the CLI can check them without importing torch."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from edgenas.errors import BadInput
from edgenas.records import Record


@dataclass(frozen=True)
class DistillConfig(Record):
    """How a network of the space learns from the supernet's largest network (`compress.distiller`): one config for
    the searched network's fine-tuning, pruning's candidates and the pruned network's final distillation."""

    epochs: int = 3  # the final distillation over the training split (a build's time allows this much)
    batch_size: int = 64
    lr: float = 5e-4  # AdamW; constant for candidates, cosine to zero for the final distillation
    holdout: int = 500  # training images kept out of the distillation to score candidates (validation is for reporting)
    seed: int = 0

    def __post_init__(self):
        if self.epochs < 0:
            raise BadInput(f"--finetune-epochs {self.epochs}: must be at least 0")
        for name in ("batch_size", "holdout"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} {getattr(self, name)} must be at least 1")


@dataclass(frozen=True)
class PruneConfig(Record):
    target_ms: float | None = None  # predicted latency to reach, or
    ratio: float | None = None  # that as a fraction of the model's predicted latency (neither: fine-tuning only)
    step_ms: float | None = None  # latency each NetAdapt step removes [default: (start - target) / steps]
    steps: int = 5  # or the way from the start to the target in this many equal reductions
    candidate_steps: int = 50  # the short distillation of each candidate before it is scored
    # channel counts stay multiples of this, and a unit keeps at least this many: ONNX Runtime's int8 kernels on x86
    # take channels 16 at a time, and run a count between two multiples on a much slower path
    multiple: int = 16
    distill: DistillConfig = field(default_factory=DistillConfig)  # its `epochs`: the pruned network's, after pruning

    def __post_init__(self):
        if self.target_ms is not None and self.ratio is not None:
            raise BadInput("give one of --target-ms and --prune-ratio, not both")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise BadInput(f"--prune-ratio {self.ratio:g} must be between 0 and 1 (a fraction of the predicted latency)")
        if self.target_ms is not None and self.target_ms <= 0:
            raise BadInput(f"--target-ms {self.target_ms:g} must be positive")
        if self.step_ms is not None and self.step_ms <= 0:
            raise BadInput(f"--steps-ms {self.step_ms:g} must be positive")
        for name in ("steps", "candidate_steps", "multiple"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} {getattr(self, name)} must be at least 1")


@dataclass(frozen=True)
class CompressConfig(Record):
    """How a build brings the searched network to what ships: fine-tuned by distillation, then pruned only to fit a
    network that measured over the budget, or also by `prune_ratio` (kept only when it pays, `compress.pays`)."""

    distill: DistillConfig = field(default_factory=DistillConfig)  # its `epochs`: the searched network's, before pruning
    #: below 1: also search up to budget / prune_ratio and prune that down to the budget, kept when more accurate than
    #: the network searched at the budget (`compress.pays.pruned_from_above_pays`); 1: prune only to fit
    prune_ratio: float = 1.0
    steps: int = 2  # NetAdapt steps: a build prunes a short way, fewer than `prune`'s default
    recovery_epochs: int = 1  # the pruned network's own distillation after pruning (NetAdapt's long-term fine-tune)

    def __post_init__(self):
        if not 0 < self.prune_ratio <= 1:
            raise BadInput(f"--prune-ratio {self.prune_ratio:g}: must be in (0, 1]; 1 prunes only to fit the budget")

    def prune_config(self, target_ms: float) -> PruneConfig:
        """What the build's pruning runs with: its steps, and the same distillation for `recovery_epochs` (none when
        the searched network was not fine-tuned either, so that pruned and unpruned are trained alike)."""
        epochs = self.recovery_epochs if self.distill.epochs else 0
        return PruneConfig(target_ms=target_ms, steps=self.steps, distill=replace(self.distill, epochs=epochs))
