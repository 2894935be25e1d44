#!/usr/bin/env python
"""Benchmark the promise of `edgenas build`: over budgets spread across the space's range, does the artifact it ships
measure within the budget, and within ±10% (and ±5%) of what was predicted for it?

Prints one JSON object. For each backend, budgets are spread evenly over the latency range of this device's table at
the precision that ships (fastest network to largest). Each budget runs the build's own stages after training:
search, prune, quantize, compile and bench, exactly as `edgenas build` runs them (pipeline/stages.py), on one
supernet trained once (trained here when --supernet has none). Tables missing for this device are profiled first.

    .venv/bin/python tools/bench_budgets.py --supernet runs/bench-supernet --budgets 10 --backends ort,tvm
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.data import DEFAULT_DATA  # noqa: E402
from edgenas.errors import EdgenasError, one_line  # noqa: E402
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.pipeline.build import AFTER_TRAINING, run, trained  # noqa: E402
from edgenas.pipeline.config import BuildConfig  # noqa: E402
from edgenas.pipeline.summary import summarize  # noqa: E402
from edgenas.search.search import Searcher  # noqa: E402
from edgenas.space import get_space  # noqa: E402
from edgenas.supernet.train import CHECKPOINT, train  # noqa: E402
from edgenas.supernet.train_config import TrainConfig  # noqa: E402
from edgenas.tables.device import device_key  # noqa: E402
from edgenas.versions import versions  # noqa: E402

def build_after_training(cfg: BuildConfig, supernet: Path):
    """The build's stages from the search on, on a trained supernet; its summary."""
    ctx = run(cfg, only=AFTER_TRAINING, given={"train": trained(supernet)})
    return summarize(ctx.results, ctx.out, ctx.target.name)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path, default=Path("runs/bench-supernet"))
    ap.add_argument("--work", type=Path, default=Path("runs/bench-budgets"))
    ap.add_argument("--backends", default="ort,tvm")
    add_to_parser(ap, "precision", "tables", "epochs", tables=tables_dir())
    ap.add_argument("--budgets", type=int, default=10)
    args = ap.parse_args()

    started = time.perf_counter()
    trained_here = None
    if not (args.supernet / CHECKPOINT).exists():
        t0 = time.perf_counter()
        train(DEFAULT_DATA, get_space("digits"), args.supernet, TrainConfig(epochs=args.epochs))
        trained_here = round(time.perf_counter() - t0, 1)
    out = {"benchmark": "budgets", "target": "host", "device": device_key(), "precision": args.precision,
           "supernet": str(args.supernet), "trained_here_seconds": trained_here, "versions": versions(), "backends": {}}
    for backend in args.backends.split(","):
        flags = dict(target="host", backend=backend, precision=args.precision, tables=args.tables)
        ctx = run(BuildConfig.from_flags(budget_ms=1.0, **flags), only=("precision", "profile"))  # the table, made when missing
        searcher = Searcher(args.supernet, ctx.key, args.tables)
        lo, hi = searcher.fastest_ms, searcher.latency(searcher.space.largest())
        rows = []
        for i in range(args.budgets):
            budget = round(lo + (i + 1) / (args.budgets + 1) * (hi - lo), 4)
            t0 = time.perf_counter()
            cfg = BuildConfig.from_flags(budget_ms=budget, out=args.work / backend / f"{budget:g}ms", **flags)
            try:
                sm = build_after_training(cfg, args.supernet)
            except EdgenasError as e:  # a budget the build cannot serve counts against it; the others still run
                rows.append({"budget_ms": budget, "error": one_line(e), "within_budget": False, "within_10pct": False,
                             "seconds": round(time.perf_counter() - t0, 1)})
                print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
                continue
            predicted, measured = sm.predicted_ms.artifact, sm.measured_ms.artifact
            rows.append({"budget_ms": budget, "predicted_ms": round(predicted, 5), "measured_ms": round(measured, 5),
                         "within_budget": measured <= budget, "error_pct": round((measured / predicted - 1) * 100, 2),
                         "within_10pct": abs(measured / predicted - 1) <= 0.10, "pruned": sm.pruned,
                         "int8_accuracy": sm.accuracy.int8, "network": sm.network,
                         "seconds": round(time.perf_counter() - t0, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        out["backends"][backend] = {
            "table": str(searcher.path), "range_ms": [round(lo, 5), round(hi, 5)], "budgets": rows,
            "share_within_budget": sum(r["within_budget"] for r in rows) / len(rows),
            "share_within_10pct_of_prediction": sum(r["within_10pct"] for r in rows) / len(rows),
            "share_within_5pct_of_prediction": sum(abs(r.get("error_pct", 100)) <= 5 for r in rows) / len(rows),
            "failed": sum("error" in r for r in rows),
            "median_abs_error_pct": (statistics.median(abs(r["error_pct"]) for r in rows if "error_pct" in r)
                                     if any("error_pct" in r for r in rows) else None),
        }
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
