"""`edgenas validate`: measure whole networks, random ones and those a search would pick, and compare them with the
table's prediction."""

from __future__ import annotations

import random
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from edgenas.errors import BadInput, warn
from edgenas.jsonio import atomic_write_json, exclusive_lock, now, read_json
from edgenas.measure.batch import GraphJob, measure_saving
from edgenas.measure.load import busy_note
from edgenas.measure.timing import STATISTIC, MeasureConfig
from edgenas.plots import new_figure, save_figure
from edgenas.space import Arch, SearchSpace
from edgenas.tables.correction import Correction, apply_correction, fit_correction
from edgenas.tables.key import TableKey
from edgenas.tables.latency_model import LatencyModel
from edgenas.tables.latency_table import LatencyTable
from edgenas.tables.metrics import prediction_metrics

MIN_SAMPLES = 6


def _fit(table: LatencyTable, space: SearchSpace, raw, units, measured) -> Correction:
    """The linear correction, unless it predicts a latency of zero or less for some network of the space: fitted on
    networks of one size range, its intercept and per-unit terms can go below zero for the fastest network (seen on
    the tiny test space under load). Then the proportional one, which cannot."""
    table.correction = fit_correction(raw, units, measured)
    fastest = LatencyModel(table, space).fastest()[0]
    if fastest > 0:
        return table.correction
    return replace(fit_correction(raw, units, measured, proportional=True),
                   rejected={"coef": list(table.correction.coef), "fastest_ms": fastest})


@dataclass(frozen=True)
class ValidationReport:
    table: str
    target: str
    backend: str
    precision: str
    space: str
    samples: int
    train: int
    held_out: int
    measured: int
    reused: int
    raw: dict
    corrected: dict
    correction: dict
    report: str
    plot: str
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


def sample_archs(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """`n` distinct random networks; a space too small to hold them is refused."""
    rng, found = random.Random(seed), {}
    for _ in range(n * 50):
        arch = space.sample(rng)
        found.setdefault(arch.encoding, arch)
        if len(found) == n:
            return list(found.values())
    raise BadInput(f"--samples {n}: space '{space.name}' gave only {len(found)} distinct networks")


def search_like_archs(model: LatencyModel, n: int, rng: random.Random, candidates: int = 3000) -> list[Arch]:
    """Networks where a search looks: for `n` budgets spread evenly from the fastest network of the space to its
    largest, the slowest of many random candidates that fits under each (a search's winner is the largest network
    its budget admits, and a predictor's errors there are the ones that break a budget)."""
    space = model.space
    pool = {a.encoding: a for a in (space.sample(rng, lean=rng.uniform(-1, 1)) for _ in range(candidates))}
    ranked = sorted(pool.values(), key=model.raw_ms)
    raws = [model.raw_ms(a) for a in ranked]
    lo, hi = model.raw_ms(model.fastest()[1]), model.raw_ms(space.largest())
    found: dict[str, Arch] = {}
    for i in range(n):
        budget = lo + (hi - lo) * (i + 1) / n
        j = max(0, int(np.searchsorted(raws, budget, side="right")) - 1)
        while j > 0 and ranked[j].encoding in found:
            j -= 1
        found.setdefault(ranked[j].encoding, ranked[j])
    return list(found.values())


def choose_networks(model: LatencyModel, n: int, seed: int, measured: dict) -> list[Arch]:
    """`n` networks: those this device already measured for this table first (a re-validated table is judged on
    them again, at no cost), then half where a search looks (`search_like_archs`) and half at random."""
    found = {k: Arch.from_dict(v["arch"]) for k, v in list(measured.items())[:n]}
    rng = random.Random(seed)
    for arch in search_like_archs(model, max(1, (n - len(found)) // 2), rng):
        if len(found) < n:
            found.setdefault(arch.encoding, arch)
    for arch in sample_archs(model.space, n, seed):
        if len(found) < n:
            found.setdefault(arch.encoding, arch)
    if len(found) < n:
        raise BadInput(f"--samples {n}: space '{model.space.name}' gave only {len(found)} distinct networks")
    return list(found.values())


def _load_samples(path: Path, ident: dict) -> dict:
    """Measured whole networks from an earlier (maybe interrupted) run with the same table identity and kernels.
    A damaged file is measured again: it is a cache."""
    if not path.exists():
        return {}
    try:
        data = read_json(path)
        samples = data.get("samples", {}) if data.get("identity") == ident else {}
        if all(isinstance(v["measured"][STATISTIC], (int, float)) for v in samples.values()):
            return samples
    except (BadInput, AttributeError, KeyError, TypeError):
        pass
    warn(f"{path}: damaged; measuring its networks again")
    return {}


def check_samples(samples: int) -> int:
    if samples < MIN_SAMPLES:
        raise BadInput(f"--samples {samples}: need at least {MIN_SAMPLES} networks (half fit the correction, half test it)")
    return samples


def validate(key: TableKey, tables_dir: Path, samples: int, *, seed: int = 0, cfg: MeasureConfig | None = None,
             train_fraction: float = 0.5) -> ValidationReport:
    check_samples(samples)
    cfg = cfg or MeasureConfig.for_backend(key.backend)
    path, space = key.path(tables_dir), key.space
    if not path.exists():
        raise BadInput(f"no latency table at {path}; run `edgenas profile --target {key.target.name} --backend {key.backend} "
                       f"--precision {key.precision}` first")
    # the networks are measured with today's kernels: a table measured with others would not match them
    ident = {**key.identity(), "schedules": key.schedules()}
    start = time.perf_counter()
    with exclusive_lock(path):
        table = LatencyTable.open(path, key.identity())
        if missing := table.missing(space):
            raise BadInput(f"{path} lacks {len(missing)} entries; run `edgenas profile --resume` first")
        samples_path = path.with_suffix(".samples.json")
        cache = _load_samples(samples_path, ident)
        archs = choose_networks(LatencyModel(table, space), samples, seed, cache)
        todo = [a for a in archs if a.encoding not in cache]
        if todo:
            _measure_networks(todo, cache, samples_path, ident, key, cfg)

        model = LatencyModel(table, space)
        raw = np.array([model.raw_ms(a) for a in archs])
        units = np.array([len(space.layers(a)) for a in archs])
        measured = np.array([cache[a.encoding]["measured"][STATISTIC] for a in archs])
        order = np.random.default_rng(seed).permutation(len(archs))
        n_train = min(len(archs) - 3, max(3, round(len(archs) * train_fraction)))
        train, test = order[:n_train], order[n_train:]

        correction = _fit(table, space, raw[train], units[train], measured[train])
        corrected = np.array([apply_correction(correction, r, u) for r, u in zip(raw, units)])
        raw_m = prediction_metrics(raw[test], measured[test])
        cor_m = prediction_metrics(corrected[test], measured[test])
        table.correction = correction.validated(cor_m, now())
        table.save()

        report_path, plot_path = path.with_suffix(".validation.json"), path.with_suffix(".validation.png")
        report = ValidationReport(
            str(path), key.target.name, key.backend, key.precision, space.name, len(archs), len(train), len(test), len(todo),
            len(archs) - len(todo), raw_m, cor_m, table.correction.to_dict(), str(report_path), str(plot_path),
            round(time.perf_counter() - start, 2),
        )
        train_set = set(train.tolist())
        atomic_write_json(report_path, {
            **report.to_dict(),
            "table_meta": table.meta,
            "networks": [
                {"arch": a.encoding, "split": "train" if i in train_set else "held_out", "raw_ms": float(r),
                 "corrected_ms": float(c), "measured_ms": float(m)}
                for i, (a, r, c, m) in enumerate(zip(archs, raw, corrected, measured))
            ],
        })
        title = f"{key.target.name} / {key.name} / {space.name}"
        _plot(plot_path, raw, corrected, measured, test, title, raw_m, cor_m)
    return report


def _measure_networks(todo, cache, samples_path, ident, key: TableKey, cfg) -> None:
    def save(job, measured) -> None:
        cache[job.arch.encoding] = {"arch": job.arch.to_dict(), "measured": measured.to_dict()}
        atomic_write_json(samples_path, {"identity": ident, "samples": cache})

    backend = key.make_backend(cfg)
    try:
        load = measure_saving(key, backend, [GraphJob(key.space, arch=a) for a in todo], save,
                              desc=f"validate {key.target.name}/{key.name}", unit="net", total=len(todo),
                              kept=lambda: f"{len(cache)} measured networks are kept in {samples_path}",
                              remedy="run the same command again to measure the rest")
    finally:
        backend.close()
    if note := busy_note(load.cores):
        warn(f"{samples_path}: {note} (delete it and run `edgenas validate` again)")


def _plot(path: Path, raw, corrected, measured, test, title: str, raw_m: dict, cor_m: dict) -> None:
    fig, ax = new_figure(figsize=(5.5, 5), dpi=120)
    lo, hi = 0.9 * min(measured.min(), raw.min()), 1.1 * max(measured.max(), raw.max())
    xs = np.linspace(lo, hi, 2)
    ax.fill_between(xs, xs * 0.9, xs * 1.1, color="0.9", label="±10%")
    ax.plot(xs, xs, color="0.4", lw=1)
    ax.scatter(measured, raw, s=10, color="0.6", label=f"sum of blocks (held-out τ={raw_m['kendall_tau']:.3f})")
    ax.scatter(measured[test], corrected[test], s=12, color="tab:blue",
               label=f"corrected, held-out: {cor_m['within_10pct']:.0%} within ±10%, τ={cor_m['kendall_tau']:.3f}")
    ax.set(xlabel="measured end-to-end latency (ms)", ylabel="predicted latency (ms)", title=title, xlim=(lo, hi), ylim=(lo, hi))
    ax.legend(loc="upper left", fontsize=7)
    save_figure(fig, path)
