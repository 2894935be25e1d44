"""Errors that the CLI turns into one line and an exit code, never a traceback."""

import contextlib


class EdgenasError(Exception):
    """A failure during a run (exit code 1)."""

    exit_code = 1


class BadInput(EdgenasError):
    """Bad usage or input: a file, field or value the user can fix (exit code 2)."""

    exit_code = 2


class Interrupted(EdgenasError):
    """The user stopped a long job; what it had measured is saved (exit code 130, as for SIGINT)."""

    exit_code = 130


def one_line(e: BaseException, last: bool = False) -> str:
    """A library's multi-line message as one line: its first (or, for TVM's tracebacks, `last`) non-empty line."""
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return (lines[-1] if last else lines[0]) if lines else type(e).__name__


#: where warnings go while an attempt that may be thrown away runs (`held_warnings`): None prints them
_held: list[list[str]] = []


def warn(message: str) -> None:
    """A one-line warning on stderr: the run goes on, but the user should know."""
    import sys

    if _held:
        _held[-1].append(message)
        return
    print(f"edgenas: warning: {message}", file=sys.stderr)


@contextlib.contextmanager
def held_warnings():
    """Warnings of an attempt kept back, in the list this yields, instead of printed: an attempt that does not ship
    prints nothing, and the caller says what the one that ships said (`warn` each again)."""
    _held.append([])
    try:
        yield _held[-1]
    finally:
        _held.pop()
