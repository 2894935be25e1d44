"""A table that describes this device and the kernels that ship, measured when there is none.

`search`, `validate` and `build` never refuse for want of a table for this device, and never use another
device's numbers in silence: they say in one line why they measure (no table for this CPU, entries missing,
the kernels changed) and how long it should take, then measure. Refusals stay for a file that exists and
was measured for something else (another space, schema, backend or precision).
"""

from __future__ import annotations

from pathlib import Path

from edgenas.jsonio import ensure_writable_dir, read_json
from edgenas.progress import say
from edgenas.measure.timing import MeasureConfig
from edgenas.tables.device import describe, device_info
from edgenas.tables.key import TableKey, schedules_differ
from edgenas.tables.latency_table import LatencyTable

#: Networks `validate` measures by default, and when a table has no end-to-end correction yet: a 3-term correction
#: fits well on a dozen, and the other dozen gives the guard band (tools/bench_tables.py measures on many more)
VALIDATE_SAMPLES = 24
#: Networks validating an adapted table: fewer, so that adapting and validating stay within two minutes
ADAPTED_SAMPLES = 16
#: What an adapted table must reach on its held-out networks to be kept; below, its adapted entries are measured
ADAPTED_MIN = {"within_10pct": 0.85, "kendall_tau": 0.8}
#: Seconds a block takes to measure when no table of this kind says how long it took elsewhere: a rough guess for
#: the estimate in the announcement; it decides nothing.
GUESS_S_PER_BLOCK = {"ort": 0.3, "openvino": 0.5, "tvm": 2.5}
#: A whole network of validation costs about this many blocks.
BLOCKS_PER_NETWORK = 6


def _seconds_per_block(key: TableKey, tables_dir: Path) -> float:
    """From this table's own record, else from the same table on another device, else from a table of the same kind
    (backend, precision, layout) of any space or target: a fitted space has no table of its own anywhere, and TVM's time
    per block is mostly its compile, much the same for every space; else a guess."""
    own = key.path(tables_dir)
    kin = sorted(p for p in Path(tables_dir).rglob(own.name) if p != own) if Path(tables_dir).is_dir() else []
    for path in dict.fromkeys([own, *key.siblings(tables_dir), *kin]):
        try:
            stats = LatencyTable.load(path).meta.get("profile") or {}
            if stats.get("measured"):
                return stats["seconds"] / stats["measured"]
        except Exception:  # noqa: BLE001 - only an estimate: any unreadable file is skipped
            continue
    return GUESS_S_PER_BLOCK[key.backend]


def _seconds_per_network(key: TableKey, tables_dir: Path) -> float:
    """From the validation report of this table or of the same table on another device, else from the blocks."""
    for path in [key.path(tables_dir), *key.siblings(tables_dir)]:
        try:
            report = read_json(path.with_suffix(".validation.json"))
            if report.get("measured"):
                return report["seconds"] / report["measured"]
        except Exception:  # noqa: BLE001 - only an estimate: any unreadable file is skipped
            continue
    return BLOCKS_PER_NETWORK * _seconds_per_block(key, tables_dir)


def _about(seconds: float) -> str:
    """Seconds under two minutes (rounded to 10 s), else minutes: "about 1 minute" for 28 s is off by half."""
    if seconds < 120:
        return f"about {max(10, round(seconds / 10) * 10)} s"
    return f"about {round(seconds / 60)} minutes"


def why_not_measured(key: TableKey, tables_dir: Path) -> tuple[str | None, int]:
    """Why this device has no complete, current table (None when it has one), and how many blocks to measure.

    A file that exists and was measured for something else raises, as `LatencyTable.open` does."""
    path, total = key.path(tables_dir), len(key.space.all_layers())
    if not path.exists():
        here = describe(device_info(key.target, key.rpc))
        others = key.siblings(tables_dir)
        if others:
            theirs = ", ".join(sorted({p.relative_to(key.target_dir(tables_dir)).parts[0] for p in others}))
            return f"no {key.name} table of '{key.target.name}' for this {'board' if key.rpc else 'CPU'} ({here}; " \
                   f"tables exist for {theirs})", total
        return f"no {key.name} table of '{key.target.name}' for this {'board' if key.rpc else 'CPU'} ({here}) yet", total
    table = LatencyTable.open(path, key.identity())
    if stale := schedules_differ(table.meta.get("schedules"), key.schedules()):
        return f"{path}: {stale}", total
    if missing := table.missing(key.space):
        return f"{path} lacks {len(missing)} of {total} entries", len(missing)
    return None, 0


def measured_table(key: TableKey, tables_dir: Path, cfg: MeasureConfig | None = None) -> LatencyTable:
    """This device's complete table with today's kernels, profiled or adapted (or completed, or re-measured) when it
    is not."""
    from edgenas.tables.adapt import BORROWED
    from edgenas.tables.profile import adaptation_plan, borrowable, profile

    why, todo = why_not_measured(key, tables_dir)
    if why:
        ensure_writable_dir(tables_dir, "--tables")  # only now: a complete table may sit in a read-only install
        path = key.path(tables_dir)
        table = LatencyTable.load(path) if path.exists() else None
        borrowed = {} if table is not None else borrowable(key, tables_dir)
        plan = None if borrowed else adaptation_plan(key, tables_dir, table)
        if borrowed:
            names = ", ".join(sorted({e[BORROWED] for e in borrowed.values()}))
            todo -= len(borrowed)
            say(f"{why}: taking {len(borrowed)} of its units from this device's {names}, measuring the other {todo}, "
                f"{_about(todo * _seconds_per_block(key, tables_dir))}")
        elif plan:
            sources, probe = plan
            names = ", ".join(sorted({Path(s.label).parts[1] for s in sources}))
            todo = sum(p.key not in (table.entries if table else {}) for p in probe)
            say(f"{why}: adapting it from {len(sources)} table{'s' * (len(sources) > 1)} of {names}, measuring "
                f"{todo} blocks, {_about(todo * _seconds_per_block(key, tables_dir))}")
        else:
            say(f"{why}: profiling it, {_about(todo * _seconds_per_block(key, tables_dir))}")
        profile(key, tables_dir, resume=True, cfg=cfg)
    return LatencyTable.open(key.path(tables_dir), key.identity())


def good_enough(table: LatencyTable) -> str | None:
    """Why an adapted table must be measured in full (its held-out networks are predicted worse than
    `ADAPTED_MIN` asks), or None."""
    held = (table.correction.held_out if table.correction else None) or {}
    low = {k: held.get(k, 0.0) for k, v in ADAPTED_MIN.items() if held.get(k, 0.0) < v}
    if not low:
        return None
    return ", ".join(f"{k} {v:.2f} < {ADAPTED_MIN[k]}" for k, v in low.items())


def ready_table(key: TableKey, tables_dir: Path, cfg: MeasureConfig | None = None,
                samples: int | None = None) -> LatencyTable:
    """`measured_table`, with its end-to-end correction fitted by `validate` when it has none; an adapted table that
    predicts its held-out networks worse than `ADAPTED_MIN` asks is measured in full, then validated again on the
    same networks."""
    from edgenas.tables.adapt import adapted_keys
    from edgenas.tables.profile import profile
    from edgenas.tables.validate import validate

    table = measured_table(key, tables_dir, cfg)
    adapted = len(adapted_keys(table))
    n = samples or (ADAPTED_SAMPLES if adapted else VALIDATE_SAMPLES)
    if not table.correction:
        say(f"{table.path} has no end-to-end correction yet: validating it on {n} networks, "
            f"{_about(n * _seconds_per_network(key, tables_dir))}")
        validate(key, tables_dir, n, cfg=cfg)
        table = LatencyTable.open(table.path, key.identity())
    if adapted and (short := good_enough(table)):
        say(f"{table.path}: the adapted table predicts held-out networks too loosely ({short}): measuring its "
            f"{adapted} adapted blocks, {_about(adapted * _seconds_per_block(key, tables_dir))}")
        profile(key, tables_dir, full=True, cfg=cfg)
        validate(key, tables_dir, n, cfg=cfg)
        table = LatencyTable.open(table.path, key.identity())
    return table
