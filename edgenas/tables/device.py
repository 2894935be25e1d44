"""The device a latency table was measured on, and the short name that keeps its tables apart from others'.

A target such as `host` means whatever machine runs edgenas, so its tables are kept per device: the CPU model
and LLVM CPU for this machine, the RPC key for a board. Tables of several devices sit side by side under the
target (`latency_tables/host/rocketlake-intel-xeon-processor/...`), so shipped tables keep serving the machine
kind that measured them, and two machines sharing one checkout never write the same file.
"""

from __future__ import annotations

import functools
import os
import platform
import re
from pathlib import Path


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


@functools.cache
def llvm_cpu() -> str:
    """LLVM's name for this machine's CPU (what `mcpu: native` resolves to)."""
    from tvm.target.codegen import llvm_get_system_cpu

    return str(llvm_get_system_cpu())


def slug(text: str) -> str:
    text = re.sub(r"\((r|tm|c)\)", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")[:48] or "unknown"


def device_key(rpc=None) -> str:
    """The directory name of this device's tables: `<llvm cpu>-<cpu model>` here, `rpc-<key>` for a board."""
    if rpc is not None:
        return f"rpc-{slug(rpc.key)}"
    return slug(f"{llvm_cpu()} {cpu_model()}")


def device_info(target, rpc=None) -> dict:
    """What a measurement's device was, for people reading a table or an artifact."""
    if rpc:
        return {"key": device_key(rpc), "board": f"RPC key '{rpc.key}' via tracker {rpc.tracker}", "device": target.device,
                "arch": target.arch}
    return {"key": device_key(), "cpu": cpu_model(), "llvm_cpu": llvm_cpu(), "machine": platform.machine(),
            "cores": os.cpu_count(), "hostname": platform.node()}


def describe(info: dict) -> str:
    """`info` (a `device_info`) in a few words, for messages."""
    if "board" in info:
        return info["board"]
    return f"{info.get('cpu')} ({info.get('llvm_cpu')})"
