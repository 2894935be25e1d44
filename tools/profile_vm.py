#!/usr/bin/env python
"""Where an artifact's time goes: every kernel call of one inference, timed with the VM's instrument hook.

Prints JSON: end-to-end latency, the number of kernel calls, the sum of their times, and the slowest kernels.
The 0.27 VM has no profile=; `vm.set_instrument` calls us before and after each packed function call.

    .venv/bin/python tools/profile_vm.py ARTIFACT_DIR [--runs 200]
"""

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.artifact.artifact import load_artifact  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("artifact", type=Path)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    import tvm
    from tvm import relax

    art = load_artifact(args.artifact)
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(art.library)), tvm.cpu(0))
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(art.input_shape).astype("float32"))
    for _ in range(20):
        vm["main"](x)
    t0 = time.perf_counter()
    for _ in range(args.runs):
        vm["main"](x)
    end_to_end = (time.perf_counter() - t0) / args.runs * 1e3

    totals, calls, started = defaultdict(float), defaultdict(int), {}

    def instrument(func, name, before_run, ret, *_args):
        if before_run:
            started[name] = time.perf_counter()
        else:
            totals[name] += time.perf_counter() - started.pop(name)
            calls[name] += 1

    vm.set_instrument(instrument)
    for _ in range(args.runs):
        vm["main"](x)
    per_run = {k: v / args.runs * 1e3 for k, v in totals.items()}
    print(json.dumps({
        "artifact": str(art.path), "end_to_end_ms": round(end_to_end, 4),
        "kernel_calls_per_run": sum(calls.values()) // args.runs,
        "sum_of_kernels_ms_instrumented": round(sum(per_run.values()), 4),
        "slowest": [{"kernel": k, "ms": round(v, 4)} for k, v in sorted(per_run.items(), key=lambda kv: -kv[1])[:15]],
    }, indent=1))


if __name__ == "__main__":
    main()
