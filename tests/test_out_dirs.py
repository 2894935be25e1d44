"""Every verb that writes refuses an output directory it cannot write, at once, in one line, with exit code 2."""

import os
from pathlib import Path

import pytest

from conftest import TINY_SPACE, assert_one_line_error, run_cli


def _verbs(tmp_path):
    """Each writing verb with bogus inputs: the output check must come before anything reads them."""
    missing = tmp_path / "missing"
    return {
        "profile": ("profile", "--space", TINY_SPACE, "--backend", "ort", "--tables"),
        "validate": ("validate", "--space", TINY_SPACE, "--backend", "ort", "--tables"),
        "train": ("train", "--space", TINY_SPACE, "--data", missing, "--epochs", 1, "--out"),
        "search": ("search", "--supernet", missing, "--backend", "ort", "--budget-ms", 1, "--out"),
        "export": ("export", missing, "--out"),
        "prune": ("prune", missing, "--prune-ratio", 0.8, "--out"),
        "quantize": ("quantize", missing, "--out"),
        "compile": ("compile", missing, "--out"),
    }


def _under_a_file(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    return tmp_path / "file" / "out", "file, not a directory"


def _a_file(tmp_path):
    (tmp_path / "file").write_text("not a directory\n")
    return tmp_path / "file", "it is a file"


def _read_only(tmp_path):
    """A directory its user may not write: 0o555, or for root (who writes there anyway, as CI runs) sysfs, where
    nobody may make a directory; the error names the directory that refuses."""
    if os.geteuid() != 0:
        (tmp_path / "ro").mkdir(mode=0o555)
        return tmp_path / "ro" / "out", "Permission denied"
    out = Path("/sys/edgenas-test-out")
    try:
        out.mkdir()
    except OSError:
        return out / "out", "(/sys: "
    out.rmdir()
    pytest.skip("this machine lets root make directories in /sys")


@pytest.mark.parametrize("where", [_under_a_file, _a_file, _read_only], ids=["under-a-file", "a-file", "read-only"])
@pytest.mark.parametrize("verb", ["profile", "validate", "train", "search", "export", "prune", "quantize", "compile"])
def test_unwritable_output_fails_first(tmp_path, verb, where):
    out, reason = where(tmp_path)
    try:
        proc = run_cli(*_verbs(tmp_path)[verb], out, timeout=120)
    finally:
        if (tmp_path / "ro").exists():
            (tmp_path / "ro").chmod(0o755)  # so that pytest can clean up
    flag = "--tables" if verb in ("profile", "validate") else "--out"
    assert_one_line_error(proc, f"{flag} {out}: cannot write there", reason, code=2)
    assert not (tmp_path / "missing").exists()
