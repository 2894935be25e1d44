"""The registered measurement backends, built by name, and which of them can run a target's networks from here."""

from __future__ import annotations

from edgenas.errors import BadInput
from edgenas.rpc import RPCSettings
from edgenas.measure.timing import Backend, MeasureConfig
from edgenas.targets import Target

#: every runtime edgenas measures and ships: tvm, the compiled library; ort, ONNX Runtime; openvino, OpenVINO (an
#: optional extra), the last two running the artifact's ONNX model
BACKENDS = ("tvm", "ort", "openvino")
#: the --backend choice of `build`: every backend that can run the target measured, and the fastest ships
AUTO_BACKEND = "auto"


def make_backend(name: str, target: Target, cfg: MeasureConfig, threads: int, rpc: RPCSettings | None = None, *,
                 layout: str = "NHWC", tuning_db=None) -> Backend:
    """`layout` and `tuning_db`: how TVM compiles what it measures, as `compile` would."""
    if name in ("ort", "openvino") and rpc is not None:
        raise BadInput(f"--backend {name} measures on this machine; RPC boards are measured with --backend tvm")
    if name == "ort":
        from edgenas.measure.ort import OrtBackend

        return OrtBackend(target, cfg, threads)
    if name == "openvino":
        from edgenas.measure.openvino import OpenVinoBackend

        return OpenVinoBackend(target, cfg, threads)
    if name == "tvm":
        from edgenas.measure.tvm import TvmBackend

        return TvmBackend(target, cfg, threads, rpc, layout, tuning_db)
    raise BadInput(f"unknown backend '{name}'; known backends: {', '.join(BACKENDS)}")


def reachable_backends(target: Target, rpc: RPCSettings | None) -> tuple[list[str], list[str]]:
    """The backends that can run `target`'s networks where they are measured (here, or on the board behind `rpc`),
    TVM first; and one phrase for each backend passed over, saying why."""
    if rpc is not None:
        return ["tvm"], [f"{b}: runs on this machine only, not on the board '{rpc.key}'" for b in BACKENDS if b != "tvm"]
    if not target.runs_here:
        return ["tvm"], [f"{b}: target '{target.name}' does not run here" for b in BACKENDS if b != "tvm"]
    found, passed = ["tvm"], []
    for name in BACKENDS[1:]:
        try:
            make_backend(name, target, MeasureConfig(), 1).close()
            found.append(name)
        except BadInput as e:
            passed.append(f"{name}: {e}")
    return found, passed
