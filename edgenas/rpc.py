"""Sessions on a remote board through TVM's own RPC tracker and server, failing fast when unreachable."""

from __future__ import annotations

import contextlib
import socket
from dataclasses import dataclass

from edgenas.errors import BadInput, EdgenasError

#: How long a tracker may take to answer before we give up (TVM's own client would retry for minutes).
TRACKER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RPCSettings:
    host: str
    port: int
    key: str
    timeout_s: float = TRACKER_TIMEOUT_S

    @property
    def tracker(self) -> str:
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, tracker: str | None, key: str | None, timeout_s: float = TRACKER_TIMEOUT_S) -> "RPCSettings | None":
        if tracker is None:
            if key is not None:
                raise BadInput("--rpc-key needs --rpc-tracker HOST:PORT")
            return None
        host, sep, port = tracker.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadInput(f"--rpc-tracker '{tracker}' is not HOST:PORT")
        if not key:
            raise BadInput("--rpc-tracker needs --rpc-key KEY (the key the board's rpc_server registered with)")
        return cls(host, int(port), key, timeout_s)


@contextlib.contextmanager
def _socket_timeout(seconds: float):
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(old)


def open_session(rpc: RPCSettings):
    """A remote session for `rpc.key`, or a one-line error within `rpc.timeout_s`."""
    from tvm import rpc as tvm_rpc

    try:
        socket.create_connection((rpc.host, rpc.port), timeout=rpc.timeout_s).close()
    except OSError as e:
        raise EdgenasError(
            f"cannot reach the RPC tracker at {rpc.tracker} within {rpc.timeout_s:g} s ({e.strerror or e})"
        ) from None
    try:
        with _socket_timeout(rpc.timeout_s):
            tracker = tvm_rpc.connect_tracker(rpc.host, rpc.port)
            summary = tracker.summary()
    except (OSError, RuntimeError) as e:
        raise EdgenasError(f"the RPC tracker at {rpc.tracker} did not answer within {rpc.timeout_s:g} s ({e})") from None
    keys = sorted({info["key"].split(":", 1)[-1] for info in summary.get("server_info", [])})
    if rpc.key not in keys:
        raise EdgenasError(
            f"no RPC server with key '{rpc.key}' is registered at {rpc.tracker} "
            f"(registered keys: {', '.join(keys) or 'none'}); start one on the board with "
            f"`python -m tvm.exec.rpc_server --tracker {rpc.tracker} --key {rpc.key}`"
        )
    try:
        return tracker.request(rpc.key, session_timeout=0, max_retry=3)
    except (OSError, RuntimeError) as e:
        raise EdgenasError(f"the RPC server '{rpc.key}' at {rpc.tracker} refused a session ({e})") from None
