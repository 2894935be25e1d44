#!/usr/bin/env python
"""Benchmark `edgenas search` on `host` with the shipped table: speed, budgets kept, evolution against random search.

Prints one JSON object. Budgets are spread evenly over the space's latency range on the table (fastest
network to largest network); for each, the evolution's winner is measured end to end on the backend,
and a random search scoring the same number of candidates is run for comparison. Both winners get their
real validation accuracy from the supernet. With no trained supernet at --supernet, one is trained first
(the training time is reported).

    .venv/bin/python tools/bench_search.py --supernet runs/bench-supernet     # ~10 min training + ~3 min
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
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.search.evolution import EvolutionConfig  # noqa: E402
from edgenas.search.search import Searcher, run_space  # noqa: E402
from edgenas.tables.key import TableKey  # noqa: E402
from edgenas.space import get_space  # noqa: E402
from edgenas.supernet.train import CHECKPOINT, load_run, train  # noqa: E402
from edgenas.supernet.train_config import TrainConfig  # noqa: E402
from edgenas.targets import get_target  # noqa: E402
from edgenas.versions import versions  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--supernet", type=Path, default=Path("runs/bench-supernet"))
    add_to_parser(ap, "epochs", "backend", "tables", "subnets", "precision", "seed", backend="ort", tables=tables_dir())
    ap.add_argument("--budgets", type=int, default=11, help="odd, so that one is the median of the range")
    args = ap.parse_args()

    target = get_target("host")
    trained_here = None
    if not (args.supernet / CHECKPOINT).exists():
        t0 = time.perf_counter()
        train(DEFAULT_DATA, get_space("digits"), args.supernet, TrainConfig(epochs=args.epochs))
        trained_here = round(time.perf_counter() - t0, 1)
    run = load_run(args.supernet)
    last = run["history"][-1]
    key = TableKey(target, args.backend, args.precision, run_space(args.supernet), target.thread_count())
    s = Searcher(args.supernet, key, args.tables)
    predictor = s.fit_accuracy(args.subnets, args.seed)
    slowest = s.latency(s.space.largest())
    budgets = [s.fastest_ms + (i + 1) / (args.budgets + 1) * (slowest - s.fastest_ms) for i in range(args.budgets)]

    rows = []
    for budget in budgets:
        cfg = EvolutionConfig(seed=args.seed)
        guarded = s.search_budget(budget)
        evo = s.finder(cfg).run(guarded)
        rnd = s.finder(cfg).random_search(guarded, evo.evaluated)
        unguarded = s.finder(cfg).run(budget)  # what the guard band buys
        measured, measured_unguarded = s.measure_latency(evo.best.arch), s.measure_latency(unguarded.best.arch)
        rows.append({
            "budget_ms": round(budget, 5), "search_budget_ms": round(guarded, 5),
            "evaluated": evo.evaluated, "unique": evo.unique, "evolution_seconds": round(evo.seconds, 3),
            "predicted_latency_ms": round(evo.best.latency_ms, 5), "measured_latency_ms": round(measured, 5),
            "within_budget": measured <= budget,
            "without_guard_band": {"predicted_latency_ms": round(unguarded.best.latency_ms, 5),
                                   "measured_latency_ms": round(measured_unguarded, 5),
                                   "within_budget": measured_unguarded <= budget},
            "evolution": {"predicted_accuracy": round(evo.best.accuracy, 5), "val_accuracy": s.evaluator(evo.best.arch),
                          "arch": evo.best.arch.encoding},
            "random": {"predicted_accuracy": round(rnd.best.accuracy, 5), "val_accuracy": s.evaluator(rnd.best.arch),
                       "seconds": round(rnd.seconds, 3), "arch": rnd.best.arch.encoding},
        })
        print(f"budget {budget:.4f} ms: measured {measured:.4f} ms, val acc {rows[-1]['evolution']['val_accuracy']:.3f} "
              f"(random {rows[-1]['random']['val_accuracy']:.3f})", file=sys.stderr)

    def share(xs):
        return round(sum(xs) / len(xs), 3)

    median = rows[len(rows) // 2]
    print(json.dumps({
        "benchmark": "search", "target": "host", "backend": args.backend, "table": str(s.path), "versions": versions(),
        "supernet": {"run_dir": str(args.supernet), "epochs": run["epochs_done"],
                     "train_seconds": round(sum(h["seconds"] for h in run["history"]), 1), "trained_here_seconds": trained_here,
                     "val_acc_largest": last["val_acc_largest"], "val_acc_smallest": last["val_acc_smallest"]},
        "accuracy_predictor_held_out": predictor,
        "evolution": EvolutionConfig(seed=args.seed).to_dict(),
        "candidates_per_search": median["evaluated"],
        "candidates_per_second": round(sum(r["evaluated"] for r in rows) / sum(r["evolution_seconds"] for r in rows)),
        "max_search_seconds": max(r["evolution_seconds"] for r in rows),
        "latency_range_ms": [round(s.fastest_ms, 5), round(slowest, 5)],
        "margin_pct": round(s.margin_pct, 3),
        "within_budget_share": share([r["within_budget"] for r in rows]),
        "within_budget_share_without_guard_band": share([r["without_guard_band"]["within_budget"] for r in rows]),
        "median_budget": {"budget_ms": median["budget_ms"], "val_accuracy": median["evolution"]["val_accuracy"]},
        "evolution_vs_random": {
            "mean_predicted_accuracy": [round(statistics.mean(r[k]["predicted_accuracy"] for r in rows), 5)
                                        for k in ("evolution", "random")],
            "mean_val_accuracy": [round(statistics.mean(r[k]["val_accuracy"] for r in rows), 5) for k in ("evolution", "random")],
            "evolution_better_predicted": sum(r["evolution"]["predicted_accuracy"] > r["random"]["predicted_accuracy"] for r in rows),
            "evolution_better_val": sum(r["evolution"]["val_accuracy"] > r["random"]["val_accuracy"] for r in rows),
            "random_better_val": sum(r["evolution"]["val_accuracy"] < r["random"]["val_accuracy"] for r in rows),
        },
        "budgets": rows,
    }, indent=1))


if __name__ == "__main__":
    main()
