"""The shipped artifact: a directory with the model for the runtime that ships it (TVM's compiled library, or the
ONNX model that ONNX Runtime or OpenVINO runs), metadata.json and a README.

Every file's sha256 is in metadata.json, and every reader checks them first, so a tampered or half-copied
artifact is refused before anything loads it (schema in docs/schemas.md).
"""

from __future__ import annotations

import hashlib
import platform
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from edgenas.data import Normalization
from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, check_schema, dataclass_fields, exclusive_lock, read_json
from edgenas.targets import Target

SCHEMA, SCHEMA_VERSION = "edgenas.artifact", 1
METADATA, LIBRARY, ONNX_FILE, README = "metadata.json", "model.so", "model.onnx", "README.md"
#: the runtimes an artifact is made for, and the file each one loads
RUNTIME_FILE = {"tvm": LIBRARY, "ort": ONNX_FILE, "openvino": ONNX_FILE}
RUNTIME_NAME = {"tvm": "the TVM runtime", "ort": "ONNX Runtime", "openvino": "OpenVINO"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class ArtifactInput:
    """What the library takes, and how an image becomes it."""
    name: str  # the graph input's name
    shape: tuple[int, ...]  # static, batch first
    dtype: str  # e.g. float32: a QDQ model quantizes inside the library
    layout: str  # of the input tensor: NCHW, as the ONNX model takes it (--layout is the kernels')
    normalization: Normalization | None  # uint8 image -> input; None when the model's preprocessing is unknown

    def to_dict(self) -> dict:
        return {**asdict(self), "shape": list(self.shape),
                "normalization": self.normalization.to_dict() if self.normalization else None}


@dataclass(frozen=True)
class ArtifactTarget:
    """Where the library runs."""
    name: str  # the target's name
    tvm_target: str  # the TVM target it was compiled for, as TVM prints it
    device: str  # cpu or cuda
    arch: str  # `platform.machine()` of the CPU that loads it
    definition: dict  # the target's TOML fields: `bench` rebuilds the target from them

    def to_dict(self) -> dict:
        return asdict(self)

    def runs_here(self) -> bool:
        return self.device == "cpu" and self.arch == platform.machine()

    def rebuilt(self) -> Target:
        return Target.from_dict(self.definition)


@dataclass(frozen=True)
class CompileRecord:
    """How the library was compiled."""
    quantized: bool  # a QDQ model whose convolutions and matmuls compute in integers
    kernel_layout: str  # NCHW or NHWC (--layout)
    ops: dict  # compute operators and their dtypes, counted after the graph passes
    tuning_database: str | None  # the database whose schedules were applied
    tuning: dict | None  # the tuning run's report; None when there was none
    seconds: float  # the whole compile
    # (fields added later have defaults, so that older artifacts still load)
    device_code: dict | None = None  # CUDA targets: the kernels' format (PTX or CUDA C), architecture and count
    pass_seconds: dict = field(default_factory=dict)  # seconds in each pass of the graph pipeline, in order

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactLatency:
    predicted: dict | None  # model.json's latency record; None for a bare ONNX file
    measured: dict | None  # the library's measurement (`package.measure_artifact`); None when it was not measured
    not_measured: str | None  # why not (a board target compiled without --rpc-tracker)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class ArtifactMeta:
    """`metadata.json`: what the artifact is, what it takes, how it was made and how fast it ran."""
    name: str  # the network's encoding, or the ONNX file's stem
    created: str
    input: ArtifactInput
    classes: tuple[str, ...] | None  # in output order; None when unknown
    target: ArtifactTarget
    versions: dict  # of edgenas, torch, onnx, onnxruntime and apache-tvm
    compile: CompileRecord | None  # None: nothing was compiled (an ONNX Runtime or OpenVINO artifact)
    #: validation accuracy by precision, from model.json, and `artifact`: the library's own, run here when it could
    #: be; {} for a bare ONNX file
    accuracy: dict
    latency: ArtifactLatency
    model: dict  # the ONNX file it came from, its `arch` and model.json's history
    files: dict = field(default_factory=dict)  # sha256 of every file; filled in when the artifact is sealed
    runtime: str = "tvm"  # what runs it: tvm (`model.so`), ort or openvino (`model.onnx`)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("input", "target", "compile", "latency"):
            d[name] = d[name].to_dict() if d[name] is not None else None
        d["classes"] = list(self.classes) if self.classes is not None else None
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **d}

    @classmethod
    def from_dict(cls, d: dict, where: Path, redo: str) -> "ArtifactMeta":
        what = f"damaged metadata ({redo})"
        kw = dataclass_fields(cls, d, str(where), what)

        def part(record_cls, name: str) -> dict:
            return dataclass_fields(record_cls, kw[name], str(where), f"its '{name}' ({redo})")

        try:
            inp = part(ArtifactInput, "input")
            norm = inp["normalization"]
            return cls(**{
                **kw, "input": ArtifactInput(**{**inp, "shape": tuple(int(v) for v in inp["shape"]),
                                                "normalization": Normalization.from_dict(norm) if norm else None}),
                "classes": tuple(kw["classes"]) if kw["classes"] is not None else None,
                "target": ArtifactTarget(**part(ArtifactTarget, "target")),
                "compile": CompileRecord(**part(CompileRecord, "compile")) if kw["compile"] is not None else None,
                "latency": ArtifactLatency(**part(ArtifactLatency, "latency"))})
        except (AttributeError, KeyError, TypeError, ValueError) as e:
            raise BadInput(f"{where}: {what}: {e}") from None


@dataclass(frozen=True)
class Artifact:
    path: Path
    meta: ArtifactMeta

    @property
    def library(self) -> Path:
        return self.path / LIBRARY

    @property
    def model_file(self) -> Path:
        """What its runtime loads."""
        return self.path / RUNTIME_FILE[self.meta.runtime]

    @property
    def input_shape(self) -> tuple[int, ...]:
        return self.meta.input.shape


def write_artifact(out: Path, library: Path | None, onnx_model: bytes, meta: ArtifactMeta) -> Artifact:
    """Move the linked library (TVM's; None for the other runtimes) into `out`, add the ONNX model and README, then
    seal them in metadata.json."""
    out = Path(out)
    with exclusive_lock(out / METADATA):
        (out / METADATA).unlink(missing_ok=True)  # an unsealed directory is never mistaken for an artifact
        (out / LIBRARY).unlink(missing_ok=True)  # a library left by an artifact of another runtime
        if library is not None:
            Path(library).replace(out / LIBRARY)
        atomic_write_bytes(out / ONNX_FILE, onnx_model)
        atomic_write_bytes(out / README, readme(meta).encode())
        names = (LIBRARY, ONNX_FILE, README) if library is not None else (ONNX_FILE, README)
        meta = replace(meta, files={name: sha256(out / name) for name in names})
        atomic_write_json(out / METADATA, meta.to_dict())
    return Artifact(out, meta)


def load_artifact(path: Path) -> Artifact:
    """The artifact at `path`, after checking its schema and every file's checksum."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: no such artifact directory")
    redo = f"compile the model again into {path} (or copy the artifact again)"
    d = read_json(path / METADATA, remedy=redo)
    check_schema(d, path / METADATA, SCHEMA, SCHEMA_VERSION, "artifact", redo)
    meta = ArtifactMeta.from_dict(d, path / METADATA, redo)
    if meta.runtime not in RUNTIME_FILE:
        raise BadInput(f"{path / METADATA}: field 'runtime' must be one of {', '.join(RUNTIME_FILE)}, not {meta.runtime!r}")
    files, needed = d.get("files"), RUNTIME_FILE[meta.runtime]
    if not isinstance(files, dict) or needed not in files:
        raise BadInput(f"{path / METADATA}: field 'files' must list the sha256 of {needed} and the other files")
    for name, digest in files.items():
        if not (path / name).is_file():
            raise BadInput(f"{path / name}: missing from the artifact")
        if sha256(path / name) != digest:
            raise BadInput(f"{path / name}: sha256 does not match metadata.json (modified or corrupt)")
    return Artifact(path, meta)


#: TVM's `cuda` kind keeps kernels as CUDA C in the library and compiles them when it is loaded, through a callback
#: that `tvm.support.nvcc` registers (needs `cuda-bindings` and NVRTC). PTX needs nothing but the driver, and TVM's
#: CUDA runtime, which `import tvm` loads through Python hooks that TVM's runtime alone lacks.
CUDA_LOAD = {"CUDA C": "import tvm.support.nvcc  # compiles the CUDA kernels with NVRTC when the library loads\n",
             "PTX": "# the CUDA driver compiles the PTX kernels for this GPU when the library loads: no toolkit needed.\n"
                    "# With TVM's runtime alone (TVM_USE_RUNTIME_LIB=1), load its CUDA part first:\n"
                    "# import ctypes, os; ctypes.CDLL(os.path.join(os.path.dirname(tvm.__file__), \"lib\", "
                    "\"libtvm_runtime_cuda.so\"))\n"}


def _load_code(meta: ArtifactMeta) -> str:
    """How a user loads and runs it, with its runtime alone."""
    inp, target = meta.input, meta.target
    x = f'x = np.zeros({inp.shape}, dtype="{inp.dtype}")  # your preprocessed input'
    if meta.runtime == "ort":
        return f"""import numpy as np, onnxruntime as ort
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1  # the threads it was measured with: {(meta.latency.measured or {}).get('threads', 1)}
sess = ort.InferenceSession("{ONNX_FILE}", opts, providers={list(target.definition.get('ort_providers', ['CPUExecutionProvider']))})
{x}
logits = sess.run(None, {{"{inp.name}": x}})[0]"""
    if meta.runtime == "openvino":
        return f"""import numpy as np, openvino as ov
core = ov.Core()
model = core.compile_model("{ONNX_FILE}", "CPU", {{"INFERENCE_NUM_THREADS": 1, "PERFORMANCE_HINT": "LATENCY",
                                                  "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": "f32"}})
{x}
logits = model.create_infer_request().infer({{0: x}})[0]"""
    code = (meta.compile.device_code or {}) if meta.compile else {}
    load = next((line for fmt, line in CUDA_LOAD.items() if code.get("format", "").startswith(fmt)), "")
    dev = "tvm.cuda(0)" if target.device == "cuda" else "tvm.cpu(0)"
    return f"""import numpy as np, tvm
from tvm.runtime.vm import VirtualMachine  # Relax's virtual machine, in TVM's runtime
{load}
lib = tvm.runtime.load_module("{LIBRARY}")
dev = {dev}
vm = VirtualMachine(lib, dev)
{x}
logits = vm["main"](tvm.runtime.tensor(x, dev)).numpy()"""


def readme(meta: ArtifactMeta) -> str:
    inp, target = meta.input, meta.target
    norm = inp.normalization
    prep = (f"scale a uint8 image to [0, 1], subtract mean {list(norm.mean)} and divide by std {list(norm.std)} per channel, "
            f"then resize (bilinear, antialiased) to {inp.shape[2]}x{inp.shape[3]}" if norm else
            "the model's own preprocessing (not recorded: this model came without edgenas metadata)")
    acc, measured = meta.accuracy, meta.latency.measured
    tvm_files = (f"`{LIBRARY}` (TVM library for {target.arch}, {target.device}), `{ONNX_FILE}` (the same model for "
                 f"ONNX Runtime)")
    files = tvm_files if meta.runtime == "tvm" else f"`{ONNX_FILE}` (the model {RUNTIME_NAME[meta.runtime]} runs)"
    version = meta.versions.get({"tvm": "apache-tvm", "ort": "onnxruntime", "openvino": "openvino"}[meta.runtime])
    return f"""# {meta.name}: made by edgenas for `{target.name}`, to run with {RUNTIME_NAME[meta.runtime]}

Files: {files}, `{METADATA}` (input, classes, accuracy, latency, and the sha256 of every file).

Input `{inp.name}`: {inp.dtype} {inp.layout} of shape {list(inp.shape)}. Preprocessing: {prep}.
Validation accuracy: {', '.join(f'{k} {v:.4f}' for k, v in acc.items()) or 'not measured'}.
Latency: {f"{measured['median_ms']:.4f} ms (median, {measured['where']})" if measured else 'not measured'}.

## Load it with {RUNTIME_NAME[meta.runtime]} alone ({version or 'the version in metadata.json'})

```python
{_load_code(meta)}
```

Or with edgenas: `edgenas run . --input image.png` and `edgenas bench .`{" (add `--rpc-tracker HOST:PORT --rpc-key KEY` to measure on a board)" if meta.runtime == "tvm" else ""}.
"""
