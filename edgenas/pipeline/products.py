"""What each stage of a build hands the next: typed, versioned products (schemas in docs/schemas.md).

A product names its files and carries the figures the report reads; the build records `to_dict()` in build.json
and a resumed build gets the same product back with `from_dict()`, so a later stage never reads a directory or a
string-keyed dict to learn what an earlier one made.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import ClassVar

from edgenas.compress.pays import Verdict
from edgenas.errors import BadInput
from edgenas.records import Record

#: the version of every product below; a record holding another is refused by the run record, which names it
PRODUCTS_VERSION = 1


@dataclass(frozen=True)
class Product(Record):
    """A stage's product: a record that names its kind (a product nested in another, such as `NetworkFigures`,
    is written without it)."""
    KIND: ClassVar[str] = ""

    def to_dict(self) -> dict:
        return {"product": self.KIND, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict, where: str = "build.json"):
        if not isinstance(d, dict) or d.get("product", cls.KIND) != cls.KIND:
            raise BadInput(f"{where}: expected a '{cls.KIND}' product, found {d.get('product') if isinstance(d, dict) else d!r}")
        return super().from_dict(d, where)


@dataclass(frozen=True)
class PrecisionProduct(Product):
    """precision: the runtime and precision the build ships, and why; `--backend auto` and `--precision auto`
    measure which is fastest here (`tables.deployment.choose_deployment`)."""
    KIND: ClassVar[str] = "precision"
    precision: str
    why: str  # one line, for the summary
    #: backend -> precision -> the probe networks' latencies (ms); {} when nothing was measured
    measured_ms: dict
    probe: dict | None  # backend -> its probe's file
    backend: str = "tvm"  # the runtime whose table the search budgets against (records before it: tvm)
    passed_over: list = field(default_factory=list)  # one phrase per runtime that could not be measured, and why


@dataclass(frozen=True)
class TableProduct(Product):
    """profile: the table the search budgets against, complete and corrected."""
    KIND: ClassVar[str] = "table"
    table: str  # its path
    entries: int
    precision: str  # what it measured: the network as it ships
    device: str
    overrun_p95_pct: float | None  # held-out 95th-percentile overrun of the corrected predictions


@dataclass(frozen=True)
class SupernetProduct(Product):
    """train: the weight-sharing supernet's run directory."""
    KIND: ClassVar[str] = "supernet"
    run_dir: str
    epochs: int
    resumed_from_epoch: int
    seconds: float
    val_acc_largest: float
    val_acc_smallest: float


@dataclass(frozen=True)
class NetworkFigures(Product):
    """One network as it ships, at the table's precision."""
    KIND: ClassVar[str] = "network-figures"
    macs: int
    params: int
    predicted_ms: float
    measured_ms: float | None  # None when the target does not run here
    val_accuracy: float  # fp32, ONNX Runtime, validation split

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PrunedProduct(Product):
    """prune: the fp32 model bundle that goes on to quantization: the searched network fine-tuned, and pruned when
    pruning paid (`compress.pays`)."""
    KIND: ClassVar[str] = "pruned"
    model: str  # the bundle's directory
    pruned: bool
    before: NetworkFigures  # the searched network as exported, with the supernet's weights
    after: NetworkFigures  # the network that goes on
    units: list  # per prunable unit: layer, unit key, channels before and after ([] when not pruned)
    seconds: float | None
    why_not: str | None  # why the searched network ships unpruned
    tuned: NetworkFigures | None = None  # the searched network fine-tuned (None: no fine-tuning)
    #: the network searched above the budget and pruned against the one searched at it (`--prune-ratio` below 1 only)
    verdict: Verdict | None = None
    #: "searched" and "pruned", measured side by side (None: not measured); before 2026-12-07, "tuned" and "pruned"
    side_by_side_ms: dict[str, float] | None = None
    fit: str | None = None  # pruned to fit the budget: why, with the figures (None: not pruned to fit)
    network: str | None = None  # what ships when it is not the search's network (searched above the budget)
    searched_above: NetworkFigures | None = None  # that network as searched, before it was pruned


@dataclass(frozen=True)
class QuantizedProduct(Product):
    """quantize: the model bundle that is compiled, at the precision that ships."""
    KIND: ClassVar[str] = "quantized"
    model: str
    precision: str
    fp32_accuracy: float
    int8_accuracy: float | None
    drop_points: float | None
    remedy: str
    report: dict | None  # the quantizer's report (`QuantizeReport.to_dict()`); None for an fp32 build
    #: why this precision ships when it is not the precision stage's choice: int8 failed the gate, or this
    #: network measured faster in fp32 (`--precision auto` only); None: the precision stage's reason stands
    why: str | None = None
    #: backend -> precision -> this network's latency (ms) measured side by side with each runtime that may ship it;
    #: None: not measured
    measured_ms: dict | None = None
    backend: str = "tvm"  # the runtime that ships it
    #: the runtime that judged `int8_accuracy`, when it is not the quantizer's judge (int8 ships on another runtime)
    judged_by: str | None = None


@dataclass(frozen=True)
class CompileFacts(Record):
    """How the artifact was made: the runtime that runs it, and for TVM the compile's figures (the artifact's
    `CompileRecord` holds them all)."""
    runtime: str
    seconds: float | None = None  # the whole compile
    tuning: dict | None = None  # the tuning run's report (`compile.tune`); None when nothing was tuned
    ops: dict | None = None  # compute operators and their dtypes, counted after the graph passes
    kernel_layout: str | None = None  # NCHW or NHWC


@dataclass(frozen=True)
class CompiledProduct(Product):
    """compile: the artifact directory, and its own measurement (taken once, when it was packaged)."""
    KIND: ClassVar[str] = "compiled"
    artifact: str
    compile: CompileFacts
    files_bytes: dict
    measured: dict | None  # the artifact's latency record, None when the target does not run here
    #: the library's own validation accuracy, run here (None when the target does not run here)
    accuracy: float | None = None


@dataclass(frozen=True)
class BenchProduct(Product):
    """bench: the artifact's latency against the budget, on the runtime the table measured."""
    KIND: ClassVar[str] = "bench"
    runs: dict  # runtime -> its latency record
    checked_on: str
    statistic: str
    measured_ms: float | None  # the lower of the readings below: other load only ever adds time
    budget_ms: float
    within_budget: bool | None
    recheck: dict | None = None  # a second measurement of `checked_on`, taken when the first read over the budget
    #: more measurements, taken while the ones over the budget were noisy (`measure.timing.readings_against`)
    rechecks: list = field(default_factory=list)
