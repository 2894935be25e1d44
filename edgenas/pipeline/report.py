"""What a build shows of its summary (`pipeline.summary.BuildSummary`): the table it prints, and report.md with its two plots."""

from __future__ import annotations

from pathlib import Path

from edgenas.jsonio import atomic_write_bytes, now
from edgenas.pipeline.summary import REPORT, BuildSummary
from edgenas.plots import new_figure, save_figure

LATENCY_PLOT = "latency.png"


def _ms(v) -> str:
    return "not measured" if v is None else f"{v:.4f} ms"


def _again(sm: BuildSummary) -> str:
    first, *again = sm.artifact_readings_ms
    return f"; measured again after a first reading of {first:.4f} ms" if again else ""


def rows(sm: BuildSummary) -> list[tuple[str, str]]:
    pr, me, acc, prec = sm.predicted_ms, sm.measured_ms, sm.accuracy, sm.precision
    verdict = {True: "within budget", False: "OVER BUDGET", None: "not checked (target not measurable here)"}[sm.within_budget]
    pruned = (lambda text: f", {text}") if sm.pruned else (lambda text: "")
    return [
        ("budget", f"{sm.budget_ms:g} ms on {sm.target} ({sm.backend})" +
                   (f": the artifact uses {sm.budget_used:.0%} of it" if sm.budget_used is not None else "") +
                   (f"; {sm.fit}" if sm.fit else f", searched with a {sm.margin_pct:.1f}% guard band")),
        ("ships", sm.precision_why or prec),
        *([("search", sm.search_on_noise)] if sm.search_on_noise else []),
        ("artifact latency", f"{prec} {_ms(me.artifact)} measured ({sm.statistic}{_again(sm)}), " +
                             (f"{_ms(pr.artifact)} predicted" if pr.artifact is not None else
                              f"not predicted (the table is {sm.searched_precision})") + f": {verdict}"),
        (f"{sm.searched_precision or prec} latency", f"searched {_ms(pr.searched)} predicted, {_ms(me.searched)} measured" +
                            pruned(f"pruned {_ms(pr.pruned)} predicted, {_ms(me.pruned)} measured")),
        ("accuracy (validation)", (f"artifact {acc.artifact:.4f} ({prec}, the artifact itself on {sm.runtime}); "
                                   if acc.artifact is not None else "artifact not measured here; ") +
                                  f"searched fp32 {acc.searched_fp32:.4f}" +
                                  (f", fine-tuned fp32 {acc.tuned_fp32:.4f}" if acc.tuned_fp32 is not None else "") +
                                  pruned(f"pruned fp32 {acc.pruned_fp32:.4f}") +
                                  (f", int8 gate {acc.int8:.4f} on {acc.int8_judged_by or 'ort'} "
                                   f"({0.0 - acc.int8_drop_points:+.2f} points; remedy {acc.quantize_remedy})"
                                   if acc.int8 is not None else "")),
        ("pruning", sm.pruning or ("pruned" if sm.pruned else "not pruned")),
        ("MACs", f"{sm.macs.searched:,}" + pruned(f"{sm.macs.shipped:,} after pruning")),
        ("parameters", f"{sm.params.searched:,}" + pruned(f"{sm.params.shipped:,} after pruning")),
        ("size", ", ".join(f"{name} {n / 1024:.1f} KiB" for name, n in sm.files_bytes.items())),
        ("network", sm.network + (" (then pruned)" if sm.pruned else "")),
        ("artifact", sm.artifact),
        ("report", sm.report),
    ]


def table_text(sm: BuildSummary) -> str:
    r = rows(sm)
    width = max(len(k) for k, _ in r)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in r)


def latency_plot(path: Path, sm: BuildSummary, validation: dict | None) -> None:
    """Predicted against measured: the table's held-out networks, and this build's networks on top."""
    fig, ax = new_figure(figsize=(5.2, 4.6), dpi=120)
    points = []
    if validation:
        held = [n for n in validation.get("networks", []) if n.get("split") == "held_out"] or validation.get("networks", [])
        ax.scatter([n["corrected_ms"] for n in held], [n["measured_ms"] for n in held], s=10, color="0.6",
                   label=f"table's held-out networks ({len(held)})")
        points += [v for n in held for v in (n["corrected_ms"], n["measured_ms"])]
    pr, me = sm.predicted_ms, sm.measured_ms
    prec, table_prec = sm.precision, sm.searched_precision or sm.precision
    for label, x, y, marker in ((f"searched, {table_prec}", pr.searched, me.searched, "o"),
                                (f"pruned, {table_prec}", pr.pruned, me.pruned if sm.pruned else None, "s"),
                                (f"artifact, {prec}", pr.artifact, me.artifact, "*")):
        if x is not None and y is not None:  # the artifact has no prediction when it ships another precision
            ax.scatter([x], [y], marker=marker, s=60, zorder=3, label=label)
            points += [x, y]
    lo, hi = min(points + [sm.budget_ms]) * 0.9, max(points + [sm.budget_ms]) * 1.1
    ax.plot([lo, hi], [lo, hi], "k:", lw=1, label="predicted = measured")
    ax.axhline(sm.budget_ms, color="tab:red", ls="--", lw=1, label=f"budget {sm.budget_ms:g} ms")
    ax.set(xlim=(lo, hi), ylim=(lo, hi), xlabel="predicted latency (ms)", ylabel=f"measured latency (ms, {sm.statistic})",
           title=f"{sm.target} / {sm.backend} / {prec}")
    ax.legend(fontsize=7)
    save_figure(fig, path)


def write_report(out: Path, sm: BuildSummary, stages: dict, validation: dict | None) -> Path:
    out = Path(out)
    latency_plot(out / LATENCY_PLOT, sm, validation)
    lines = [f"# edgenas build: {sm.network}", "", f"Written {now()}.", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v.replace('|', '/')} |" for k, v in rows(sm)]
    lines += ["", "## Stages", "", "| stage | status | seconds | runs |", "|---|---|---:|---:|"]
    lines += [f"| {name} | {rec['status']} | {rec.get('seconds', '')} | {rec.get('runs', '')} |" for name, rec in stages.items()]
    lines += ["", "## Accuracy against latency (the search's Pareto front)", "", "![Pareto front](search/pareto.png)",
              "", "## Predicted against measured latency", "", f"![predicted against measured]({LATENCY_PLOT})", ""]
    atomic_write_bytes(out / REPORT, "\n".join(lines).encode())
    return out / REPORT
