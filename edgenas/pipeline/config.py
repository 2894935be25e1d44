"""What a build is asked for, checked before anything costly starts (importable without torch)."""

from __future__ import annotations

import math
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from pathlib import Path

from edgenas.compile.build import LAYOUTS, CompileConfig
from edgenas.compress.prune_config import CompressConfig
from edgenas.compress.quantize import QuantizeConfig
from edgenas.errors import BadInput
from edgenas.measure.backends import AUTO_BACKEND, BACKENDS
from edgenas.search.search_config import SearchConfig
from edgenas.supernet.train_config import TrainConfig
from edgenas.tables.key import PRECISIONS, check_precision
from edgenas.tables.deployment import AUTO


@dataclass(frozen=True)
class DeployConfig:
    """Where the artifact runs and how it is measured there: what every stage that measures, compiles or judges for
    the target reads (whether it can measure here follows from the target and `rpc_tracker`: `Context.measures_here`)."""

    target: str = "host"
    #: the runtime that ships, whose table the search trusts and on which the budget is checked; auto: every runtime
    #: that can run the target, measured, and the fastest ships (`tables.deployment`)
    backend: str = AUTO_BACKEND
    #: what ships, and so the table the search budgets against; auto: int8 where it runs faster than fp32, measured
    precision: str = AUTO
    layout: str = CompileConfig.layout  # TVM's convolution layout
    threads: int | None = None  # on the device [default: the target's]
    repeat: int | None = None  # timed samples per measurement [default: the backend's]
    rpc_tracker: str | None = None  # HOST:PORT of the TVM RPC tracker that reaches the board
    rpc_key: str | None = None  # the board's key there
    tuning_db: Path | None = None  # the TVM tuning database compile applies

    def __post_init__(self):
        if self.precision != AUTO:
            check_precision(self.precision)
            if self.precision not in PRECISIONS:
                raise BadInput(f"--precision {self.precision}: a build ships {' or '.join(PRECISIONS)} ({AUTO}: the "
                               f"faster, measured); {self.precision} is measured by `profile` and `validate` and "
                               f"compiled by `compile` from a {self.precision} ONNX model")
        if self.backend not in (*BACKENDS, AUTO_BACKEND):
            raise BadInput(f"--backend {self.backend}: one of {', '.join((*BACKENDS, AUTO_BACKEND))}")
        if self.layout not in LAYOUTS:
            raise BadInput(f"--layout {self.layout}: one of {', '.join(LAYOUTS)}")
        if self.backend in ("ort", "openvino") and self.rpc_tracker:
            raise BadInput(f"--backend {self.backend} measures on this machine only; a board over RPC needs --backend tvm")


@dataclass(frozen=True)
class BuildConfig:
    budget_ms: float = 2.0
    data: str = "digits"
    space: str = "digits"
    out: Path = Path("runs/build")
    tables: Path | None = None  # the latency tables' directory [default: `paths.tables_dir()`]
    deploy: DeployConfig = field(default_factory=DeployConfig)  # the target, its runtime and how it is measured
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
        for flag, value, least in (("epochs", self.train.epochs, 1), ("calibration", self.quantize.calibration, 1),
                                   ("limit", self.train.limit, 0), ("tune-trials", self.compile.trials, 0)):
            if value < least:
                raise BadInput(f"--{flag} {value}: must be at least {least}")
        minutes = self.compile.tune_minutes
        if minutes is not None and not (math.isfinite(minutes) and minutes > 0):
            raise BadInput(f"--tune-minutes {minutes!r}: must be a positive number of minutes")

    def compile_config(self, rpc=None) -> CompileConfig:
        """The compile stage's config: its own settings, with the deployment's layout, database and board."""
        return replace(self.compile, layout=self.deploy.layout, tuning_db=self.deploy.tuning_db, rpc=rpc)

    @classmethod
    def from_flags(cls, **flags) -> "BuildConfig":
        """`build`'s flags, by the names `cli_options` gives them, as a config: each flag sets the field `FLAGS` names
        (a flag it does not name is a top-level field of its own name; a flag that is neither is an error at once).
        The tools and tests make their configs this way too, by the flags a user would give."""
        tree: dict = {}
        for flag, value in flags.items():
            *parents, name = FLAGS.get(flag, flag).split(".")
            node = tree
            for p in parents:
                node = node.setdefault(p, {})
            node[name] = value
        return _made(cls, tree)

    def to_dict(self) -> dict:
        return _json(asdict(self))


def _made(cls, tree: dict):
    """`cls` from a tree of its fields' values: a subtree makes the dataclass its field's type names."""
    hints = typing.get_type_hints(cls)
    return cls(**{k: _made(hints[k], v) if isinstance(v, dict) and k in hints and is_dataclass(hints[k]) else v
                  for k, v in tree.items()})


def _json(v):
    if isinstance(v, dict):
        return {k: _json(x) for k, x in v.items()}
    return str(v) if isinstance(v, Path) else v


#: which field of the config each flag of `build` sets, as a dotted path; a flag not named here sets the top-level
#: field of its own name (`budget_ms`, `data`, `space`, `out`, `tables`)
FLAGS = {
    **{f.name: f"deploy.{f.name}" for f in fields(DeployConfig)},
    "epochs": "train.epochs", "limit": "train.limit",
    "subnets": "search.subnets", "margin_pct": "search.margin_pct", "strategy": "search.evolution.strategy",
    "population": "search.evolution.population", "generations": "search.evolution.generations",
    "finetune_epochs": "compress.distill.epochs", "prune_ratio": "compress.prune_ratio",
    "calibration": "quantize.calibration", "max_drop": "quantize.max_drop",
    "tune_trials": "compile.trials", "tune_minutes": "compile.tune_minutes",
}
