"""Named deployment targets, read from TOML files (one per board) in `targets/`.

Like timm's model registry, names are listed and resolved in one place; anywhere a name is
accepted, a path to the user's own TOML file is accepted too.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import tomllib
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path

from edgenas.errors import BadInput, one_line
from edgenas.paths import targets_dir

DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    device: str
    #: machine of the CPU that runs host code (`platform.machine()` spelling): where ORT can run.
    arch: str
    #: TVM target: a tag such as "arm/rasp4b64" or a JSON dict; mcpu "native" is detected here.
    tvm_target: str | dict
    tvm_host: str | dict | None
    #: compiler that links the exported library; "" is this machine's own g++.
    cross_compiler: str
    ort_providers: tuple[str, ...]
    rpc_key: str
    #: threads the runtime may use on the board; 0 means all its cores.
    threads: int
    source: str

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ort_providers"] = list(self.ort_providers)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Target":
        """The target `to_dict` wrote (an artifact keeps its target's definition this way)."""
        return cls(**{**d, "ort_providers": tuple(d["ort_providers"])})

    @property
    def runs_here(self) -> bool:
        """Can this machine execute the target's code itself (no board needed)? An x86 target compiled for a named
        CPU (not `native`) runs here only when this CPU has the vector instructions LLVM gives that CPU: code for
        `alderlake` dies with SIGILL on an AVX2-only machine."""
        if self.arch != platform.machine():
            return False
        if self.device == "cuda":
            return gpu_here()
        return self.arch != "x86_64" or _has_its_instructions(self)

    def why_not_here(self) -> str:
        """One phrase: why this machine cannot run the target's code itself."""
        if self.device == "cuda" and self.arch == platform.machine():
            return f"target '{self.name}' needs an NVIDIA GPU, and TVM finds none on this machine"
        return f"target '{self.name}' ({self.device}, {self.arch}) does not run on this machine"

    @cached_property
    def tvm(self):
        """The resolved `tvm.target.Target`, with 'native' CPUs detected on this machine."""
        import tvm

        spec, host = _resolve_native(self.tvm_target, self), _resolve_native(self.tvm_host, self) if self.tvm_host else None
        try:
            tgt = tvm.target.Target(spec, host=host)
        except Exception as e:  # TVM raises assorted error types for bad target specs
            raise BadInput(f"{self.source}: field 'tvm.target' is not a valid TVM target ({one_line(e, last=True)})") from None
        return tgt

    def thread_count(self) -> int:
        return self.threads or (os.cpu_count() or 1)


#: LLVM's names of the x86 vector features the CPU classes differ by, and /proc/cpuinfo's names for them
X86_FEATURES = {"avx2": "avx2", "fma": "fma", "avx512f": "avx512f", "avx512bw": "avx512bw", "avx512vnni": "avx512_vnni",
                "avxvnni": "avx_vnni"}


def _has_its_instructions(target: "Target", flags: set[str] | None = None) -> bool:
    """`flags`: this CPU's, from /proc/cpuinfo unless given."""
    spec = target.tvm_target
    if not isinstance(spec, dict) or spec.get("mcpu") in (None, "native"):
        return True  # compiled for this very CPU (or LLVM's baseline)
    if flags is None:
        try:
            flags = set(open("/proc/cpuinfo").read().split())
        except OSError:
            return True  # not Linux: trust the architecture
    from tvm.target import codegen

    return all(flag in flags for feature, flag in X86_FEATURES.items()
               if codegen.target_has_features(feature, target.tvm))


def _resolve_native(spec: str | dict, target: Target) -> str | dict:
    if isinstance(spec, dict) and spec.get("mcpu") == "native":
        if spec.get("kind") == "nvptx":
            return {**spec, "mcpu": gpu_arch(target)}
        from tvm.target.codegen import llvm_get_system_cpu

        return {**spec, "mcpu": llvm_get_system_cpu()}
    return spec


@functools.cache
def gpu_here() -> bool:
    """Whether TVM's runtime sees CUDA device 0 here (a driver and a GPU; the wheel brings its own CUDA runtime)."""
    try:
        import tvm

        return bool(tvm.cuda(0).exist)
    except Exception:  # no libcuda, or a runtime built without CUDA: no GPU TVM can use
        return False


def gpu_arch(target: Target) -> str:
    """`sm_XY` of this machine's first NVIDIA GPU, from nvidia-smi (which the driver installs)."""
    import subprocess

    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30, check=True).stdout.split()
        major, minor = out[0].split(".")
        return f"sm_{int(major)}{int(minor)}"
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        raise BadInput(f"{target.source}: field 'tvm.target.mcpu' is 'native', this machine's GPU, and nvidia-smi finds "
                       f"no NVIDIA GPU here; copy the file and name the GPU's architecture (sm_86, sm_87, sm_90)") from None


def _field(data: dict, dotted: str, kind, source: Path, default=...):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is not ...:
                return default
            raise BadInput(f"{source}: field '{dotted}' is missing")
        node = node[part]
    if not isinstance(node, kind) or isinstance(node, bool) and kind is not bool:
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise BadInput(f"{source}: field '{dotted}' must be a {names}, not {json.dumps(node)}")
    return node


def load_target_file(path: Path) -> Target:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such target file") from None
    except tomllib.TOMLDecodeError as e:
        raise BadInput(f"{path}: not valid TOML ({e})") from None
    device = _field(data, "device", str, path)
    if device not in DEVICE_KINDS:
        raise BadInput(f"{path}: field 'device' must be one of {', '.join(DEVICE_KINDS)}, not '{device}'")
    providers = _field(data, "onnxruntime.providers", list, path)
    if not providers or not all(isinstance(p, str) for p in providers):
        raise BadInput(f"{path}: field 'onnxruntime.providers' must be a non-empty list of provider names")
    threads = _field(data, "threads", int, path, default=0)
    if threads < 0:
        raise BadInput(f"{path}: field 'threads' must be >= 0, not {threads}")
    return Target(
        name=_field(data, "name", str, path),
        description=_field(data, "description", str, path),
        device=device,
        arch=_field(data, "arch", str, path),
        tvm_target=_field(data, "tvm.target", (str, dict), path),
        tvm_host=_field(data, "tvm.host", (str, dict), path, default=None),
        cross_compiler=_field(data, "tvm.cross_compiler", str, path),
        ort_providers=tuple(providers),
        rpc_key=_field(data, "rpc.key", str, path),
        threads=threads,
        source=str(path),
    )


def list_targets() -> list[Target]:
    return [load_target_file(p) for p in sorted(targets_dir().glob("*.toml"))]


def get_target(name_or_path: str) -> Target:
    """A registered target by name, or the user's own TOML file by path."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        return load_target_file(Path(name_or_path))
    path = targets_dir() / f"{name_or_path}.toml"
    if not path.exists():
        known = ", ".join(p.stem for p in sorted(targets_dir().glob("*.toml")))
        raise BadInput(f"unknown target '{name_or_path}'; known targets: {known} (or give a path to a .toml file)")
    return load_target_file(path)
