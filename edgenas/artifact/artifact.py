"""The shipped artifact: a directory with the compiled library, the ONNX model, metadata.json and a README.

Every file's sha256 is in metadata.json, and every reader checks them first, so a tampered or half-copied
artifact is refused before anything loads it (schema in docs/schemas.md).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from edgenas.errors import BadInput
from edgenas.jsonio import atomic_write_bytes, atomic_write_json, check_schema, exclusive_lock, read_json

SCHEMA, SCHEMA_VERSION = "edgenas.artifact", 1
METADATA, LIBRARY, ONNX_FILE, README = "metadata.json", "model.so", "model.onnx", "README.md"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class Artifact:
    path: Path
    meta: dict

    @property
    def library(self) -> Path:
        return self.path / LIBRARY

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.meta["input"]["shape"])


def write_artifact(out: Path, library: Path, onnx_model: bytes, meta: dict) -> Artifact:
    """Move the linked library into `out`, add the ONNX model and README, then seal them in metadata.json."""
    out = Path(out)
    with exclusive_lock(out / METADATA):
        (out / METADATA).unlink(missing_ok=True)  # an unsealed directory is never mistaken for an artifact
        Path(library).replace(out / LIBRARY)
        atomic_write_bytes(out / ONNX_FILE, onnx_model)
        atomic_write_bytes(out / README, readme(meta).encode())
        meta = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **meta,
                "files": {name: sha256(out / name) for name in (LIBRARY, ONNX_FILE, README)}}
        atomic_write_json(out / METADATA, meta)
    return Artifact(out, meta)


def load_artifact(path: Path) -> Artifact:
    """The artifact at `path`, after checking its schema and every file's checksum."""
    path = Path(path)
    if not path.is_dir():
        raise BadInput(f"{path}: no such artifact directory")
    redo = f"compile the model again into {path} (or copy the artifact again)"
    meta = read_json(path / METADATA, remedy=redo)
    check_schema(meta, path / METADATA, SCHEMA, SCHEMA_VERSION, "artifact", redo)
    files = meta.get("files")
    if not isinstance(files, dict) or LIBRARY not in files:
        raise BadInput(f"{path / METADATA}: field 'files' must list the sha256 of {LIBRARY} and the other files")
    missing = [k for k in ("input", "target") if not isinstance(meta.get(k), dict)]
    if missing:
        raise BadInput(f"{path / METADATA}: damaged (no field '{missing[0]}'); {redo}")
    for name, digest in files.items():
        if not (path / name).is_file():
            raise BadInput(f"{path / name}: missing from the artifact")
        if sha256(path / name) != digest:
            raise BadInput(f"{path / name}: sha256 does not match metadata.json (modified or corrupt)")
    return Artifact(path, meta)


#: TVM 0.27 keeps CUDA kernels as CUDA C in the library and compiles them when it is loaded, through a
#: callback that `tvm.support.nvcc` registers (needs `cuda-bindings` and NVRTC, which JetPack ships).
CUDA_LOAD = "import tvm.support.nvcc  # compiles the CUDA kernels with NVRTC when the library loads\n"


def readme(meta: dict) -> str:
    inp, target = meta["input"], meta["target"]
    norm = inp.get("normalization")
    prep = (f"scale a uint8 image to [0, 1], subtract mean {norm['mean']} and divide by std {norm['std']} per channel, "
            f"then resize (bilinear, antialiased) to {inp['shape'][2]}x{inp['shape'][3]}" if norm else
            "the model's own preprocessing (not recorded: this model came without edgenas metadata)")
    acc = meta.get("accuracy") or {}
    measured = (meta.get("latency") or {}).get("measured")
    return f"""# {meta.get('name', 'model')}: compiled by edgenas for `{target['name']}`

Files: `{LIBRARY}` (TVM library for {target['arch']}, {target['device']}), `{ONNX_FILE}` (the same model for
ONNX Runtime), `{METADATA}` (input, classes, accuracy, latency, and the sha256 of every file).

Input `{inp['name']}`: {inp['dtype']} {inp['layout']} of shape {inp['shape']}. Preprocessing: {prep}.
Validation accuracy: {', '.join(f'{k} {v:.4f}' for k, v in acc.items()) or 'not measured'}.
Latency: {f"{measured['median_ms']:.4f} ms (median, {measured['where']})" if measured else 'not measured'}.

## Load it with only the TVM runtime (apache-tvm {meta['versions'].get('apache-tvm')})

```python
import numpy as np, tvm
from tvm import relax
{CUDA_LOAD if target['device'] == 'cuda' else ''}
lib = tvm.runtime.load_module("{LIBRARY}")
vm = relax.VirtualMachine(lib, tvm.{'cuda' if target['device'] == 'cuda' else 'cpu'}(0))
x = np.zeros({tuple(inp['shape'])}, dtype="{inp['dtype']}")  # your preprocessed input
logits = vm["main"](tvm.runtime.tensor(x)).numpy()
```

Or with edgenas: `edgenas run . --input image.png` and `edgenas bench .` (add `--rpc-tracker HOST:PORT --rpc-key KEY`
to measure on a board).
"""
