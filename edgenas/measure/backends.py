"""The registered measurement backends, built by name."""

from __future__ import annotations

from edgenas.errors import BadInput
from edgenas.measure.rpc import RPCSettings
from edgenas.measure.timing import Backend, MeasureConfig
from edgenas.targets import Target

BACKENDS = ("ort", "tvm")


def make_backend(name: str, target: Target, cfg: MeasureConfig, threads: int, rpc: RPCSettings | None = None, *,
                 layout: str = "NHWC", tuning_db=None) -> Backend:
    """`layout` and `tuning_db`: how TVM compiles what it measures, as `compile` would."""
    if name == "ort":
        if rpc is not None:
            raise BadInput("--backend ort measures on this machine; RPC boards are measured with --backend tvm")
        from edgenas.measure.ort import OrtBackend

        return OrtBackend(target, cfg, threads)
    if name == "tvm":
        from edgenas.measure.tvm import TvmBackend

        return TvmBackend(target, cfg, threads, rpc, layout, tuning_db)
    raise BadInput(f"unknown backend '{name}'; known backends: {', '.join(BACKENDS)}")
