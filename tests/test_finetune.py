"""The build's fine-tuning of the searched network (compress/finetune.py), on the tiny search's exported winner: it writes
a bundle that says what it did, an interrupted run resumes to the very weights of an uninterrupted one, and a finished
one is read back, not trained again."""

import pytest
import torch

from edgenas.compress.finetune import STATE, finetune
from edgenas.compress.prune_config import DistillConfig
from edgenas.compress.prune_input import load_prune_input
from edgenas.errors import BadInput, Interrupted


@pytest.fixture(scope="module")
def inp(exported, tmp_path_factory):
    root, _ = exported
    return load_prune_input(root / "fp32", tmp_path_factory.mktemp("unused"))


def test_finetune_resumes_where_it_stopped_and_reads_a_finished_run_back(inp, tmp_path, monkeypatch):
    import edgenas.compress.finetune as module

    whole = finetune(inp, tmp_path / "whole", DistillConfig(epochs=2))
    record = whole.info.history[-1]
    assert record.stage == "finetune" and record.report["epochs"] == 2 and (tmp_path / "whole" / "model.onnx").exists()
    trained, exported = whole.net.state_dict(), inp.searched.net.state_dict()
    assert trained.keys() == exported.keys() and not all(torch.equal(trained[k], exported[k]) for k in exported)

    save = module.save_checkpoint

    def save_then_stop(path, state):  # Ctrl-C right after the first epoch's checkpoint
        save(path, state)
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_checkpoint", save_then_stop)
    with pytest.raises(Interrupted, match="1 fine-tuning epoch"):
        finetune(inp, tmp_path / "cut", DistillConfig(epochs=2))
    monkeypatch.setattr(module, "save_checkpoint", save)
    resumed = finetune(inp, tmp_path / "cut", DistillConfig(epochs=2))
    ours, theirs = resumed.net.state_dict(), whole.net.state_dict()
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert resumed.onnx_model == whole.onnx_model and resumed.info.accuracy == whole.info.accuracy

    def no_training(*_):
        raise AssertionError("a finished fine-tuning was trained again")

    monkeypatch.setattr(module.Distiller, "fit", staticmethod(no_training))
    again = finetune(inp, tmp_path / "whole", DistillConfig(epochs=2))
    assert again.onnx_model == whole.onnx_model
    with pytest.raises(BadInput, match=STATE):  # other settings: refused, not mixed into the saved run
        finetune(inp, tmp_path / "whole", DistillConfig(epochs=3))
