"""A model bundle: `model.onnx` and `model.json`, the plain hand-over between export, prune, quantize and compile.

`model.json` carries what the ONNX file cannot: how to turn an image into the input tensor, the class
names, the data split the accuracies were measured on, and what each stage did (schema in docs/schemas.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from edgenas.data import DataRecord, Normalization
from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, check_schema, exclusive_lock, now, read_json
from edgenas.space import Arch

SCHEMA, SCHEMA_VERSION = "edgenas.model", 1
MODEL_FILE, INFO_FILE = "model.onnx", "model.json"
#: what to do about a damaged model.json
REDO = "write the bundle again with the verb that made it (export, prune or quantize)"


@dataclass(frozen=True)
class LatencyRecord:
    """The latency a bundle's network is known by: the table's prediction and the measurement of the stage that made it."""
    predicted_ms: float  # the table's corrected prediction, at `precision`
    measured_ms: float | None  # measured as the table measures; None when its target is not this machine
    budget_ms: float  # the search's budget
    table: str  # the table's path
    precision: str = "fp32"  # what the figures are of: the network as it ships

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "LatencyRecord":
        try:
            return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls) if f.name in d})
        except TypeError as e:
            raise BadInput(f"{where}: malformed 'latency' ({e}); {REDO}") from None


@dataclass(frozen=True)
class NetworkRecord:
    """Which network of the search space a bundle holds (in JSON, the architecture's fields beside these)."""
    arch: Arch  # the searched architecture
    encoding: str  # the arch's encoding, extended by `/pruned:<unit>:<mid channels>,...` once pruned
    mid_channels: dict[str, int] | None = None  # after pruning: each prunable unit's hidden channels

    def pruned(self, start: dict[int, int], channels: dict[int, int]) -> "NetworkRecord":
        """The same architecture with its pruned channel counts: compile names the artifact after `encoding`."""
        units = [f"{i}:{channels[i]}" for i, c in start.items() if channels[i] != c]
        return NetworkRecord(self.arch, f"{self.encoding}/pruned:{','.join(units)}", {str(i): channels[i] for i in start})

    def to_dict(self) -> dict:
        d = {**self.arch.to_dict(), "encoding": self.encoding}
        return d if self.mid_channels is None else {**d, "mid_channels": dict(self.mid_channels)}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "NetworkRecord":
        try:
            return cls(Arch.from_dict(d), d["encoding"], d.get("mid_channels"))
        except (BadInput, KeyError, TypeError) as e:
            raise BadInput(f"{where}: malformed 'arch' ({e}); {REDO}") from None


@dataclass(frozen=True)
class StageRecord:
    """One stage's entry in a bundle's history (in JSON, `stage` and `created` beside the report's own fields)."""
    stage: str  # export, prune or quantize
    created: str
    report: dict  # the stage's settings and results: export's `search` and `supernet`, prune's and quantize's reports

    def to_dict(self) -> dict:
        return {"stage": self.stage, "created": self.created, **self.report}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "StageRecord":
        if not (isinstance(d, dict) and isinstance(d.get("stage"), str) and isinstance(d.get("created"), str)):
            raise BadInput(f"{where}: a 'history' entry without its 'stage' and 'created'; {REDO}")
        return cls(d["stage"], d["created"], {k: v for k, v in d.items() if k not in ("stage", "created")})


@dataclass(frozen=True)
class ModelInfo:
    input_name: str
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    layout: str = "NCHW"
    #: uint8 image -> input: x / 255, then (x - mean) / std per channel, then a bilinear antialiased resize
    #: to the input's height and width. None when the model's preprocessing is unknown (a user's ONNX file).
    normalization: Normalization | None = None
    classes: tuple[str, ...] | None = None
    #: the data the accuracies were measured on
    data: DataRecord | None = None
    #: the search-space network it holds; None for a user's ONNX file
    arch: NetworkRecord | None = None
    #: validation accuracy by precision, e.g. {"fp32": 0.985, "int8": 0.983}
    accuracy: dict = field(default_factory=dict)
    #: the latency the search predicted from the table (and pruning updated), with the table it came from
    latency: LatencyRecord | None = None
    #: what produced the model, one entry per stage (export, prune, quantize), oldest first
    history: tuple[StageRecord, ...] = ()

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["input_shape"], d["history"], d["accuracy"] = list(self.input_shape), [h.to_dict() for h in self.history], dict(self.accuracy)
        d["classes"] = list(self.classes) if self.classes is not None else None
        for name in ("normalization", "data", "arch", "latency"):
            d[name] = d[name].to_dict() if d[name] is not None else None
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict, where: str) -> "ModelInfo":
        check_schema(d, where, SCHEMA, SCHEMA_VERSION, "model description", REDO)
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        try:
            kw["input_shape"] = tuple(int(v) for v in kw["input_shape"])
            if kw.get("classes") is not None:
                kw["classes"] = tuple(kw["classes"])
            kw["history"] = tuple(StageRecord.from_dict(h, where) for h in kw.get("history", ()))
            if isinstance(kw.get("latency"), dict):
                kw["latency"] = LatencyRecord.from_dict(kw["latency"], where)
            if kw.get("normalization") is not None:
                kw["normalization"] = Normalization.from_dict(kw["normalization"])
            if kw.get("data") is not None:
                kw["data"] = DataRecord.from_dict(kw["data"], where)
            if kw.get("arch") is not None:
                kw["arch"] = NetworkRecord.from_dict(kw["arch"], where)
            return cls(**kw)
        except (KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: malformed model description ({e}); {REDO}") from None

    def then(self, stage: str, **changes) -> "ModelInfo":
        """This description after one more stage; `changes` replace fields, `record` describes the stage."""
        record = StageRecord(stage, now(), dict(changes.pop("record", {})))
        return dataclasses.replace(self, history=(*self.history, record), **changes)


def resolve(path: Path) -> tuple[Path, Path | None]:
    """The ONNX file and its model.json (None for a bare ONNX file) of a bundle directory or an .onnx path."""
    path = Path(path)
    if path.is_dir():
        onnx_path = path / MODEL_FILE
        if not onnx_path.exists():
            raise BadInput(f"{path}: not a model bundle (no {MODEL_FILE})")
    elif path.exists():
        onnx_path = path
    else:
        raise BadInput(f"{path}: no such file or directory")
    info = onnx_path.parent / INFO_FILE if onnx_path.name == MODEL_FILE else onnx_path.with_suffix(".json")
    return onnx_path, info if info.exists() else None


def load_bundle(path: Path) -> tuple[bytes, ModelInfo | None]:
    onnx_path, info_path = resolve(path)
    info = ModelInfo.from_dict(read_json(info_path, remedy=REDO), str(info_path)) if info_path else None
    return onnx_path.read_bytes(), info


def write_bundle(out_dir: Path, onnx_model: bytes, info: ModelInfo) -> Path:
    out_dir = Path(out_dir)
    with exclusive_lock(out_dir / INFO_FILE):
        atomic_write_bytes(out_dir / MODEL_FILE, onnx_model)
        atomic_write_json(out_dir / INFO_FILE, info.to_dict())
    return out_dir
