"""Library versions recorded with every result, so a figure can be traced to the software that made it."""

from importlib import metadata

PACKAGES = ("edgenas", "torch", "onnx", "onnxruntime", "apache-tvm", "openvino")


def versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out
