"""Pruning settings, kept apart from the pruning code so the CLI can check them without importing torch."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from edgenas.errors import BadInput



@dataclass(frozen=True)
class PruneConfig:
    target_ms: float | None = None  # predicted latency to reach, or
    ratio: float | None = None  # that as a fraction of the model's predicted latency (neither: fine-tuning only)
    step_ms: float | None = None  # latency each NetAdapt step removes [default: (start - target) / steps]
    steps: int = 5  # or the way from the start to the target in this many equal reductions
    finetune_epochs: int = 3  # the final distillation, over the training split (a build's time allows this much)
    candidate_steps: int = 50  # the short distillation of each candidate before it is scored
    batch_size: int = 64
    lr: float = 5e-4  # AdamW; constant for candidates, cosine to zero for the final fine-tune
    holdout: int = 500  # training images kept out of fine-tuning to score candidates (validation is for reporting)
    # channel counts stay multiples of this, and a unit keeps at least this many: ONNX Runtime's int8 kernels on x86
    # take channels 16 at a time, and run a count between two multiples on a much slower path
    multiple: int = 16
    seed: int = 0

    def __post_init__(self):
        if self.target_ms is not None and self.ratio is not None:
            raise BadInput("give one of --target-ms and --prune-ratio, not both")
        if self.ratio is not None and not 0 < self.ratio < 1:
            raise BadInput(f"--prune-ratio {self.ratio:g} must be between 0 and 1 (a fraction of the predicted latency)")
        if self.target_ms is not None and self.target_ms <= 0:
            raise BadInput(f"--target-ms {self.target_ms:g} must be positive")
        if self.step_ms is not None and self.step_ms <= 0:
            raise BadInput(f"--steps-ms {self.step_ms:g} must be positive")
        for name in ("steps", "candidate_steps", "batch_size", "multiple"):
            if getattr(self, name) < 1:
                raise BadInput(f"{name} {getattr(self, name)} must be at least 1")
        if self.finetune_epochs < 0 or self.holdout < 1:
            raise BadInput("finetune_epochs must be at least 0 and holdout at least 1")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class CompressConfig:
    """How a build brings the searched network to what ships: fine-tuned by distillation, then pruned only to fit a
    network that measured over the budget, or also by `prune_ratio` (kept only when it pays, `compress.pays`)."""

    finetune_epochs: int = PruneConfig.finetune_epochs  # the searched network's distillation, before any pruning
    prune_ratio: float = 1.0  # prune a network that fits to this fraction of its predicted latency; 1: only to fit
    steps: int = 2  # NetAdapt steps: a build prunes a short way, fewer than `prune`'s default
    recovery_epochs: int = 1  # the pruned network's own distillation after pruning (NetAdapt's long-term fine-tune)

    def __post_init__(self):
        if not 0 < self.prune_ratio <= 1:
            raise BadInput(f"--prune-ratio {self.prune_ratio:g}: must be in (0, 1]; 1 prunes only to fit the budget")
        if self.finetune_epochs < 0:
            raise BadInput(f"--finetune-epochs {self.finetune_epochs}: must be at least 0")

    def to_dict(self) -> dict:
        return asdict(self)
