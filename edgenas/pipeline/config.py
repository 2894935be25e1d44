"""What a build is asked for, checked before anything costly starts (importable without torch)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgenas.compile.build import LAYOUTS, CompileConfig
from edgenas.compress.prune_config import PruneConfig
from edgenas.errors import BadInput
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS
from edgenas.search.evolution_config import EvolutionConfig
from edgenas.supernet.train_config import TrainConfig
from edgenas.tables.key import check_precision
from edgenas.tables.deployment import AUTO


@dataclass(frozen=True)
class BuildConfig:
    target: str = "host"
    budget_ms: float = 2.0
    data: str = "digits"
    #: the runtime that ships, whose table the search trusts and on which the budget is checked; auto: every runtime
    #: that can run the target, measured, and the fastest ships (`tables.deployment`)
    backend: str = AUTO_BACKEND
    #: what ships, and so the table the search budgets against; auto: int8 where it runs faster than fp32, measured
    precision: str = AUTO
    out: Path = Path("runs/build")
    space: str = "digits"
    tables: Path | None = None
    threads: int | None = None
    repeat: int | None = None
    rpc_tracker: str | None = None
    rpc_key: str | None = None
    # train
    epochs: int = TrainConfig.epochs
    limit: int = 0
    # search
    subnets: int = 200
    margin_pct: float | None = None
    evolution: EvolutionConfig = field(default_factory=EvolutionConfig)
    # prune a searched network that fits to this fraction of its predicted latency, kept only when it pays
    # (`compress.pays`: 1.15x measured, so the ratio must ask for more than that); 1: pruned only when it must be, to
    # fit the budget (the search found no network on its front that measured within it)
    prune_ratio: float = 1.0
    finetune_epochs: int = PruneConfig.finetune_epochs  # the searched network's distillation, before any pruning
    # quantize
    calibration: int = 300
    max_drop: float = 1.0  # accuracy points int8 may lose, measured with the runtime that ships
    # compile
    tune_trials: int = 0
    tune_minutes: float | None = None
    layout: str = CompileConfig.layout
    tuning_db: Path | None = None

    def __post_init__(self):
        if not (isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise BadInput(f"--budget-ms {self.budget_ms!r}: must be a positive number of milliseconds")
        if self.precision != AUTO:
            check_precision(self.precision)
        if self.backend not in (*BACKENDS, AUTO_BACKEND):
            raise BadInput(f"--backend {self.backend}: one of {', '.join((*BACKENDS, AUTO_BACKEND))}")
        if self.layout not in LAYOUTS:
            raise BadInput(f"--layout {self.layout}: one of {', '.join(LAYOUTS)}")
        if not 0 < self.prune_ratio <= 1:
            raise BadInput(f"--prune-ratio {self.prune_ratio:g}: must be in (0, 1]; 1 skips pruning")
        if self.backend in ("ort", "openvino") and self.rpc_tracker:
            raise BadInput(f"--backend {self.backend} measures on this machine only; a board over RPC needs --backend tvm")
        for name in ("epochs", "subnets", "calibration"):
            if getattr(self, name) < 1:
                raise BadInput(f"--{name} {getattr(self, name)}: must be at least 1")
        if self.tune_minutes is not None and not (math.isfinite(self.tune_minutes) and self.tune_minutes > 0):
            raise BadInput(f"--tune-minutes {self.tune_minutes!r}: must be a positive number of minutes")
        for name in ("limit", "finetune_epochs", "tune_trials"):
            if getattr(self, name) < 0:
                raise BadInput(f"--{name.replace('_', '-')} {getattr(self, name)}: must be at least 0")

    @classmethod
    def from_flags(cls, **flags) -> "BuildConfig":
        """`build`'s flags, by the names `cli_options` gives them, as a config: the evolution's flags make its own
        config, every other flag is the field of its name (a flag with no field is a programming error, at once)."""
        evolution = EvolutionConfig(flags.pop("strategy"), population=flags.pop("population"),
                                    generations=flags.pop("generations"))
        return cls(evolution=evolution, **flags)

    def to_dict(self) -> dict:
        d = asdict(self)
        return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}
