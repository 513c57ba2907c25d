"""Errors that reach the user as one line and a documented exit code (docs/reliability.md)."""

from __future__ import annotations

import errno
import signal
from pathlib import Path

# exit codes of the command line: 0 complete, 2 bad input, 3 failed; a run stopped by a signal
# exits 128 + the signal's number, as a shell reports a process killed by it (both resumable)
EXIT_OK, EXIT_BAD_INPUT, EXIT_FAILED = 0, 2, 3
EXIT_SIGINT, EXIT_SIGTERM = 128 + signal.SIGINT, 128 + signal.SIGTERM
EXIT_NEURON_STOPPED = 4  # the neuron (a remote rig) stopped the session: resumable
MAX_LINE = 300  # characters of an error line


class ClosedLoopError(Exception):
    """Base of every error closedloop reports to the user without a traceback: something the user
    gave (a file, a field, an argument) cannot be used as it is."""

    exit_code = EXIT_BAD_INPUT


class ProtocolError(ClosedLoopError):
    """A protocol file is malformed: names the file, the field path and what is expected."""


class LogError(ClosedLoopError):
    """A run log cannot be read: truncated, corrupt, foreign or of a newer format."""


class InvalidValueError(ClosedLoopError):
    """A stimulus or response holds NaN or Inf."""

    exit_code = EXIT_FAILED


class RunFailed(ClosedLoopError):
    """The run could not go on (the disk is full, a file-size limit, a write error). Every
    generation written before it is intact and the log says `failed`; `resume` continues it."""

    exit_code = EXIT_FAILED


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM arrived where the run could not stop at a generation's end."""

    def __init__(self, signum: int = signal.SIGINT):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


# an output path the user gave cannot be written: bad input, not a failure of the run
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOENT, errno.ENOTDIR, errno.EISDIR,
                 errno.ENAMETOOLONG, errno.ELOOP, errno.EEXIST}


def reason(exc: BaseException) -> str:
    """The first line of an exception's message, without HDF5's error-stack decoration."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    text = str(exc).strip()
    first = text.splitlines()[0] if text else type(exc).__name__
    return shorten(first, 160)


def write_error(path, exc: OSError, doing: str = "cannot write") -> ClosedLoopError:
    """One line for an OSError met while writing `path`: exit 2 where the place cannot be written
    at all (read-only, no permission, missing folder), else 3 (disk full, size limit, I/O)."""
    cls = ClosedLoopError if getattr(exc, "errno", None) in _NOT_WRITABLE else RunFailed
    return cls(f"{path}: {doing} ({reason(exc)})")


def not_found(path, what: str) -> str:
    """Why `path` cannot be read as a `what` file: it does not exist, or it is a folder or a device."""
    path = Path(path)
    if path.is_dir():
        return f"{path}: a folder, not a {what}"
    if path.exists():
        return f"{path}: not a regular file (a device or a pipe), not a {what}"
    return f"{path}: no such {what}"


def shorten(text: str, limit: int = MAX_LINE) -> str:
    """One line of at most `limit` characters: a long value is cut in its middle."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    keep = limit - 5
    return f"{text[: keep * 2 // 3]} ... {text[len(text) - keep // 3:]}"


class NeuronStopped(ClosedLoopError):
    """The neuron stopped the session before the protocol's end through no fault of the log (a
    rig that stopped answering, or answered what cannot be used): every logged trial stands, the
    log is left `interrupted`, and `closedloop resume` continues it."""

    exit_code = EXIT_NEURON_STOPPED
