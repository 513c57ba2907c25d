"""`closedloop run|resume|analyze|sweep|zoo|export|repair`: one module per command in closedloop/commands.

The error boundary of the program: whatever goes wrong reaches the user as one line (at most
errors.MAX_LINE characters) and an exit code documented in docs/reliability.md; `--debug` shows
the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import signal
import sys

from closedloop import commands
from closedloop.errors import (EXIT_FAILED, EXIT_OK, EXIT_SIGINT, ClosedLoopError, Interrupted,
                               reason, shorten, write_error)


GLOBAL_FLAGS = (("--debug", "show tracebacks"), ("-q", "--quiet", "no progress bars"))


def build_parser() -> argparse.ArgumentParser:
    from closedloop import __version__

    parser = argparse.ArgumentParser(prog="closedloop", description="Closed-loop experiments on simulated neurons.")
    parser.add_argument("--version", action="version", version=f"closedloop {__version__}")
    for *flags, text in GLOBAL_FLAGS:
        parser.add_argument(*flags, action="store_true", help=text)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: getattr(
            importlib.import_module(f"closedloop.commands.{m.name}"), "ORDER", 99)):
        module = importlib.import_module(f"closedloop.commands.{info.name}")
        module.add_parser(sub)
    for command in sub.choices.values():  # the global flags also after the command (a default there
        for *flags, text in GLOBAL_FLAGS:  # would undo one given before it: SUPPRESS)
            command.add_argument(*flags, action="store_true", default=argparse.SUPPRESS, help=text)
    return parser


def _terminate(signum, frame):
    raise Interrupted(signum)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:  # SIGTERM unwinds like Ctrl-C, so logs are closed and locks released (a run loop stops cleanly)
        previous = signal.signal(signal.SIGTERM, _terminate)
    except ValueError:  # not the main thread
        previous = None
    try:
        return args.func(args)
    except KeyboardInterrupt as exc:
        _say("interrupted")
        return exc.exit_code if isinstance(exc, Interrupted) else EXIT_SIGINT
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 -- the one place every other error becomes one line
        if args.debug:
            raise
        error = as_error(exc, getattr(args, "log", None))
        _say(f"error: {error}")
        return error.exit_code
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        if getattr(args, "log", None):  # whatever closedloop touched, plain HDF5 tools can open afterwards
            from closedloop.recording.repair import release

            release(args.log)


def as_error(exc: Exception, log=None) -> ClosedLoopError:
    """The one-line error for any exception: ClosedLoopError as it is; an OSError naming its
    file; anything raised while reading a log given on the command line, as damage of that log."""
    if isinstance(exc, ClosedLoopError):
        return exc
    if isinstance(exc, OSError) and exc.filename:
        return write_error(exc.filename, exc, "cannot be written" if _writing(exc) else "cannot be read")
    if isinstance(exc, (RecursionError, MemoryError)):
        error = ClosedLoopError(f"{log or 'input'}: too large or too deeply nested to handle "
                                f"({type(exc).__name__})")
        return error
    if log is not None:
        error = ClosedLoopError(f"{log}: cannot be used, damaged run log? ({type(exc).__name__}: {reason(exc)})")
        return error
    error = ClosedLoopError(f"unexpected {type(exc).__name__}: {reason(exc)} (rerun with --debug for the "
                            f"traceback, and please report it)")
    error.exit_code = EXIT_FAILED
    return error


def _writing(exc: OSError) -> bool:
    import errno

    return exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM)


def _say(text: str) -> None:
    try:
        print(f"closedloop: {shorten(text, 300 - len('closedloop: '))}", file=sys.stderr)
    except (OSError, ValueError):
        pass


if __name__ == "__main__":
    sys.exit(main())
