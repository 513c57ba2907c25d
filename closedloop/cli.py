"""`closedloop run|resume|analyze|sweep|zoo|export`: one module per command in closedloop/commands."""

from __future__ import annotations

import argparse
import os
import importlib
import pkgutil
import sys

from closedloop import commands
from closedloop.errors import ClosedLoopError


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


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ClosedLoopError as exc:
        if args.debug:
            raise
        print(f"closedloop: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("closedloop: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
