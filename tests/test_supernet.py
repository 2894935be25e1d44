"""The supernet trained for real on a small slice of the bundled digits."""

import json
import os
import random
import subprocess
import sys

import pytest
import torch

from conftest import TINY_SPACE, assert_one_line_error, run_cli
from edgenas.space import get_space
from edgenas.supernet.dynamic import Supernet
from edgenas.supernet.train import load_supernet

SPACE = get_space("digits")
# a slice of the bundled digits that learns well past chance in a few seconds an epoch
QUICK = ("--limit", 640, "--lr", 0.005)


def _randomise(net):
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return net


@pytest.mark.parametrize("name", ["digits", TINY_SPACE])
def test_extracted_subnet_matches_supernet(name):
    space = get_space(name)
    supernet = _randomise(Supernet(space)).eval()
    rng = random.Random(0)
    for arch in [space.largest(), space.smallest()] + [space.sample(rng) for _ in range(15)]:
        supernet.set_active(arch)
        x = torch.randn(3, space.in_channels, arch.resolution, arch.resolution)
        with torch.no_grad():
            torch.testing.assert_close(supernet.extract(arch).eval()(x), supernet(x), atol=1e-5, rtol=1e-4)
        # the extracted network is built from exactly the blocks the latency table measures
        assert [type(m).__name__ for m in supernet.extract(arch)] == ["Stem"] + ["MBConv"] * sum(arch.depths) + ["Head"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "digits"
    proc = run_cli("train", *QUICK, "--epochs", 3, "--out", out, "--json", check=0)
    return out, json.loads(proc.stdout)


def test_training_learns_and_records(trained_run):
    out, result = trained_run
    run = json.loads((out / "run.json").read_text())
    assert run["epochs_done"] == 3 and len(run["history"]) == 3
    assert run["data"]["normalization"]["mean"][0] > 0 and run["data"]["train"] == 4000
    # 640 images, batches of 64: every step counted against the thread-pool size it ran on
    assert all(sum(h["threads"].values()) == 10 for h in run["history"]), run["history"]
    last = run["history"][-1]
    assert last["val_acc_largest"] > 0.5, last  # 10 classes: chance is 0.1
    assert last["val_acc_largest"] > run["history"][0]["val_acc_largest"]
    supernet, _ = load_supernet(out)
    assert isinstance(supernet, Supernet)


def test_training_resumes_after_last_epoch(trained_run, tmp_path):
    out, _ = trained_run
    resumed = json.loads(run_cli("train", *QUICK, "--epochs", 4, "--out", out, "--json", check=0).stdout)
    assert resumed["resumed_from_epoch"] == 3 and [h["epoch"] for h in resumed["history"]] == [1, 2, 3, 4]
    # nothing left to do: no epoch is trained again
    again = json.loads(run_cli("train", *QUICK, "--epochs", 4, "--out", out, "--json", check=0).stdout)
    assert again["resumed_from_epoch"] == 4 and again["history"] == resumed["history"]


def test_run_for_other_data_is_refused(trained_run):
    out, _ = trained_run
    assert_one_line_error(run_cli("train", *QUICK, "--seed", 5, "--epochs", 4, "--out", out), str(out), "another")


def test_torchrun_ddp_two_processes(tmp_path):
    out = tmp_path / "ddp"
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "edgenas", "train", "--limit", "256", "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["epochs_done"] == 1


def test_epochs_auto_trains_on_in_rounds_while_the_largest_network_is_near_chance(tmp_path, capsys):
    """`--epochs auto`: after its epochs, a supernet whose largest network is near chance trains another round (half
    as long, from half the learning rate), and stops when a round no longer raises it, or when the next round would pass
    its minutes; one that can rank stops at once. Every round is in the run record, so a resume rebuilds the schedule."""
    from edgenas.supernet.train import train
    from edgenas.supernet.train_config import TrainConfig, near_chance

    space = get_space(TINY_SPACE)
    stuck = TrainConfig(epochs=2, lr=1e-9, limit=64, auto_minutes=10)  # cannot learn: it stays at chance
    r = train(None, space, tmp_path / "stuck", stuck)
    run = json.loads((tmp_path / "stuck" / "run.json").read_text())
    assert r.epochs == 3 == len(r.history) == run["epochs_done"] and run["more_rounds"] == [1]
    err = capsys.readouterr().err
    assert "near chance for 10 classes: training 1 more epochs" in err and "after another round: stopping at 3 epochs" in err
    # resumed: the rounds come back from the record, and nothing more is trained
    again = train(None, space, tmp_path / "stuck", stuck)
    assert again.epochs == 3 and again.resumed_from_epoch == 3 and len(again.history) == 3

    bounded = train(None, space, tmp_path / "bounded", TrainConfig(epochs=2, lr=1e-9, limit=64, auto_minutes=1e-6))
    assert bounded.epochs == 2 and "would pass" in capsys.readouterr().err
    learns = train(None, space, tmp_path / "learns", TrainConfig(epochs=3, lr=0.02, limit=640, auto_minutes=10))
    assert not near_chance(learns.history[-1]["val_acc_largest"], 10) and learns.epochs == 3  # it can rank: no round added
    assert TrainConfig(epochs="auto") == TrainConfig(auto_minutes=TrainConfig(epochs="auto").auto_minutes)


def test_epochs_flag_takes_a_number_or_auto():
    from edgenas.cli import cli

    assert cli.commands["train"].make_context("train", ["--out", "o", "--epochs", "auto"]).params["epochs"] == "auto"
    assert_one_line_error(run_cli("train", "--space", TINY_SPACE, "--out", "o", "--epochs", "often"), "--epochs", "often")


def test_a_restarting_cosine_runs_each_round_down_from_its_own_peak():
    """The first round warms up to the full rate and anneals to zero; a round added at its end starts again from half
    the rate (not from zero, where the last one ended) and anneals to zero over its own steps."""
    from edgenas.learning import add_round, restarting_cosine

    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    rounds, lrs = [4], []
    sched = restarting_cosine(opt, rounds, warmup=2)
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    add_round(sched, rounds, 2)
    for _ in range(2):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert [round(v, 3) for v in lrs] == [0.5, 0.854, 0.5, 0.146, 0.5, 0.25] and rounds == [4, 2]
