"""A latency lookup table for one target, backend, thread count and search space (schema in docs/schemas.md)."""

from __future__ import annotations

import datetime as dt
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path

from edgenas.errors import BadInput, EdgenasError, warn
from edgenas.jsonio import atomic_write_json, read_json
from edgenas.space import Arch, SearchSpace
from edgenas.targets import Target

SCHEMA = "edgenas.latency-table"
SCHEMA_VERSION = 1
DEFAULT_SPACE = "digits"

#: The statistic predictions add up. On a shared machine, bursts of interference move the median of a
#: 50 ms window by up to 40% while the fastest repeat moves by about 2% (tools/bench_tables.py).
STATISTIC = "min_ms"

#: Metadata fields that must match for a table to be used or extended: same meaning of every entry.
IDENTITY_FIELDS = ("target", "tvm_target", "backend", "space_hash", "threads", "measured_on")


def table_path(tables_dir: Path, target: Target, backend: str, space: SearchSpace) -> Path:
    base = Path(tables_dir) / target.name
    return base / f"{backend}.json" if space.name == DEFAULT_SPACE else base / space.name / f"{backend}.json"


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def identity(target: Target, backend: str, space: SearchSpace, threads: int, rpc=None) -> dict:
    """What a table's numbers depend on; two tables with different identities are not comparable."""
    return {
        "target": target.name,
        "tvm_target": str(target.tvm) if backend == "tvm" else None,
        "backend": backend,
        "space": space.name,
        "space_hash": space.hash,
        "threads": threads,
        "measured_on": f"rpc:{rpc.key}" if rpc else "local",
    }


def device_info(target: Target, rpc=None) -> dict:
    if rpc:
        return {"board": f"RPC key '{rpc.key}' via tracker {rpc.tracker}", "device": target.device, "arch": target.arch}
    info = {"cpu": cpu_model(), "machine": platform.machine(), "cores": os.cpu_count(), "hostname": platform.node()}
    if target.tvm.kind.name == "llvm":
        info["llvm_cpu"] = str(target.tvm.attrs.get("mcpu", ""))
    return info


@dataclass
class LatencyTable:
    meta: dict
    entries: dict[str, dict] = field(default_factory=dict)
    correction: dict | None = None
    path: Path | None = None

    # ---- persistence --------------------------------------------------------------------------
    def to_json(self) -> dict:
        return {
            "schema": SCHEMA,
            "schema_version": SCHEMA_VERSION,
            "meta": self.meta,
            "correction": self.correction,
            "entries": dict(sorted(self.entries.items())),
        }

    def save(self, path: Path | None = None) -> None:
        self.path = Path(path or self.path)
        self.meta["updated"] = now()
        atomic_write_json(self.path, self.to_json())

    @classmethod
    def load(cls, path: Path) -> "LatencyTable":
        data = read_json(path)
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            raise BadInput(f"{path}: not an edgenas latency table (field 'schema' is not '{SCHEMA}')")
        if data.get("schema_version") != SCHEMA_VERSION:
            raise BadInput(
                f"{path}: schema version {data.get('schema_version')} is not the supported {SCHEMA_VERSION}; re-profile"
            )
        for name in ("meta", "entries"):
            if not isinstance(data.get(name), dict):
                raise BadInput(f"{path}: field '{name}' is missing or not an object")
        for key, e in data["entries"].items():
            if not isinstance(e, dict) or not isinstance(e.get(STATISTIC), (int, float)) or e[STATISTIC] <= 0:
                raise BadInput(f"{path}: entry '{key}' has no positive '{STATISTIC}'")
        return cls(meta=data["meta"], entries=data["entries"], correction=data.get("correction"), path=Path(path))

    @classmethod
    def open(cls, path: Path, expected: dict, target: Target | None = None) -> "LatencyTable":
        """Load a table and refuse it, with the reason, if it was measured for something else."""
        table = cls.load(path)
        table.check(expected)
        if target is not None and expected["measured_on"] == "local":
            here, there = device_info(target), table.meta.get("device", {})
            if (here.get("cpu"), here.get("llvm_cpu")) != (there.get("cpu"), there.get("llvm_cpu")):
                warn(f"{path} was measured on {there.get('cpu')} ({there.get('llvm_cpu')}), this machine is "
                     f"{here.get('cpu')} ({here.get('llvm_cpu')}): its latencies may not hold here; re-profile to be sure")
        return table

    def check(self, expected: dict) -> None:
        got = self.meta.get("identity", {})
        for name in IDENTITY_FIELDS:
            if got.get(name) != expected[name]:
                what = f"space '{got.get('space')}' (hash {got.get(name)})" if name == "space_hash" else repr(got.get(name))
                want = f"space '{expected['space']}' (hash {expected[name]})" if name == "space_hash" else repr(expected[name])
                raise BadInput(f"{self.path}: measured for {name} {what}, not {want}; refused")

    # ---- prediction ---------------------------------------------------------------------------
    def missing(self, space: SearchSpace) -> list:
        return [layer for layer in space.all_layers() if layer.key not in self.entries]

    def raw_ms(self, space: SearchSpace, arch: Arch) -> float:
        """Sum of the measured latencies (`STATISTIC`) of the network's stem, blocks and head."""
        total = 0.0
        for layer in space.layers(arch):
            entry = self.entries.get(layer.key)
            if entry is None:
                raise EdgenasError(f"{self.path}: no entry for {layer.key}; complete it with `edgenas profile --resume`")
            total += entry[STATISTIC]
        return total

    def predict_ms(self, space: SearchSpace, arch: Arch) -> float:
        """Predicted end-to-end latency: the sum of blocks, corrected when `validate` fitted a correction."""
        raw = self.raw_ms(space, arch)
        if not self.correction:
            return raw
        from edgenas.tables.correction import apply_correction

        return apply_correction(self.correction, raw, len(space.layers(arch)))
