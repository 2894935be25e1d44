#!/usr/bin/env python
"""Benchmark the latency tables on `host`: full-profile wall time and prediction accuracy per backend.

Prints one JSON object. By default it (re)measures the shipped tables in latency_tables/host/,
with their validation reports and plots; give --tables to measure elsewhere.

    .venv/bin/python tools/bench_tables.py --samples 200          # about 35 min on 2 cores
"""

import argparse
import json
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.space import get_space  # noqa: E402
from edgenas.tables.device import cpu_model, llvm_cpu  # noqa: E402
from edgenas.tables.key import TableKey  # noqa: E402
from edgenas.tables.profile import profile  # noqa: E402
from edgenas.tables.validate import validate  # noqa: E402
from edgenas.targets import get_target  # noqa: E402
from edgenas.versions import versions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backends", default="ort,tvm")
    ap.add_argument("--precisions", default="int8", help="comma-separated: int8, fp32")
    add_to_parser(ap, "space", "tables", tables=tables_dir())
    ap.add_argument("--samples", type=int, default=200, help="random networks; half are held out")
    ap.add_argument("--keep", action="store_true", help="reuse existing tables instead of re-profiling")
    args = ap.parse_args()

    target, space = get_target("host"), get_space(args.space)
    out = {"benchmark": "latency_tables", "target": "host", "cpu": cpu_model(), "llvm_cpu": llvm_cpu(),
           "cores": __import__("os").cpu_count(), "machine": platform.machine(), "space": space.name,
           "table_entries": len(space.all_layers()), "versions": versions(), "backends": {}}
    for backend, precision in ((b, p) for b in args.backends.split(",") for p in args.precisions.split(",")):
        key = TableKey(target, backend, precision, space, target.thread_count())
        if not args.keep:  # fresh whole-network measurements too, not ones cached by an earlier run
            key.path(args.tables).with_suffix(".samples.json").unlink(missing_ok=True)
        t0 = time.perf_counter()
        prof = profile(key, args.tables, resume=args.keep, overwrite=not args.keep, full=True)
        profile_s = time.perf_counter() - t0
        rep = validate(key, args.tables, args.samples)
        out["backends"][key.name] = {
            "profile_seconds": round(profile_s, 1),
            "profile_measured_entries": prof.measured,
            "validation_networks": rep.samples,
            "held_out": rep.held_out,
            "held_out_raw": rep.raw,
            "held_out_corrected": rep.corrected,
            "validation_seconds": rep.seconds,
            "report": rep.report,
            "plot": rep.plot,
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
