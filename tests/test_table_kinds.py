"""Tables of what ships: one per precision, read by the search at the precision it ships, and stale when the kernels
that compile applies change after the table was measured."""

import json
import shutil

import pytest

from conftest import FAST, TINY_SPACE, assert_one_line_error, run_cli, table_file
from edgenas.tables.latency_table import LatencyTable


def test_int8_and_fp32_tables_differ_and_the_search_reads_the_one_it_ships(tiny_run, tmp_path):
    tables, run = tiny_run
    run_cli("profile", "--space", TINY_SPACE, "--backend", "ort", "--precision", "fp32", "--tables", tables, *FAST, check=0)
    int8, fp32 = LatencyTable.load(table_file(tables)), LatencyTable.load(table_file(tables, precision="fp32"))
    assert int8.identity["precision"] == "int8" and fp32.identity["precision"] == "fp32"
    assert set(int8.entries) == set(fp32.entries)
    # the same blocks, each measured in its own table (which is faster is the CPU's business, not the test's)
    assert int8.entries != fp32.entries and int8.path != fp32.path

    def search(*extra):
        return run_cli("search", "--supernet", run, "--backend", "ort", "--tables", tables, "--budget-ms", 10, "--threads", 1,
                       "--generations", 3, "--population", 8, "--subnets", 10, "--out", tmp_path / "s", *extra, "--json")

    r = json.loads(search("--no-measure").stdout)  # int8 by default: what a build ships
    assert r["precision"] == "int8" and r["table"] == str(table_file(tables))
    # fp32 has no validated table yet: it is validated first, then read
    proc = search("--no-measure", "--precision", "fp32")
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["precision"] == "fp32" and r["table"] == str(table_file(tables, precision="fp32"))
    assert "no end-to-end correction yet: validating" in proc.stderr


def test_a_table_is_stale_when_the_tuning_database_changes(tvm_fp32_tables, tmp_path):
    tables, db = tmp_path / "tables", tmp_path / "db"
    shutil.copytree(tvm_fp32_tables, tables)  # profiled against a database that did not exist, as `db` does not yet
    args = ("profile", "--space", TINY_SPACE, "--backend", "tvm", "--precision", "fp32", "--tables", tables,
            "--tuning-db", db, *FAST)
    path = table_file(tables, "tvm", "fp32")
    before = LatencyTable.load(path)
    assert before.meta["schedules"]["records"] is None and before.meta["schedules"]["default"]
    # the database grows after the table was measured (a tuning run added schedules)
    db.mkdir()
    (db / "database_tuning_record.json").write_text('[0, [[], []], [0.001], null, null]\n')
    proc = run_cli(*args, "--resume", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "has changed since it was measured" in proc.stderr and "measuring every entry again" in proc.stderr
    [out] = json.loads(proc.stdout)
    after = LatencyTable.load(path)
    assert out["measured"] == len(after.entries) == len(before.entries) and after.meta["schedules"]["records"]
    # a table measured for another precision than the file name says is refused, not used
    data = json.loads(path.read_text())
    data["meta"]["identity"]["precision"] = "int8"
    path.write_text(json.dumps(data))
    assert_one_line_error(run_cli(*args, "--resume"), str(path), "precision", "refused")


@pytest.mark.parametrize("flag, value", [("--precision", "int4"), ("--layout", "NCWH")])
def test_bad_table_options(tables, flag, value):
    assert_one_line_error(run_cli("profile", "--space", TINY_SPACE, "--tables", tables, flag, value), flag)


def test_a_damaged_table_gets_one_line(tiny_run, tmp_path):

    tables = tmp_path / "tables"
    shutil.copytree(tiny_run[0], tables)
    path = table_file(tables)
    data = json.loads(path.read_text())
    for damage, needle in (({"correction": {"coef": [1.0, "x"]}}, "correction"),
                           ({"entries": {**data["entries"], "stem:c1-o8-s2-r28": {"min_ms": float("nan")}}}, "stem:c1-o8-s2-r28")):
        path.write_text(json.dumps({**data, **damage}))
        assert_one_line_error(run_cli("search", "--supernet", tiny_run[1], "--backend", "ort", "--tables", tables, "--budget-ms", 1,
                                      "--no-measure", "--out", tmp_path / "s"), str(path), needle)
    path.write_text(json.dumps(data)[: len(json.dumps(data)) // 2])
    assert_one_line_error(run_cli("validate", "--space", TINY_SPACE, "--backend", "ort", "--tables", tables), str(path))


def test_an_int8_table_records_its_tiles_and_padded_stem_and_is_stale_without_them():
    """The stem of an RGB space reads 4 channels where the CPU has an integer dot product (`passes.PadChannels`): a
    table that measured it with 3 no longer describes what ships. A grey space's stem is not padded, so its tables
    (the shipped ones) are unaffected; nor are fp32 tables, whose convolutions are not padded."""
    from edgenas.compile.schedules import padded_input_channels
    from edgenas.compile.tune import compile_target
    from edgenas.space import get_space
    from edgenas.tables.key import TableKey, schedules_differ
    from edgenas.targets import get_target

    host = get_target("host")
    rgb, grey = get_space("mobilenetv3-224"), get_space("digits")
    now = TableKey(host, "tvm", "int8", rgb, 1).schedules()
    padded = padded_input_channels(compile_target(host), 3)
    assert now.get("stem_channels") == (None if padded == 3 else "3->4")
    assert "stem_channels" not in TableKey(host, "tvm", "int8", grey, 1).schedules()
    assert "stem_channels" not in TableKey(host, "tvm", "fp32", rgb, 1).schedules()
    before = {**now, "stem_channels": None}
    assert schedules_differ(now, now) is None
    if padded != 3:  # every x86 CPU with AVX2
        assert "its stem read its own input channels, compile now reads 3->4" in schedules_differ(before, now)
        # and its int8 tiles: a table measured before the dot-product layers' tiles were sized by their reduction
        assert now["int8_tiles"] and "int8 kernels had tiles 'None'" in schedules_differ({**now, "int8_tiles": None}, now)
        assert "int8_tiles" not in TableKey(host, "tvm", "fp32", grey, 1).schedules()


def test_an_openvino_table_is_named_by_the_isa_cap_its_kernels_ran_under(monkeypatch, tmp_path):
    """OpenVINO capped to an older class (ONEDNN_MAX_CPU_ISA) runs other kernels on the same CPU: its own table."""
    from edgenas.space import get_space
    from edgenas.tables.deployment import probe_path
    from edgenas.tables.key import TableKey
    from edgenas.targets import get_target

    host, space = get_target("host"), get_space("digits")
    key = TableKey(host, "openvino", "int8", space, 1)
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA", raising=False)
    assert key.name == "openvino-int8" and key.identity()["max_cpu_isa"] is None
    assert probe_path(key, tmp_path).name == "precision-openvino.json"
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert key.name == "openvino-int8-avx2" and key.identity()["max_cpu_isa"] == "AVX2"
    assert probe_path(key, tmp_path).name == "precision-openvino-avx2.json"
    assert "max_cpu_isa" not in TableKey(host, "ort", "int8", space, 1).identity()
    assert TableKey(host, "tvm", "int8", space, 1).name == "tvm-int8-nhwc"
