"""Atomic writes and locked files: an interrupted job never leaves a half-written file."""

import contextlib
import datetime as dt
import fcntl
import json
import os
import tempfile
from dataclasses import MISSING, fields
from pathlib import Path

from edgenas.errors import BadInput, EdgenasError


def now() -> str:
    """The UTC timestamp every written file records, to the second."""
    return dt.datetime.now(dt.timezone.utc).replace(microsecond=0).isoformat()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def ensure_writable_dir(path: Path, flag: str) -> Path:
    """Fail at once, with one line naming `flag` and `path`, when files cannot be written into the directory `path`.

    Called by every verb that writes, before its long work. It creates nothing: it writes and removes a probe file in
    `path`, or in its deepest existing ancestor when `path` does not exist yet (the verb creates it later)."""
    path = Path(path)
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        reason = "it is a file" if existing == path else f"{existing} is a file, not a directory"
        raise BadInput(f"{flag} {path}: cannot write there ({reason})")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgenas-probe-", dir=existing)
    except OSError as e:
        where = "" if existing == path else f"{existing}: "
        raise BadInput(f"{flag} {path}: cannot write there ({where}{e.strerror})") from None
    os.close(fd)
    os.unlink(probe)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    except OSError as e:
        raise BadInput(f"{path}: cannot write ({e.strerror})") from None
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600 files; give the usual permissions
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=1, sort_keys=False) + "\n").encode())


def read_json(path: Path, remedy: str | None = None):
    """The JSON in `path`. For a file edgenas wrote itself, `remedy` says what to do when it is damaged (not UTF-8,
    not JSON, or not a JSON object, as every such file is); the one-line error then ends with it."""
    path = Path(path)
    then = f"; {remedy}" if remedy else ""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput(f"{path}: no such file") from None
    except json.JSONDecodeError as e:
        raise BadInput(f"{path}: not valid JSON (line {e.lineno}: {e.msg}){then}") from None
    except UnicodeDecodeError as e:
        raise BadInput(f"{path}: not valid JSON (not UTF-8 text: byte {e.start}){then}") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read ({e.strerror})") from None
    if remedy is not None and not isinstance(data, dict):
        raise BadInput(f"{path}: damaged (its top level is not a JSON object){then}")
    return data


def check_schema(data, path, schema: str, version: int, what: str, remedy: str | None = None) -> dict:
    """Refuse, in one line naming `path`, a file that is not `what` (its 'schema' field) or is another version of it:
    fields may mean something else across versions, so no version is read as another."""
    then = f"; {remedy}" if remedy else ""
    got = data.get("schema") if isinstance(data, dict) else None
    if got != schema:
        raise BadInput(f"{path}: not an edgenas {what} (schema '{got}', not '{schema}'){then}")
    if data.get("schema_version") != version:
        raise BadInput(f"{path}: {what} schema version {data.get('schema_version')} is not the supported {version}{then}")
    return data


def dataclass_fields(cls, d: dict, where: str, what: str) -> dict:
    """The keyword arguments of dataclass `cls` from a record; a field added later has a default, so a record written
    before it still reads. A record without a field that has none is refused in one line naming `where`."""
    missing = [f.name for f in fields(cls) if f.name not in d and f.default is MISSING and f.default_factory is MISSING]
    if missing:
        raise BadInput(f"{where}: {what} lacks {', '.join(missing)}")
    return {f.name: d[f.name] for f in fields(cls) if f.name in d}


@contextlib.contextmanager
def exclusive_lock(path: Path):
    """Hold `<path>.lock` so two jobs writing one file fail clearly instead of corrupting it."""
    lock_path = Path(str(path) + ".lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        f = open(lock_path, "w")
    except OSError as e:
        raise BadInput(f"{path}: cannot write ({e.strerror})") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EdgenasError(f"{path}: another edgenas process is writing it (lock {lock_path})") from None
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
