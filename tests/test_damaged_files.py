"""A damaged file that edgenas wrote itself (cut in half, or overwritten with garbage) gets one line naming the file
and what to do, or a clean recovery; never an internal error. Every test damages a copy, never a session fixture."""

import json
import shutil

import pytest
import torch

from conftest import TINY_TRAIN, assert_one_line_error, run_cli

GARBAGE = b"\x00\xff\xfe garbage \x80\x81 not what edgenas wrote \xc3\x28"


def half(path):
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def garbage(path):
    path.write_bytes(GARBAGE)


def _run_copy(tiny_run, tmp_path):
    """A copy of the tiny supernet run directory: (tables, run directory)."""
    tables, run = tiny_run
    shutil.copytree(run, tmp_path / "run")
    return tables, tmp_path / "run"


def _search(run, tables, tmp_path, *extra):
    return run_cli("search", "--supernet", run, "--backend", "ort", "--tables", tables, "--budget-ms", 1000, "--threads", 1,
                   "--no-measure", "--out", tmp_path / "search", *extra)


def _train(run):
    """`edgenas train` with the tiny run's flags (and one more epoch): it resumes the run."""
    return run_cli(*TINY_TRAIN, "--epochs", 5, "--out", run)


def test_damaged_supernet_checkpoint(tiny_run, tmp_path):
    tables, run = _run_copy(tiny_run, tmp_path)
    ckpt = run / "checkpoint.pt"
    half(ckpt)  # what a copy cut short leaves: a zip archive without its directory
    line = assert_one_line_error(_search(run, tables, tmp_path), str(ckpt), "damaged checkpoint", "delete it")
    assert "train again" in line
    garbage(ckpt)
    assert_one_line_error(_train(run), str(ckpt), "damaged checkpoint", "delete it")
    torch.save({"epoch": 2}, ckpt)  # a readable file without the weights
    assert_one_line_error(_search(run, tables, tmp_path), str(ckpt), "no 'model'", "delete it")


def test_damaged_run_record(tiny_run, tmp_path):
    tables, run = _run_copy(tiny_run, tmp_path)
    record = run / "run.json"
    half(record)
    line = assert_one_line_error(_search(run, tables, tmp_path), str(record), "not valid JSON")
    assert "train again" in line
    garbage(record)  # not even UTF-8
    assert_one_line_error(_train(run), str(record), "not valid JSON", "train again")
    record.write_text("[]\n")
    assert_one_line_error(_search(run, tables, tmp_path), str(record), "not a JSON object", "train again")


def test_damaged_prune_state(prunable, tmp_path):
    bundle, ratio = prunable
    state = tmp_path / "pruned" / "prune-state.pt"
    state.parent.mkdir()
    garbage(state)
    prune = ("prune", bundle, "--out", tmp_path / "pruned", "--prune-ratio", ratio)
    assert_one_line_error(run_cli(*prune), str(state), "damaged checkpoint", "delete it to prune from the start")
    torch.save({"identity": {}}, state)  # readable, but not a pruning state
    assert_one_line_error(run_cli(*prune), str(state), "no 'steps'", "delete it")


def test_damaged_subnet_accuracy_cache_is_evaluated_again(exported, tiny_run, tmp_path):
    tables, run = _run_copy(tiny_run, tmp_path)
    cache = run / "subnet_accuracy.json"
    assert json.loads(cache.read_text())["samples"]  # the exported fixture's search filled it
    half(cache)
    proc = _search(run, tables, tmp_path, "--subnets", 10, "--generations", 2, "--population", 10, "--json")
    assert proc.returncode == 0, proc.stderr
    warnings = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgenas: warning:") and str(cache) in ln]
    assert len(warnings) == 1 and "evaluating the sub-networks again" in warnings[0], proc.stderr
    assert len(json.loads(cache.read_text())["samples"]) == 10  # filled again


def test_damaged_artifact_metadata(shipped, tmp_path):
    art = tmp_path / "art"
    shutil.copytree(shipped[0] / "art", art)
    meta = art / "metadata.json"
    half(meta)
    line = assert_one_line_error(run_cli("bench", art, "--repeat", 3), str(meta), "not valid JSON")
    assert "compile the model again" in line
    garbage(meta)
    (tmp_path / "x.png").write_bytes(b"")  # never read: the artifact is refused first
    assert_one_line_error(run_cli("run", art, "--input", tmp_path / "x.png"), str(meta), "not valid JSON", "compile the model again")


def test_damaged_model_description(shipped, tmp_path):
    root = shipped[0]
    for name in ("fp32", "int8"):
        shutil.copytree(root / name, tmp_path / name)
    info = tmp_path / "int8" / "model.json"
    half(info)
    line = assert_one_line_error(run_cli("compile", tmp_path / "int8", "--out", tmp_path / "art"), str(info), "not valid JSON")
    assert "write the bundle again" in line
    info = tmp_path / "fp32" / "model.json"
    garbage(info)
    assert_one_line_error(run_cli("quantize", tmp_path / "fp32", "--out", tmp_path / "q"), str(info), "not valid JSON",
                          "write the bundle again")


@pytest.fixture(scope="module")
def tuning_db(tmp_path_factory):
    """A small tuning database written by MetaSchedule's own JSONDatabase (one workload, one record), and a ledger."""
    import tvm
    from tvm import s_tir, te
    from tvm.s_tir import meta_schedule as ms

    from edgenas.compile.tune import LEDGER

    db_dir = tmp_path_factory.mktemp("tuning")
    a = te.placeholder((8,), name="A")
    mod = tvm.IRModule({"main": te.create_prim_func([a, te.compute((8,), lambda i: a[i] + 1, name="B")])})
    db = ms.database.JSONDatabase(work_dir=str(db_dir))
    workload = db.commit_workload(mod)
    db.commit_tuning_record(ms.database.TuningRecord(s_tir.Schedule(mod).trace, workload, [1e-3], tvm.target.Target("llvm"),
                                                     ms.arg_info.ArgInfo.from_prim_func(mod["main"])))
    (db_dir / LEDGER).write_text(json.dumps({"fused_add:0123456789ab": 8}, indent=1) + "\n")
    assert len(ms.database.JSONDatabase(work_dir=str(db_dir))) == 1
    return db_dir


@pytest.mark.parametrize("name, damage", [("database_workload.json", half), ("database_tuning_record.json", half),
                                          ("database_tuning_record.json", garbage), ("edgenas-tasks.json", half),
                                          ("edgenas-tasks.json", garbage)])
def test_damaged_tuning_database(shipped, tuning_db, tmp_path, name, damage):
    db = tmp_path / "db"
    shutil.copytree(tuning_db, db)
    damage(db / name)
    trials = 1 if name == "edgenas-tasks.json" else 0  # the ledger is read when tuning; the database by every compile
    proc = run_cli("compile", shipped[0] / "int8", "--out", tmp_path / "art", "--tuning-db", db, "--tune-trials", trials,
                   "--repeat", 3)
    assert_one_line_error(proc, str(db / name), f"delete the directory {db}", "re-tune")


def test_artifact_metadata_reads_typed_and_older_files_still_load(shipped, tmp_path):
    """metadata.json reads into typed records and writes back unchanged; fields added since the first artifacts
    (`compile.device_code`, `compile.pass_seconds`) may be absent, and a missing older field is refused in one line."""
    from edgenas.artifact.artifact import load_artifact

    art = tmp_path / "art"
    shutil.copytree(shipped[0] / "art", art)
    meta = json.loads((art / "metadata.json").read_text())
    loaded = load_artifact(art).meta
    assert loaded.to_dict() == meta and loaded.input.shape == tuple(meta["input"]["shape"])
    assert loaded.compile.quantized and loaded.target.runs_here() and loaded.input.normalization.mean
    old = {**meta, "compile": {k: v for k, v in meta["compile"].items() if k not in ("device_code", "pass_seconds")}}
    (art / "metadata.json").write_text(json.dumps(old))
    assert load_artifact(art).meta.compile.pass_seconds == {}
    (art / "metadata.json").write_text(json.dumps({k: v for k, v in meta.items() if k != "compile"}))
    assert_one_line_error(run_cli("bench", art, "--repeat", 3), str(art / "metadata.json"), "compile")
    (art / "metadata.json").write_text(json.dumps({**meta, "input": {**meta["input"], "shape": "big"}}))
    assert_one_line_error(run_cli("bench", art, "--repeat", 3), str(art / "metadata.json"), "damaged metadata")


def test_model_description_reads_typed_and_refuses_a_malformed_part(shipped, tmp_path):
    from edgenas.bundle import load_bundle
    from edgenas.data import DataRecord
    from edgenas.errors import BadInput

    bundle = tmp_path / "int8"
    shutil.copytree(shipped[0] / "int8", bundle)
    raw = json.loads((bundle / "model.json").read_text())
    _, info = load_bundle(bundle)
    assert info.to_dict() == raw and isinstance(info.data, DataRecord) and info.arch.encoding == raw["arch"]["encoding"]
    assert info.arch.arch.resolution == info.input_shape[-1] and info.data.val == 1000
    assert [h.stage for h in info.history] == ["export", "quantize"] and info.history[-1].report["method"]
    for part, damaged, needle in (("arch", {k: v for k, v in raw["arch"].items() if k != "encoding"}, "encoding"),
                                  ("data", {k: v for k, v in raw["data"].items() if k != "fingerprint"}, "fingerprint"),
                                  ("history", [{k: v for k, v in h.items() if k != "stage"} for h in raw["history"]], "stage")):
        (bundle / "model.json").write_text(json.dumps({**raw, part: damaged}))
        with pytest.raises(BadInput, match=str(bundle / "model.json")) as e:
            load_bundle(bundle)
        assert needle in str(e.value) and "\n" not in str(e.value)
