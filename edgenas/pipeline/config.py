"""What a build is asked for, checked before anything costly starts (importable without torch)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from edgenas.compile.build import LAYOUTS, CompileConfig
from edgenas.compress.prune_config import CompressConfig
from edgenas.compress.quantize import QuantizeConfig
from edgenas.errors import BadInput
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS
from edgenas.search.evolution_config import EvolutionConfig
from edgenas.search.search_config import SearchConfig
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
    layout: str = CompileConfig.layout
    tuning_db: Path | None = None
    # each stage's own settings, in the configs the stages and their verbs take
    train: TrainConfig = field(default_factory=TrainConfig)  # the supernet's training (`epochs`, `limit`)
    search: SearchConfig = field(default_factory=SearchConfig)  # `subnets`, `margin_pct`, the evolution
    compress: CompressConfig = field(default_factory=CompressConfig)  # fine-tuning, then pruning to fit
    #: `calibration`, `max_drop` (its `symmetric` is the target's: `qdq.symmetric_for`)
    quantize: QuantizeConfig = field(default_factory=QuantizeConfig)
    #: `trials`, `tune_minutes` (its layout, tuning database and RPC are the deployment's, above)
    compile: CompileConfig = field(default_factory=CompileConfig)

    def __post_init__(self):
        if not (isinstance(self.budget_ms, (int, float)) and math.isfinite(self.budget_ms) and self.budget_ms > 0):
            raise BadInput(f"--budget-ms {self.budget_ms!r}: must be a positive number of milliseconds")
        if self.precision != AUTO:
            check_precision(self.precision)
        if self.backend not in (*BACKENDS, AUTO_BACKEND):
            raise BadInput(f"--backend {self.backend}: one of {', '.join((*BACKENDS, AUTO_BACKEND))}")
        if self.layout not in LAYOUTS:
            raise BadInput(f"--layout {self.layout}: one of {', '.join(LAYOUTS)}")
        if self.backend in ("ort", "openvino") and self.rpc_tracker:
            raise BadInput(f"--backend {self.backend} measures on this machine only; a board over RPC needs --backend tvm")
        for flag, value, least in (("epochs", self.train.epochs, 1), ("calibration", self.quantize.calibration, 1),
                                   ("limit", self.train.limit, 0), ("tune-trials", self.compile.trials, 0)):
            if value < least:
                raise BadInput(f"--{flag} {value}: must be at least {least}")
        minutes = self.compile.tune_minutes
        if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
            raise BadInput(f"--tune-minutes {minutes!r}: must be a positive number of minutes")

    def compile_config(self, rpc=None) -> CompileConfig:
        """The compile stage's config: its own settings, with the deployment's layout, database and board."""
        return replace(self.compile, layout=self.layout, tuning_db=self.tuning_db, rpc=rpc)

    @classmethod
    def from_flags(cls, **flags) -> "BuildConfig":
        """`build`'s flags, by the names `cli_options` gives them, as a config: each stage's flags make its own config
        (`FLAGS`), every other flag is the deployment's field of its name (a flag with neither is an error at once)."""
        made = {}
        for part, (kind, names) in FLAGS.items():
            own = {field_name: flags.pop(flag) for flag, field_name in names.items() if flag in flags}
            if part == "search":
                evolution = {k: own.pop(k) for k in ("strategy", "population", "generations") if k in own}
                own["evolution"] = EvolutionConfig(**evolution)
            made[part] = kind(**own)
        return cls(**made, **flags)

    def to_dict(self) -> dict:
        return _json(asdict(self))


def _json(v):
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    return str(v) if isinstance(v, Path) else v


#: which flag of `build` sets which field of which stage's config: config field -> (its type, {flag: field})
FLAGS = {
    "train": (TrainConfig, {"epochs": "epochs", "limit": "limit"}),
    "search": (SearchConfig, {"subnets": "subnets", "margin_pct": "margin_pct", "strategy": "strategy",
                              "population": "population", "generations": "generations"}),
    "compress": (CompressConfig, {"finetune_epochs": "finetune_epochs", "prune_ratio": "prune_ratio"}),
    "quantize": (QuantizeConfig, {"calibration": "calibration", "max_drop": "max_drop"}),
    "compile": (CompileConfig, {"tune_trials": "trials", "tune_minutes": "tune_minutes"}),
}
