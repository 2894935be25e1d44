#!/usr/bin/env python
"""Benchmark adapted tables: leave one device out, adapt its table from the others', and score it on whole networks.

Prints one JSON object. For every table of the digits space found under --tables (and --more, such as
../shared/tables), with the same space, backend and thread count on other devices:

- offline (every device with recorded networks): the held-out device's probe blocks are read from its own table (they
  were measured there), the rest adapted from the other devices' tables as `edgenas profile` adapts them; the end-to-end
  correction is fitted on --fit of its recorded networks and scored on the others, next to the full table scored on the
  same networks. The wall time is estimated from the device's own recorded profile and validation times.
- --live (this machine): this device's table is adapted for real in a scratch directory holding only the other
  devices' tables (wall time measured), validated as a build validates it, then scored on --networks networks measured
  here (half where a search looks, half random), next to this device's full table when there is one.

    .venv/bin/python tools/bench_adapt.py --more ../shared/tables                    # offline, seconds
    .venv/bin/python tools/bench_adapt.py --more ../shared/tables --live --backends tvm --networks 100   # ~12 min
"""

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from edgenas.cli_options import add_to_parser  # noqa: E402
from edgenas.measure.batch import GraphJob, measure_jobs  # noqa: E402
from edgenas.measure.timing import STATISTIC, MeasureConfig  # noqa: E402
from edgenas.paths import tables_dir  # noqa: E402
from edgenas.space import Arch, get_space  # noqa: E402
from edgenas.measure.backends import BACKENDS  # noqa: E402
from edgenas.tables.adapt import ADAPTED_META, Source, adapt_entries, adapted_keys, is_table_file, probe_layers  # noqa: E402
from edgenas.tables.correction import apply_correction, fit_correction  # noqa: E402
from edgenas.tables.device import cpu_model, llvm_cpu  # noqa: E402
from edgenas.tables.key import TableKey  # noqa: E402
from edgenas.tables.latency_model import LatencyModel  # noqa: E402
from edgenas.tables.latency_table import LatencyTable  # noqa: E402
from edgenas.tables.metrics import prediction_metrics  # noqa: E402
from edgenas.tables.ready import ADAPTED_SAMPLES, ready_table  # noqa: E402
from edgenas.tables.validate import search_like_archs, sample_archs  # noqa: E402
from edgenas.targets import get_target  # noqa: E402
from edgenas.versions import versions  # noqa: E402


def all_tables(roots: list[Path], space) -> list[tuple[str, LatencyTable]]:
    """Complete, measured tables of `space` in directories of device directories (`latency_tables/host`)."""
    found = []
    for root in roots:
        for path in sorted(root.glob("*/*.json")):
            if not any(is_table_file(path, b) for b in BACKENDS):
                continue
            t = LatencyTable.load(path)
            if t.identity.get("space_hash") == space.hash and not t.missing(space) and not adapted_keys(t):
                found.append((f"{path.parent.name}/{path.stem}", t))
    return found


def score(table: LatencyTable, space, nets: list, fit: int, seed: int = 0) -> dict:
    """The correction fitted on `fit` of the recorded networks, scored on the rest."""
    model = LatencyModel(table, space)
    raw = np.array([model.raw_ms(a) for a, _ in nets])
    units = np.array([len(space.layers(a)) for a, _ in nets])
    y = np.array([m for _, m in nets])
    order = np.random.default_rng(seed).permutation(len(nets))
    tr, te = order[:fit], order[fit:]
    c = fit_correction(raw[tr], units[tr], y[tr])
    pred = np.array([apply_correction(c, r, u) for r, u in zip(raw, units)])
    return {k: round(v, 4) for k, v in prediction_metrics(pred[te], y[te]).items()}


def adapted_copy(table: LatencyTable, sources: list[Source], space) -> LatencyTable:
    """`table`'s device as `edgenas profile` would adapt it: probe entries read from the table, the rest adapted."""
    probe = probe_layers(space, sources)
    measured = {p.key: table.entries[p.key][STATISTIC] for p in probe}
    latencies, best, loo = adapt_entries(space, sources, measured)
    return LatencyTable(meta={"sources": [s.label for s in best], "probe": len(probe), "loo_within_10pct": round(loo, 4)},
                        entries={k: {STATISTIC: v} for k, v in latencies.items()})


def offline(tables, space, fit: int) -> list[dict]:
    rows = []
    for label, table in tables:
        nets_path = Path(table.path).with_suffix(".samples.json")
        if not nets_path.exists():
            continue
        nets = [(Arch.from_dict(v["arch"]), v["measured"][STATISTIC])
                for v in json.loads(nets_path.read_text())["samples"].values()]
        device, backend = table.identity["device"], table.identity["backend"]
        sources = [Source(lb, t) for lb, t in tables if t.identity["device"] != device and t.identity["backend"] == backend]
        if not sources or len(nets) <= fit + 2:
            continue
        adapted = adapted_copy(table, sources, space)
        prof = table.meta.get("profile") or {}
        per_block = prof["seconds"] / prof["measured"] if prof.get("measured") else None
        val = json.loads(Path(table.path).with_suffix(".validation.json").read_text())
        per_net = val["seconds"] / max(1, val["measured"]) if val.get("measured") else None
        rows.append({
            "held_out_device": label, "networks_recorded": len(nets), "fit_networks": fit,
            "sources": adapted.meta["sources"], "probe_blocks": adapted.meta["probe"],
            "probe_loo_within_10pct": adapted.meta["loo_within_10pct"],
            "estimated_seconds": {
                "adapt_and_validate": round(adapted.meta["probe"] * per_block + fit * 2 * per_net, 1)
                if per_block and per_net else None,
                "full_profile_and_validate": round(prof["seconds"] + val["seconds"], 1) if per_block and per_net else None},
            "adapted": score(adapted, space, nets, fit), "full_table": score(table, space, nets, fit)})
    return rows


def live(backend: str, precision: str, roots: list[Path], mine_dir: Path, space, networks: int, seed: int) -> dict:
    """Adapt this device's table for real from the others' and score it on networks measured here."""
    target = get_target("host")
    key = TableKey(target, backend, precision, space, target.thread_count())
    mine = key.path(mine_dir)
    with tempfile.TemporaryDirectory(prefix="edgenas-bench-adapt-") as tmp:
        scratch = Path(tmp) / "tables"
        for root in roots:  # every other device's tables, none of this one's
            for path in root.glob("*/*.json"):
                if path.parent.name != key.device:
                    dest = scratch / target.name / path.relative_to(root)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy(path, dest)
        t0 = time.perf_counter()
        adapted = ready_table(key, scratch, samples=ADAPTED_SAMPLES)
        seconds = time.perf_counter() - t0
        refined = not adapted_keys(adapted)
        model = LatencyModel(adapted, space)
        rng = random.Random(seed + 1)
        archs = {a.encoding: a for a in search_like_archs(model, networks // 2, rng)}
        for a in sample_archs(space, networks, seed + 1):
            if len(archs) < networks:
                archs.setdefault(a.encoding, a)
        cfg = MeasureConfig.for_backend(backend)
        backend_ = key.make_backend(cfg)
        try:
            measured = {j.arch.encoding: getattr(m, STATISTIC)
                        for j, m in measure_jobs(key, backend_, [GraphJob(space, arch=a) for a in archs.values()])}
        finally:
            backend_.close()
        y = [measured[a.encoding] for a in archs.values()]
        out = {"table": key.name, "device": key.device, "adapt_and_validate_seconds": round(seconds, 1),
               "refined_in_full": refined, "meta_adapted": adapted.meta.get(ADAPTED_META),
               "networks": len(y), "adapted": {k: round(v, 4) for k, v in prediction_metrics(
                   [model(a) for a in archs.values()], y).items()}}
        if mine.exists():
            full = LatencyModel(LatencyTable.load(mine), space)
            out["full_table"] = {k: round(v, 4) for k, v in prediction_metrics([full(a) for a in archs.values()], y).items()}
        return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_to_parser(ap, "tables", "precision", "seed", tables=tables_dir())
    ap.add_argument("--more", type=Path, action="append", default=[], help="another directory of tables (of host)")
    ap.add_argument("--fit", type=int, default=ADAPTED_SAMPLES // 2, help="recorded networks that fit the correction")
    ap.add_argument("--live", action="store_true", help="also adapt this machine's table for real")
    ap.add_argument("--backends", default="ort,tvm")
    ap.add_argument("--networks", type=int, default=100)
    args = ap.parse_args()
    space = get_space("digits")
    roots = [args.tables / "host", *[m / "host" if (m / "host").is_dir() else m for m in args.more]]
    tables = all_tables(roots, space)
    out = {"benchmark": "adapted_tables", "cpu": cpu_model(), "llvm_cpu": llvm_cpu(), "space": space.name,
           "versions": versions(), "tables": [lb for lb, _ in tables], "offline": offline(tables, space, args.fit)}
    if args.live:
        out["live"] = [live(b, args.precision, roots, args.tables, space, args.networks, args.seed) for b in args.backends.split(",")]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
