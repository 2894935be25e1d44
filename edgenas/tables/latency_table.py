"""A latency lookup table for one target, device, backend, precision, thread count and search space (docs/schemas.md)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from edgenas.errors import BadInput, EdgenasError
from edgenas.jsonio import atomic_write_json, check_schema, now, read_json
from edgenas.measure.timing import STATISTIC
from edgenas.space import SearchSpace
from edgenas.space.space import LayerSpec
from edgenas.tables.correction import Correction

SCHEMA = "edgenas.latency-table"
#: 2: tables kept per device, with a precision and (TVM) the layout and schedules they were measured with
SCHEMA_VERSION = 2


#: Metadata fields that must match for a table to be used or extended: same meaning of every entry.
IDENTITY_FIELDS = ("target", "tvm_target", "backend", "precision", "layout", "space_hash", "threads", "measured_on", "device")


@dataclass
class LatencyTable:
    meta: dict
    entries: dict[str, dict] = field(default_factory=dict)
    correction: Correction | None = None
    path: Path | None = None

    # ---- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "meta": self.meta,
            "correction": self.correction.to_dict() if self.correction else None,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: Path | None = None) -> None:
        self.path = Path(path or self.path)
        self.meta["updated"] = now()
        atomic_write_json(self.path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        data = check_schema(read_json(path), path, SCHEMA, SCHEMA_VERSION, "latency table",
                            "delete it and run `edgenas profile` again")
        for name in ("meta", "entries"):
            if not isinstance(data.get(name), dict):
                raise BadInput(f"{path}: field '{name}' is missing or not an object")
        for key, e in data["entries"].items():
            v = e.get(STATISTIC) if isinstance(e, dict) else None
            if not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise BadInput(f"{path}: entry '{key}' has no positive '{STATISTIC}'")
        correction = data.get("correction")
        correction = Correction.from_dict(correction, path) if correction is not None else None
        return cls(meta=data["meta"], entries=data["entries"], correction=correction, path=Path(path))

    @classmethod
    def open(cls, path: Path, expected: dict) -> "LatencyTable":
        """Load a table and refuse it, with the reason, if it was measured for something else."""
        table = cls.load(path)
        table.check(expected)
        return table

    @property
    def identity(self) -> dict:
        return self.meta.get("identity", {})

    def check(self, expected: dict) -> None:
        got = self.identity
        # an OpenVINO table also names the ISA cap its kernels ran under (`TableKey.identity`)
        for name in (*IDENTITY_FIELDS, *(["max_cpu_isa"] if "max_cpu_isa" in expected else [])):
            if got.get(name) != expected[name]:
                what = f"space '{got.get('space')}' (hash {got.get(name)})" if name == "space_hash" else repr(got.get(name))
                want = f"space '{expected['space']}' (hash {expected[name]})" if name == "space_hash" else repr(expected[name])
                raise BadInput(f"{self.path}: measured for {name} {what}, not {want}; refused")

    # ---- entries (predictions: `LatencyModel`) ----------------------------------------------------
    def missing(self, space: SearchSpace) -> list:
        return [layer for layer in space.all_layers() if layer.key not in self.entries]

    def entry_ms(self, spec: LayerSpec) -> float:
        """The unit's measured latency (`STATISTIC`); the one place a table's gap is reported."""
        entry = self.entries.get(spec.key)
        if entry is None:
            raise EdgenasError(f"{self.path}: no entry for {spec.key}; complete it with `edgenas profile --resume`")
        return entry[STATISTIC]
