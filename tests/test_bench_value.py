"""tools/bench_value.py on the tiny space: every baseline goes through the stages that ship edgenas's pick."""

import json
import subprocess
import sys

from pathlib import Path

from conftest import TINY_SPACE

REPO = Path(__file__).resolve().parent.parent


def test_every_arm_is_built_trained_and_measured_by_the_build_s_own_stages(tmp_path):
    work = tmp_path / "work"
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools" / "bench_value.py"), "--space", TINY_SPACE, "--data", "digits",
         "--limit", "640", "--epochs", "1", "--budget-ms", "0.6", "--subnets", "20", "--backend", "ort",
         "--population", "10", "--generations", "5", "--finetune-epochs", "1", "--prune-ratio", "1",
         "--calibration", "50", "--repeat", "5", "--widths", "0.1,0.25", "--resolutions", "12,16",
         "--work", str(work), "--tables", str(tmp_path / "tables")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout)
    row = out["budgets"][0]
    for arm in ("evolution", "random", "uniform", "mobilenetv2"):
        r = row[arm]
        assert 0 <= r["artifact_accuracy"] <= 1 and r["measured_ms"] > 0 and r["precision"] == "int8", (arm, r)
        assert (work / "0.6ms" / arm / "artifact" / "model.onnx").exists()  # an ONNX Runtime artifact (--backend ort)
    # the baseline was scaled to the budget by measurement, and trained for the supernet's epochs and the fine-tuning's
    assert row["mobilenetv2"]["scaled"]["measured_ms"] <= 0.6 and out["mobilenetv2_epochs"] == 2
    meta = json.loads((work / "0.6ms" / "mobilenetv2" / "artifact" / "metadata.json").read_text())
    assert meta["model"]["history"][0]["baseline"].startswith("MobileNetV2") and meta["accuracy"]["artifact"] is not None
    assert row["edgenas_vs_best_other_points"] is not None and (work / "value.png").stat().st_size > 0
    assert out["accuracy_predictor_held_out"]["n"] == 4
    lead = row["evolution_vs_random_points"]
    assert lead["artifact_accuracy"] == round((row["evolution"]["artifact_accuracy"] - row["random"]["artifact_accuracy"]) * 100, 2)
    assert 0 < row["evolution"]["supernet_accuracy"] <= 1 and lead["supernet_accuracy"] is not None


def test_an_unknown_arm_is_one_line_naming_the_arms(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "tools" / "bench_value.py"), "--arms", "evolution,grid",
                           "--work", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines() == [
        "--arms: unknown arm 'grid' (choose from evolution, random, uniform, mobilenetv2)"]
