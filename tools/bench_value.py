#!/usr/bin/env python
"""Benchmark what the search is worth: at budgets across the table's range, edgenas's artifact against the networks a
user would pick without it, each trained, quantized, compiled and measured by the code that ships edgenas's.

Prints one JSON object and writes a plot of artifact accuracy against measured latency (--work/value.png). On one
supernet trained on --data (Fashion-MNIST by default: far from saturation, so that architectures differ), for each
budget:
- edgenas: `edgenas build` after its training (search, prune, quantize, compile, bench: `pipeline.build.run`);
- random: the same stages with `--strategy random` (as many random networks as the evolution scores);
- uniform: the same stages with `--strategy uniform` (the largest network with one kernel, expansion and depth
  throughout that fits), fine-tuned by the prune stage as edgenas's pick is;
- mobilenetv2: MobileNetV2 with the width multiplier and resolution that fit the budget, measured
  (`baselines.mobilenet`), trained from scratch for the supernet's epochs plus the fine-tuning's, then through the same
  quantize, compile and bench stages.
Every accuracy is the artifact's, on the held-out validation split; every latency is measured, 1 thread. Also: the
accuracy predictor's Kendall tau on held-out sub-networks, each artifact's int8 drop, and what pruning gave.

    .venv/bin/python tools/bench_value.py --limit 10000 --epochs 16 --budgets 3     # the README's run
"""

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.baselines.mobilenet import WIDTHS  # noqa: E402
from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.errors import EdgenasError, one_line  # noqa: E402
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.pipeline.build import AFTER_TRAINING, run, trained  # noqa: E402
from edgenas.pipeline.config import BuildConfig  # noqa: E402
from edgenas.pipeline.products import NetworkFigures, PrunedProduct  # noqa: E402
from edgenas.measure.shipped import measure_ms  # noqa: E402
from edgenas.search.search import Searcher, run_data, run_split  # noqa: E402
from edgenas.supernet.train import load_run  # noqa: E402
from edgenas.versions import versions  # noqa: E402

SEARCHED = ("evolution", "random", "uniform")
ARMS = (*SEARCHED, "mobilenetv2")
#: the flags of `edgenas build` the benchmark takes
BUILD_FLAGS = ("data", "limit", "epochs", "backend", "precision", "subnets", "space", "population", "generations",
               "finetune-epochs", "prune-ratio", "calibration", "repeat", "tables")


def figures(ctx) -> dict:
    """An arm's result from the build's products: the artifact's accuracy and measured latency, and how it got there."""
    r = ctx.results
    p, q, c, b = r["prune"], r["quantize"], r["compile"], r["bench"]
    return {
        "artifact_accuracy": c.accuracy, "measured_ms": b.measured_ms, "within_budget": b.within_budget,
        "precision": q.precision, "int8_drop_points": q.drop_points, "fp32_accuracy": q.fp32_accuracy,
        "network": r["search"].encoding if "search" in r else p.model,
        "predicted_ms": r["search"].predicted_latency_ms if "search" in r else None,
        # the search's view of its pick: the predictor's accuracy and the supernet's (before any fine-tuning)
        "predicted_accuracy": r["search"].predicted_accuracy if "search" in r else None,
        "supernet_accuracy": r["search"].val_accuracy if "search" in r else None,
        # what fine-tuning the searched network gave, then what pruning did against that (`compress.pays`)
        "finetune_points": round((p.tuned.val_accuracy - p.before.val_accuracy) * 100, 2) if p.tuned else None,
        "pruning": {"pruned": p.pruned, "why_not": p.why_not, "verdict": p.verdict.to_dict() if p.verdict else None, "side_by_side_ms": p.side_by_side_ms},
    }


def mobilenet_arm(base: BuildConfig, supernet: Path, budget: float, epochs: int, grid: tuple, tried: dict, out: Path) -> dict:
    """MobileNetV2 scaled by hand to the budget, trained from scratch, then quantized, compiled and benched by the build's
    own stages."""
    from edgenas.baselines.mobilenet import MobileNetV2, export_baseline, scale_to_fit, train_from_scratch
    from edgenas.compress.surgery import macs_params

    cfg = replace(base, budget_ms=budget, out=out)
    ctx = run(cfg, only=("precision",))
    trained_run = load_run(supernet)
    split = run_split(trained_run, supernet)
    measure = lambda onnx, shape: measure_ms(onnx, shape, ctx.key, ctx.measure_config(ctx.backend))  # noqa: E731
    widths, sizes = grid
    res = tuple(sorted({r for r in sizes if r <= min(split.image_shape[1:])}, reverse=True))
    pick, tried = scale_to_fit(budget, ctx.space.in_channels, ctx.space.num_classes, widths, res, measure, tried)
    if pick is None:
        return {"error": f"no MobileNetV2 of widths x{min(t.width for t in tried.values()):g}.. fits {budget:g} ms"}
    net = train_from_scratch(MobileNetV2(pick.width, ctx.space.in_channels, ctx.space.num_classes, pick.resolution), split,
                             epochs, replace(cfg.train, epochs=epochs))
    info = export_baseline(net, split, run_data(trained_run, supernet), out / "fp32", {"scaled": pick.to_dict(), "epochs": epochs})
    fig = NetworkFigures(*macs_params(net), pick.measured_ms, pick.measured_ms, info.accuracy["fp32"])
    given = {"precision": ctx.results["precision"],
             "prune": PrunedProduct(str(out / "fp32"), False, fig, fig, [], None, "a baseline: not pruned")}
    ctx = run(cfg, only=("quantize", "compile", "bench"), given=given)
    return {**figures(ctx), "network": f"MobileNetV2 x{pick.width:g} @{pick.resolution}px", "scaled": pick.to_dict()}


def plot(rows: list, path: Path) -> None:
    from edgenas.plots import new_figure, save_figure

    fig, ax = new_figure(figsize=(6.4, 4.4), dpi=120)
    styles = {"evolution": ("o", "tab:green", "edgenas"), "random": ("s", "tab:blue", "random search"),
              "uniform": ("^", "tab:orange", "uniform network"), "mobilenetv2": ("D", "tab:red", "MobileNetV2, scaled")}
    for arm, (marker, color, label) in styles.items():
        pts = [(r[arm]["measured_ms"], r[arm]["artifact_accuracy"]) for r in rows if r.get(arm, {}).get("measured_ms")]
        ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=marker, color=color, label=label, zorder=3)
    for r in rows:
        ax.axvline(r["budget_ms"], color="0.7", ls="--", lw=0.8)
    ax.set(xlabel="artifact latency, measured (ms, 1 thread)", ylabel="artifact accuracy (validation)",
           title="what the search is worth")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # the build's own flags, as `edgenas build` declares them (a benchmark's defaults: Fashion-MNIST, TVM int8, more
    # sub-networks for the predictor, whose held-out fifth the benchmark reports)
    add_to_parser(ap, *BUILD_FLAGS, data="fashion", limit=10000, backend="tvm", precision="int8", subnets=500,
                  tables=tables_dir())
    ap.add_argument("--budgets", type=int, default=3, help="spread evenly over the table's range")
    ap.add_argument("--budget-ms", type=float, action="append", default=[], help="a budget of its own (repeatable)")
    ap.add_argument("--widths", default=",".join(map(str, WIDTHS)), help="MobileNetV2's width multipliers to try")
    ap.add_argument("--resolutions", default="12,16,20,24,28", help="MobileNetV2's input sizes to try (up to the images')")
    ap.add_argument("--arms", default=",".join(ARMS), help="which arms to ship (comma-separated)")
    ap.add_argument("--work", type=Path, default=Path("runs/bench-value"))
    args = ap.parse_args()
    arms = tuple(a.strip() for a in args.arms.split(",") if a.strip())
    if unknown := sorted(set(arms) - set(ARMS)):
        sys.exit(f"--arms: unknown arm {unknown[0]!r} (choose from {', '.join(ARMS)})")

    started = time.perf_counter()
    flags = {f.replace("-", "_"): getattr(args, f.replace("-", "_")) for f in BUILD_FLAGS}
    base = BuildConfig.from_flags(target="host", budget_ms=1.0, strategy="evolution", out=args.work / "train", **flags)
    ctx = run(base, only=("precision", "profile", "train"))  # the table (adapted or profiled when missing), the supernet
    supernet = Path(ctx.results["train"].run_dir)
    train_seconds = round(time.perf_counter() - started, 1)
    searcher = Searcher(supernet, ctx.key, args.tables)
    predictor = searcher.fit_accuracy(args.subnets)
    lo, hi = searcher.fastest_ms, searcher.latency(searcher.space.largest())
    budgets = args.budget_ms or [round(lo + (i + 1) / (args.budgets + 1) * (hi - lo), 4) for i in range(args.budgets)]
    epochs_mobilenet = base.train.epochs + base.compress.distill.epochs
    rows, tried = [], {}
    grid = tuple(float(w) for w in args.widths.split(",")), tuple(int(r) for r in args.resolutions.split(","))
    for budget in budgets:
        row = {"budget_ms": budget}
        for strategy in (a for a in SEARCHED if a in arms):
            t0 = time.perf_counter()
            search = replace(base.search, evolution=replace(base.search.evolution, strategy=strategy))
            cfg = replace(base, budget_ms=budget, search=search, out=args.work / f"{budget:g}ms" / strategy)
            try:
                row[strategy] = figures(run(cfg, only=AFTER_TRAINING, given={"train": trained(supernet)}))
            except EdgenasError as e:
                row[strategy] = {"error": one_line(e)}
            row[strategy]["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps({"budget_ms": budget, strategy: row[strategy]}), file=sys.stderr, flush=True)
        if "mobilenetv2" in arms:
            t0 = time.perf_counter()
            try:
                row["mobilenetv2"] = mobilenet_arm(base, supernet, budget, epochs_mobilenet, grid, tried,
                                                   args.work / f"{budget:g}ms" / "mobilenetv2")
            except EdgenasError as e:
                row["mobilenetv2"] = {"error": one_line(e)}
            row["mobilenetv2"]["seconds"] = round(time.perf_counter() - t0, 1)
            print(json.dumps({"budget_ms": budget, "mobilenetv2": row["mobilenetv2"]}), file=sys.stderr, flush=True)
        ours = row.get("evolution", {})
        others = [row[a] for a in ARMS[1:] if row.get(a, {}).get("artifact_accuracy") is not None]
        best = max(others, key=lambda r: r["artifact_accuracy"], default=None)
        row["edgenas_vs_best_other_points"] = (round((ours["artifact_accuracy"] - best["artifact_accuracy"]) * 100, 2)
                                               if best and ours.get("artifact_accuracy") is not None else None)
        row["edgenas_not_slower"] = (ours["measured_ms"] <= best["measured_ms"]
                                     if best and ours.get("measured_ms") is not None else None)
        # evolution's lead over random search as the search saw it (in the supernet) and as it shipped
        rnd = row.get("random", {})
        row["evolution_vs_random_points"] = {
            k: round((ours[k] - rnd[k]) * 100, 2) if ours.get(k) is not None and rnd.get(k) is not None else None
            for k in ("predicted_accuracy", "supernet_accuracy", "artifact_accuracy")}
        rows.append(row)
    plot(rows, args.work / "value.png")
    print(json.dumps({
        "benchmark": "value", "data": args.data, "limit": args.limit, "epochs": args.epochs, "backend": args.backend,
        "precision": args.precision, "device": ctx.key.device, "table": str(searcher.path), "versions": versions(),
        "supernet": str(supernet), "train_and_table_seconds": train_seconds,
        "accuracy_predictor_held_out": predictor, "latency_range_ms": [round(lo, 5), round(hi, 5)],
        "mobilenetv2_epochs": epochs_mobilenet,
        "mobilenetv2_measured": [t.to_dict() for t in tried.values()],
        "budgets": rows, "plot": str(args.work / "value.png"), "seconds": round(time.perf_counter() - started, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
