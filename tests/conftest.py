import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

DATA = Path(__file__).parent / "data"
TINY_SPACE = str(DATA / "tiny_space.json")
# Few samples keep the suite fast; the benchmarks in tools/ use the defaults.
FAST = ["--repeat", "5", "--threads", "1"]


def table_file(tables, backend="ort", precision="int8", space=TINY_SPACE, rpc=None) -> Path:
    """Where this machine's table (or the board's, for `rpc`) of the tiny space lives under `tables`."""
    from edgenas.space import get_space
    from edgenas.tables.key import TableKey
    from edgenas.targets import get_target

    return TableKey(get_target("host"), backend, precision, get_space(space), 1, rpc).path(tables)


def shipped_table(backend="ort") -> Path:
    """A committed table of the digits space for `host`, from whichever machine measured it: data for tests of
    algorithms, not a prediction for this machine."""
    from edgenas.paths import ROOT

    found = sorted((ROOT / "latency_tables" / "host").glob(f"*/{backend}-*.json"))
    found = [p for p in found if p.suffixes == [".json"]]
    assert found, f"no shipped {backend} table of host"
    return found[0]


def run_cli(*args, check=None, timeout=600, env=None):
    """Run `edgenas` in a child process, as a user would: exit codes and stderr are real."""
    proc = subprocess.run(
        [sys.executable, "-m", "edgenas", *map(str, args)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})},
    )
    if check is not None:
        assert proc.returncode == check, f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def start_cli(*args, **popen_kwargs) -> subprocess.Popen:
    """`edgenas` in the background, as a user's terminal would start it: with Ctrl-C (SIGINT) delivered. A shell
    without job control starts background jobs with SIGINT ignored, and Python then never raises KeyboardInterrupt."""
    return subprocess.Popen([sys.executable, "-m", "edgenas", *map(str, args)], text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **popen_kwargs)


def assert_one_line_error(proc, *needles, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgenas: ")]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def tables(tmp_path):
    return tmp_path / "tables"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real ORT table of the tiny space (profiled and validated) and a supernet trained on a slice of the digits."""
    root = tmp_path_factory.mktemp("tiny")
    tables, run = root / "tables", root / "run"
    common = ("--space", TINY_SPACE, "--backend", "ort", "--tables", tables, *FAST)
    run_cli("profile", *common, check=0)
    run_cli("validate", *common, "--samples", 12, check=0)
    run_cli("train", "--space", TINY_SPACE, "--limit", 640, "--lr", 0.005, "--epochs", 2, "--out", run, check=0)
    return tables, run


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory):
    """A tiny search's winner (ROOT/search) exported as an fp32 bundle (ROOT/fp32): (root, export JSON)."""
    from edgenas.search.latency_predictor import TableLatencyPredictor
    from edgenas.space import get_space
    from edgenas.tables.latency_table import LatencyTable

    tables, run = tiny_run
    root = tmp_path_factory.mktemp("deploy")
    fastest = TableLatencyPredictor(LatencyTable.load(table_file(tables)), get_space(TINY_SPACE)).fastest()[0]
    run_cli("search", "--supernet", run, "--backend", "ort", "--tables", tables, "--budget-ms", fastest * 3, "--threads", 1,
            "--generations", 5, "--population", 10, "--subnets", 10, "--no-measure", "--out", root / "search", check=0)
    return root, json.loads(run_cli("export", root / "search", "--out", root / "fp32", "--json", check=0).stdout)


@pytest.fixture(scope="session")
def shipped(exported):
    """The tiny search's winner exported, quantized and compiled for host: (root, export, quantize, compile JSON)."""
    root, exported = exported
    quantized = json.loads(run_cli("quantize", root / "fp32", "--out", root / "int8", "--calibration", 100, "--json", check=0).stdout)
    compiled = json.loads(run_cli("compile", root / "int8", "--out", root / "art", "--repeat", 5, "--json", check=0).stdout)
    return root, exported, quantized, compiled


def _wait(ready, what: str, seconds: float = 60) -> None:
    deadline = time.time() + seconds
    while not ready():
        assert time.time() < deadline, f"{what} within {seconds:g} s"
        time.sleep(0.2)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


def start_tracker() -> tuple[subprocess.Popen, int]:
    """A real TVM RPC tracker on loopback, listening: (process, port)."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "tvm.exec.rpc_tracker", "--host", "127.0.0.1", "--port", str(port),
                             "--port-end", str(port + 1)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        _wait(lambda: _listening(port), "the tracker did not start")
    except BaseException:
        stop(proc)
        raise
    return proc, port


def registered_keys(tracker_port: int) -> set[str]:
    from tvm import rpc

    return {s["key"].split(":", 1)[-1] for s in rpc.connect_tracker("127.0.0.1", tracker_port).summary()["server_info"]}


def start_rpc_server(tracker_port: int, key: str, wait: bool = True) -> subprocess.Popen:
    """A real TVM RPC server (a board) registered at the tracker under `key`; in its own process group, so that
    `stop` also ends the worker process it forks for each session, as a board that drops would."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tvm.exec.rpc_server", "--host", "127.0.0.1", "--port", str(port), "--port-end",
         str(port + 1), "--tracker", f"127.0.0.1:{tracker_port}", "--key", key],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    if wait:
        try:
            _wait(lambda: key in registered_keys(tracker_port), "the RPC server did not register")
        except BaseException:
            stop(proc)
            raise
    return proc


def stop(proc: subprocess.Popen) -> None:
    """Kill a process started by these helpers and everything it forked."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture(scope="session")
def rpc_tracker():
    """A real TVM RPC tracker and server on loopback; yields (tracker "host:port", key)."""
    key = "loopback-test"
    tracker, port = start_tracker()
    try:
        server = start_rpc_server(port, key)
        try:
            yield f"127.0.0.1:{port}", key
        finally:
            stop(server)
    finally:
        stop(tracker)
