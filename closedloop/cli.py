"""`closedloop run|resume|analyze|sweep|zoo|export`: one module per command in closedloop/commands."""

from __future__ import annotations

import argparse
import os
import importlib
import pkgutil
import sys

from closedloop import commands
from closedloop.errors import ClosedLoopError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="closedloop", description="Closed-loop experiments on simulated neurons.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: getattr(
            importlib.import_module(f"closedloop.commands.{m.name}"), "ORDER", 99)):
        module = importlib.import_module(f"closedloop.commands.{info.name}")
        module.add_parser(sub)
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
