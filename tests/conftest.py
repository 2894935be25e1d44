import contextlib
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

if "PYTEST_XDIST_WORKER" in os.environ:
    # Two workers share the two cores: each, and every edgenas it starts, computes on one thread. Left to OpenMP's
    # default (a thread per core each), training ran up to 20 times slower with the other worker busy.
    for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_var, "1")

DATA = Path(__file__).parent / "data"
TINY_SPACE = str(DATA / "tiny_space.json")
# Few samples keep the suite fast; the benchmarks in tools/ use the defaults.
FAST = ["--repeat", "5", "--threads", "1"]
#: the tiny run's training flags (less --epochs and --out): a test that resumes it must give the same config
TINY_TRAIN = ("train", "--space", TINY_SPACE, "--limit", 640, "--lr", 0.02)


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


def said(stderr: str) -> list[str]:
    """edgenas's own lines on stderr, less the warnings that other processes were busy while it timed something:
    the suite runs on both cores, so those come and go with what the other worker runs."""
    return [ln for ln in stderr.splitlines() if ln.startswith("edgenas: ") and "other processes used" not in ln]


def assert_one_line_error(proc, *needles, code=2):
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = said(proc.stderr)
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_target(cpu: str, tmp_path, run: bool = True):
    """`host`, or this machine's target compiled for an x86 CPU class: LLVM's `haswell` (`avx2`: AVX2, no AVX-512 or
    VNNI), `skylake-avx512` (AVX-512BW, no VNNI) or `alderlake` (256-bit AVX-VNNI). With `run`, skipped unless this
    machine can run that class's code: the integer kernels of other classes, checked here."""
    from edgenas.paths import ROOT
    from edgenas.targets import get_target

    if cpu == "host":
        return get_target("host")
    llvm_cpu = "haswell" if cpu == "avx2" else cpu
    path = tmp_path / f"{cpu}.toml"
    path.write_text((ROOT / "targets" / "host.toml").read_text().replace('"native"', f'"{llvm_cpu}"')
                    .replace('"host"', f'"{cpu}"', 1))
    target = get_target(str(path))
    if run and not target.runs_here:
        pytest.skip(f"this CPU cannot run {llvm_cpu} code")
    return target


def output_step(model) -> float:
    """An int8 ONNX model's output quantization step: the scale of the DequantizeLinear that makes the graph output."""
    import onnx

    node = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == model.graph.output[0].name)
    init = {i.name: i for i in model.graph.initializer}
    return float(onnx.numpy_helper.to_array(init[node.input[1]]))


def assert_matches_the_exact_reference(ours, ref, step: float) -> None:
    """int8 outputs against the exact reference (the QDQ model in float), `step` the output's quantization step.
    Each layer may round a value that lies on a half to either side (float sums there, int32 and one multiply here),
    and a flip in a middle layer can move an output by one more step: so almost every output within one step, none
    beyond two. A saturating kernel misses by dozens of steps (vpmaddubsw on full-range weights: 34 here)."""
    import numpy as np

    d = np.abs(ours - ref) / step
    assert d.max() <= 2.001 and (d <= 1.001).mean() >= 0.99, (float(d.max()), float((d <= 1.001).mean()))
    assert (ours.argmax(1) == ref.argmax(1)).mean() >= 0.98


@pytest.fixture
def tables(tmp_path):
    return tmp_path / "tables"


def once(tmp_path_factory, name: str, make):
    """`make(root)` run once per test session however many pytest-xdist workers ask (`-n 2`): the first worker makes it
    in a directory every worker shares, the others wait on its lock and read the result it saved (JSON). Without
    xdist, a plain session fixture."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return make(tmp_path_factory.mktemp(name))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / name
    saved = shared / "fixture-result.json"
    with FileLock(f"{shared}.lock"):
        if not saved.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            saved.write_text(json.dumps(make(shared), default=str))
    return json.loads(saved.read_text())


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A real ORT table of the tiny space (profiled and validated) and a supernet trained on a slice of the digits."""
    def make(root):
        tables, run = root / "tables", root / "run"
        common = ("--space", TINY_SPACE, "--backend", "ort", "--tables", tables, *FAST)
        run_cli("profile", *common, check=0)
        run_cli("validate", *common, "--samples", 12, check=0)
        # enough to lift every sub-network well off chance (a few seconds): the exported winner must have learnt
        # something for the int8 gate's tests to see it lose anything
        run_cli(*TINY_TRAIN, "--epochs", 4, "--out", run, check=0)
        return [tables, run]

    return tuple(Path(p) for p in once(tmp_path_factory, "tiny", make))


@pytest.fixture(scope="session")
def tvm_fp32_tables(tmp_path_factory):
    """The tiny space profiled with TVM in fp32 against a tuning database that does not exist: a tables directory to
    copy (never to change) for the tests of what comes after profiling. Any absent database matches it."""
    def make(root):
        run_cli("profile", "--space", TINY_SPACE, "--backend", "tvm", "--precision", "fp32", "--tables", root / "tables",
                "--tuning-db", root / "no-db", *FAST, check=0)
        return str(root / "tables")

    return Path(once(tmp_path_factory, "tvm-fp32", make))


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory):
    """A tiny search's winner (ROOT/search) exported as an fp32 bundle (ROOT/fp32): (root, export JSON)."""
    def make(root):
        from edgenas.space import get_space
        from edgenas.tables.latency_model import LatencyModel
        from edgenas.tables.latency_table import LatencyTable

        tables, run = tiny_run
        # every network fits, so the search takes the one it predicts most accurate: the tests of export, quantization
        # and pruning need a network that learnt something. No guard band: validated on a busy machine, the table's
        # can exceed 100% and shrink the search to the fastest network alone
        space = get_space(TINY_SPACE)
        largest = LatencyModel(LatencyTable.load(table_file(tables)), space)(space.largest())
        run_cli("search", "--supernet", run, "--backend", "ort", "--tables", tables, "--budget-ms", largest * 1.2, "--threads", 1, "--generations", 5,
                "--population", 10, "--subnets", 10, "--margin-pct", 0, "--no-measure", "--out", root / "search", check=0)
        export = json.loads(run_cli("export", root / "search", "--out", root / "fp32", "--json", check=0).stdout)
        assert export["accuracy"]["fp32"] > 0.2, f"the tiny search's winner sits near chance: {export['accuracy']}"
        return [root, export]

    root, export = once(tmp_path_factory, "deploy", make)
    return Path(root), export


@pytest.fixture(scope="session")
def shipped(exported, tmp_path_factory):
    """The tiny search's winner exported, quantized and compiled for host: (root, export, quantize, compile JSON)."""
    def make(_):
        root = exported[0]
        quantized = json.loads(run_cli("quantize", root / "fp32", "--out", root / "int8", "--calibration", 100, "--json",
                                       check=0).stdout)
        compiled = json.loads(run_cli("compile", root / "int8", "--out", root / "art", "--repeat", 5, "--json", check=0).stdout)
        return [quantized, compiled]

    quantized, compiled = once(tmp_path_factory, "shipped", make)
    return exported[0], exported[1], quantized, compiled


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


def reachable_prune_ratio(arch: dict, table: Path) -> float | None:
    """A pruning ratio halfway to the fastest network pruning can reach on `table` from the network `arch`: reachable on
    any CPU, where a constant ratio held only for the timings of the machine it was chosen on (the tiny space's units
    keep at least `PruneConfig.multiple` mid channels, so on some tables pruning can save only a few percent); None when
    it can save nothing."""
    from edgenas.compress.surgery import mid_channels
    from edgenas.tables.pruned_latency import PrunedLatency, fastest_channels
    from edgenas.compress.prune_config import PruneConfig
    from edgenas.space import Arch, get_space
    from edgenas.space.blocks import Network
    from edgenas.tables.latency_table import LatencyTable

    space = get_space(TINY_SPACE)
    net = Network(space, Arch.from_dict(arch))
    latency = PrunedLatency(LatencyTable.load(table), space, net.layer_specs)
    start = mid_channels(net)
    floor = latency(fastest_channels(latency, start, PruneConfig.multiple)) / latency(start)
    # a small searched network may have little to give (a third of a 24-channel unit): any saving will do
    ratio = math.floor((1 + floor) / 2 * 1e4) / 1e4
    return ratio if floor < ratio < 1 else None


#: a table of the tiny space, ORT int8 at 1 thread, measured once (a 2-core znver4 VM) and committed: on this machine's
#: own table the call overhead of blocks this small can drown their channels, and pruning then has nothing to save; on
#: this one it has, whatever CPU runs the tests. `prunable` hands it over as this machine's: pruning predicts from it
#: and measures here
FIXED_TINY_TABLE = DATA / "tiny-ort-int8-table.json"


@pytest.fixture(scope="session")
def prunable(exported, tmp_path_factory):
    """The exported bundle with its latency recorded against `FIXED_TINY_TABLE`, and a pruning ratio halfway to the
    fastest network pruning reaches on it: (bundle, ratio)."""
    def make(root):
        from edgenas.space import Arch, get_space
        from edgenas.tables.device import device_key
        from edgenas.tables.latency_model import LatencyModel
        from edgenas.tables.latency_table import LatencyTable

        src, export = exported
        table = json.loads(FIXED_TINY_TABLE.read_text())
        table["meta"]["identity"]["device"] = device_key()
        (root / "table.json").write_text(json.dumps(table))
        bundle = root / "fp32"
        shutil.copytree(src / "fp32", bundle)
        meta = json.loads((bundle / "model.json").read_text())
        predicted = LatencyModel(LatencyTable.load(root / "table.json"), get_space(TINY_SPACE))(Arch.from_dict(export["arch"]))
        meta["latency"].update(table=str(root / "table.json"), predicted_ms=predicted)
        (bundle / "model.json").write_text(json.dumps(meta))
        ratio = reachable_prune_ratio(export["arch"], root / "table.json")
        assert ratio is not None, f"{FIXED_TINY_TABLE} gives pruning nothing to save on {export['arch']}"
        return [str(bundle), ratio]

    bundle, ratio = once(tmp_path_factory, "prunable", make)
    return Path(bundle), ratio

