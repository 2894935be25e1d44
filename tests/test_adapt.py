"""A new device's table adapted from another device's: a few blocks measured, the rest adapted and marked so; `--full`
measures them; a damaged source is named and passed over."""

import json

from conftest import FAST, TINY_SPACE, run_cli, said, table_file
from test_build import OTHER_CPU, tables_of_another_cpu

from edgenas.space import get_space
from edgenas.tables.adapt import ADAPTED, BORROWED, adapted_keys, probe_size
from edgenas.measure.timing import STATISTIC
from edgenas.tables.latency_table import LatencyTable

COMMON = ("--space", TINY_SPACE, "--backend", "ort", *FAST)


def _profile(tables, *extra):
    return run_cli("profile", *COMMON, "--tables", tables, "--json", *extra, check=0)


def test_a_new_device_measures_a_probe_and_adapts_the_rest_then_full_measures_them(tiny_run, tmp_path):
    tables = tmp_path / "tables"
    source = tables_of_another_cpu(tiny_run[0], tables)
    proc = _profile(tables)
    r = json.loads(proc.stdout)[0]
    units, probe = len(get_space(TINY_SPACE).all_layers()), probe_size(get_space(TINY_SPACE))
    assert r["entries"] == units and r["measured"] == probe and r["adapted"] == units - probe
    table = LatencyTable.load(table_file(tables))
    assert not table.missing(get_space(TINY_SPACE)) and table.correction is None
    adapted = adapted_keys(table)
    label = str(source.relative_to(tables))
    assert len(adapted) == units - probe and all(table.entries[k][ADAPTED] == [label] for k in adapted)
    measured = [k for k in table.entries if k not in adapted]
    assert all(table.entries[k]["count"] == 5 for k in measured)  # measured with --repeat 5, not copied
    assert table.meta["adapted"]["sources"] == [label] and table.meta["adapted"]["probe_blocks"] == probe
    assert 0 <= table.meta["adapted"]["loo_within_10pct"] <= 1
    theirs = LatencyTable.load(source)
    assert any(table.entries[k][STATISTIC] != theirs.entries[k][STATISTIC] for k in adapted)  # adapted, not copied

    again = json.loads(_profile(tables, "--full").stdout)[0]
    assert again["measured"] == units - probe and again["adapted"] == 0
    full = LatencyTable.load(table_file(tables))
    assert not adapted_keys(full) and "adapted" not in full.meta
    assert all(full.entries[k][STATISTIC] == table.entries[k][STATISTIC] for k in measured)  # the probe is kept


def test_full_on_a_new_device_measures_every_block(tiny_run, tmp_path):
    tables = tmp_path / "tables"
    tables_of_another_cpu(tiny_run[0], tables)
    r = json.loads(_profile(tables, "--full").stdout)[0]
    assert r["measured"] == r["entries"] and r["adapted"] == 0
    assert not adapted_keys(LatencyTable.load(table_file(tables)))


def test_a_damaged_source_is_named_in_one_line_and_passed_over(tiny_run, tmp_path):
    tables = tmp_path / "tables"
    good = tables_of_another_cpu(tiny_run[0], tables)
    theirs = tables / "host" / OTHER_CPU
    damaged = tables / "host" / "damaged-cpu" / good.relative_to(theirs)
    damaged.parent.mkdir(parents=True)
    damaged.write_text(good.read_text()[:1000])
    proc = _profile(tables)
    warnings = [line for line in said(proc.stderr) if "not adapting from it" in line]
    assert len(warnings) == 1 and str(damaged) in warnings[0] and "Traceback" not in proc.stderr
    r = json.loads(proc.stdout)[0]
    assert r["adapted"] > 0
    assert LatencyTable.load(table_file(tables)).meta["adapted"]["sources"] == [str(good.relative_to(tables))]


def _rgb_tiny(tmp_path):
    """The tiny space fitted to 3-channel images, as `space.fit` fits a template: only its stem's units differ."""
    data = json.loads(open(TINY_SPACE).read())
    data.update(name="tiny-c3-r16-n10", in_channels=3)
    path = tmp_path / "tiny-rgb.json"
    path.write_text(json.dumps(data))
    space = get_space(str(path))
    stems = [layer for layer in space.all_layers() if layer.kind == "stem"]
    return path, space, stems


def test_a_space_of_the_same_units_borrows_this_device_s_measurements_and_measures_the_rest(tiny_run, tmp_path):
    """A fitted space on a device that measured its template: every unit the two share is this device's measurement
    already; only the new stem's units are measured."""
    import shutil

    tables = tmp_path / "tables"
    shutil.copytree(tiny_run[0], tables)
    path, space, stems = _rgb_tiny(tmp_path)
    proc = run_cli("profile", "--space", path, "--backend", "ort", *FAST, "--tables", tables, "--json", check=0)
    r = json.loads(proc.stdout)[0]
    units = len(space.all_layers())
    assert r["measured"] == len(stems) and r["borrowed"] == units - len(stems) and r["adapted"] == 0
    mine, template = LatencyTable.load(table_file(tables, space=str(path))), LatencyTable.load(table_file(tables))
    assert not mine.missing(space)
    label = str(table_file(tables).relative_to(tables))
    for layer in space.all_layers():
        entry = mine.entries[layer.key]
        if layer.kind == "stem":
            assert BORROWED not in entry and entry["count"] == 5
        else:
            assert entry[BORROWED] == label and entry[STATISTIC] == template.entries[layer.key][STATISTIC]
    assert mine.meta[BORROWED] == [label]


def test_another_device_s_table_of_the_template_adapts_a_fitted_space_unit_by_unit(tiny_run, tmp_path):
    """On a device with no table of its own, another device's table of the template is a source for the units it
    holds; the units it lacks (the new stem) are measured with the probe."""
    tables = tmp_path / "tables"
    source = tables_of_another_cpu(tiny_run[0], tables)
    path, space, stems = _rgb_tiny(tmp_path)
    r = json.loads(run_cli("profile", "--space", path, "--backend", "ort", *FAST, "--tables", tables, "--json",
                           check=0).stdout)[0]
    table = LatencyTable.load(table_file(tables, space=str(path)))
    adapted = adapted_keys(table)
    assert r["borrowed"] == 0 and r["adapted"] == len(adapted) > 0 and r["measured"] + r["adapted"] == r["entries"]
    assert all(table.entries[k][ADAPTED] == [str(source.relative_to(tables))] for k in adapted)
    assert not {layer.key for layer in stems} & set(adapted) and not table.missing(space)
