"""`closedloop run|resume|analyze|sweep|zoo|export`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from closedloop.errors import ClosedLoopError


def _unique_output(path: Path) -> Path:
    if not path.exists():
        return path
    for k in range(2, 10_000):
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise ClosedLoopError(f"{path}: too many earlier runs beside it")


def cmd_run(args) -> int:
    from closedloop import protocol as protocol_module

    overrides = dict(item.split("=", 1) for item in args.set or [])
    import yaml

    overrides = {key: yaml.safe_load(value) for key, value in overrides.items()}
    protocol = protocol_module.load(args.protocol, overrides)
    experiment = protocol.experiment_cls(protocol)
    if args.out:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise ClosedLoopError(f"{out}: exists; give --overwrite or another --out")
    else:
        out = _unique_output(experiment.default_output())
    summary = experiment.run(out, progress=not args.quiet)
    from closedloop.analysis import report_run

    report_run(out, summary, echo=print)
    return 0 if summary.get("status") != "failed" else 1


def cmd_analyze(args) -> int:
    from closedloop.analysis import report_run

    report_run(Path(args.log), None, echo=print)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="closedloop", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a protocol file")
    run.add_argument("protocol")
    run.add_argument("--out", help="run log path (default data/<protocol>.h5, never overwriting)")
    run.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE", help="override a protocol field, e.g. seed=3")
    run.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    analyze = sub.add_parser("analyze", help="figures and summary of a run log")
    analyze.add_argument("log")
    analyze.set_defaults(func=cmd_analyze)
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


if __name__ == "__main__":
    sys.exit(main())
