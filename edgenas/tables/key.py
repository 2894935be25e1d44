"""What a latency table is measured for, where it lives, and how to tell whether it still describes what ships."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from edgenas.errors import BadInput
from edgenas.measure.backends import BACKENDS
from edgenas.rpc import RPCSettings
from edgenas.space import SearchSpace
from edgenas.tables.device import device_key
from edgenas.targets import Target

#: The space whose tables sit directly in the device's directory; other spaces get a sub-directory.
DEFAULT_SPACE = "digits"
#: what a build ships, and what `--precision auto` measures; int8 first: a build ships it by default
PRECISIONS = ("int8", "fp32")
#: measured by tables and compiled for NVIDIA GPUs only: float16 weights and activations, summed in float32
GPU_PRECISIONS = ("fp16",)
TABLE_PRECISIONS = (*PRECISIONS, *GPU_PRECISIONS)


def check_precision(precision: str, target=None) -> str:
    """`precision` where a table of `target` (a `targets.Target`, None: any) can be measured at it."""
    if precision not in TABLE_PRECISIONS:
        raise BadInput(f"--precision {precision}: one of {', '.join(TABLE_PRECISIONS)}")
    if precision in GPU_PRECISIONS and target is not None and target.device != "cuda":
        raise BadInput(f"--precision {precision} is for NVIDIA GPU targets; target '{target.name}' runs "
                       f"{' or '.join(PRECISIONS)}")
    return precision


@dataclass(frozen=True)
class TableKey:
    """One table's worth of meaning: every entry of it was measured for these, and only these, settings."""

    target: Target
    backend: str  # "ort" or "tvm"
    #: "int8": each block quantized as `edgenas quantize` does (QDQ), and for TVM compiled with the integer rewrite;
    #: "fp16" (GPU targets): each block converted to float16 (`onnx_export.to_float16`)
    precision: str
    space: SearchSpace
    threads: int  # threads of the runtime on the device
    rpc: RPCSettings | None = None  # a board behind a tracker, else this machine
    #: TVM only: the convolution layout `compile` uses
    layout: str = "NHWC"
    #: TVM only: the tuning database `compile` applies (None: the target's default one)
    tuning_db: Path | None = None

    def __post_init__(self):
        check_precision(self.precision, self.target)
        if self.backend not in BACKENDS:
            raise BadInput(f"unknown backend '{self.backend}'; known backends: {', '.join(BACKENDS)}")

    @cached_property
    def device(self) -> str:
        return device_key(self.rpc)

    @property
    def is_tvm(self) -> bool:
        return self.backend == "tvm"

    def identity(self) -> dict:
        """What the table's numbers depend on; a table with another identity is not this one's. OpenVINO's also
        names the CPU class its kernels were capped to (`ONEDNN_MAX_CPU_ISA`, None: uncapped): the same CPU measured
        with a cap is another device's table."""
        capped = {"max_cpu_isa": self._isa_cap()} if self.backend == "openvino" else {}
        return {
            "target": self.target.name,
            "tvm_target": str(self.target.tvm) if self.is_tvm else None,
            "backend": self.backend,
            "precision": self.precision,
            "layout": self.layout if self.is_tvm else None,
            "space": self.space.name,
            "space_hash": self.space.hash,
            "threads": self.threads,
            "measured_on": f"rpc:{self.rpc.key}" if self.rpc else "local",
            "device": self.device,
            **capped,
        }

    @staticmethod
    def _isa_cap() -> str | None:
        from edgenas.measure.openvino import isa_cap

        return isa_cap()

    @property
    def name(self) -> str:
        """`<backend>-<precision>`, then TVM's layout, or the ISA cap OpenVINO ran under (`openvino-int8-avx2`)."""
        cap = self._isa_cap() if self.backend == "openvino" else None
        return f"{self.backend}-{self.precision}" + (f"-{self.layout.lower()}" if self.is_tvm else "") + \
            (f"-{cap.lower()}" if cap else "")

    def target_dir(self, tables_dir: Path) -> Path:
        return Path(tables_dir) / self.target.name

    def path(self, tables_dir: Path) -> Path:
        base = self.target_dir(tables_dir) / self.device
        return base / f"{self.name}.json" if self.space.name == DEFAULT_SPACE else base / self.space.name / f"{self.name}.json"

    def siblings(self, tables_dir: Path) -> list[Path]:
        """The same table measured on other devices (for an estimate of the time a profile takes)."""
        here = self.path(tables_dir)
        rel = here.relative_to(self.target_dir(tables_dir) / self.device)
        return [p for p in sorted(self.target_dir(tables_dir).glob(f"*/{rel}")) if p != here]

    def make_backend(self, cfg):
        """The backend that measures for this table, compiling as `compile` does."""
        from edgenas.measure.backends import make_backend

        return make_backend(self.backend, self.target, cfg, self.threads, self.rpc, layout=self.layout, tuning_db=self.tuning_db)

    def schedules(self) -> dict | None:
        """The kernels `compile` would use now: the default rules' version and the tuning database's records.

        A TVM table records this when it is measured; when the two differ (the database grew, the rules
        changed), the table no longer describes what ships."""
        if not self.is_tvm:
            return None
        from edgenas.compile.gpu_schedules import rules_version
        from edgenas.compile.schedules import INT8_TILES, dot_products, padded_input_channels
        from edgenas.compile.tune import compile_target, database_dir

        db = database_dir(self.target, self.tuning_db)
        records = db / "database_tuning_record.json"
        digest = hashlib.sha256(records.read_bytes()).hexdigest()[:16] if records.exists() else None
        found = {"default": rules_version(compile_target(self.target)), "database": str(db), "records": digest}
        stem, tgt = self.space.in_channels, compile_target(self.target)
        if self.precision == "int8" and self.layout == "NHWC" and dot_products(tgt):  # since 2026-12-06
            found["int8_tiles"] = INT8_TILES  # the dot-product layers' tiles (`schedules.DOT_TILE_PIXELS`)
            if (padded := padded_input_channels(tgt, stem)) != stem:
                found["stem_channels"] = f"{stem}->{padded}"  # the stem's channels padded for the dot product
        return found


def schedules_differ(recorded: dict | None, now: dict | None) -> str | None:
    """Why a table measured with `recorded` schedules is stale against `now`'s, or None."""
    if now is None:
        return None
    recorded = recorded or {}
    if recorded.get("default") != now["default"]:
        return f"its kernels had default schedules '{recorded.get('default')}', compile now applies '{now['default']}'"
    if recorded.get("records") != now["records"]:
        return f"the tuning database {now['database']} has changed since it was measured"
    if recorded.get("int8_tiles") != now.get("int8_tiles"):
        return f"its int8 kernels had tiles '{recorded.get('int8_tiles')}', compile now applies '{now.get('int8_tiles')}'"
    if recorded.get("stem_channels") != now.get("stem_channels"):
        return (f"its stem read {recorded.get('stem_channels') or 'its own'} input channels, compile now reads "
                f"{now.get('stem_channels') or 'its own'}")
    return None
