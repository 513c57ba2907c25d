"""closedloop run PROTOCOL: validate, run, and print the summary."""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from closedloop.errors import EXIT_FAILED, EXIT_NEURON_STOPPED, EXIT_OK, ClosedLoopError, ProtocolError, RunFailed, shorten

ORDER = 0


def unique_output(path: Path) -> Path:
    """`path`, or the first free `path-2`, `path-3`, ...: a run never overwrites an earlier log."""
    if not path.exists():
        return path
    for k in range(2, 100_000):
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
        if not candidate.exists():
            return candidate
    raise ClosedLoopError(f"{path}: too many earlier runs beside it")


def parse_overrides(items) -> dict:
    from closedloop.protocol import load_yaml

    overrides = {}
    for item in items or []:
        if "=" not in item:
            raise ProtocolError(f"--set {shorten(item, 80)}: expected FIELD=VALUE, e.g. seed=3")
        key, value = item.split("=", 1)
        overrides[key.strip()] = load_yaml(value, f"--set {shorten(key.strip(), 80)}")
    return overrides


def exit_code(summary: dict) -> int:
    """0 complete, 3 failed, 128 + the signal's number when a signal stopped the run, 4 when the
    neuron did (a rig that stopped answering: its reason goes to stderr)."""
    status = summary.get("status")
    if status == "interrupted" and "reason" in summary:
        print(f"closedloop: error: {summary['reason']}", file=sys.stderr)
        return EXIT_NEURON_STOPPED
    if status == "interrupted":
        return 128 + int(summary.get("signal", signal.SIGINT))
    return EXIT_OK if status == "complete" else EXIT_FAILED


def execute(args) -> int:
    from closedloop import protocol as protocol_module

    protocol = protocol_module.load(args.protocol, parse_overrides(args.set))
    experiment = protocol.experiment_cls(protocol)
    if experiment.writes_directory:  # resumes into its directory, skipping what is complete
        out = Path(args.out) if args.out else experiment.default_output()
    elif args.out:
        out = Path(args.out)
        if args.out.endswith(("/", os.sep)) or out.is_dir():
            raise ClosedLoopError(f"--out {args.out}: a folder; the log is a file: --out {out / 'run.h5'}")
        if out.exists() and not args.overwrite:
            raise ClosedLoopError(f"{out}: exists; give --overwrite or another --out")
    else:
        out = unique_output(experiment.default_output())
    if not experiment.writes_directory:
        from closedloop.analysis import check_report_places

        check_report_places(out)
    again = (f"continue with: closedloop resume {out}" if experiment.resumable
             else f"run it again to redo it: closedloop run {args.protocol}")
    try:
        summary = experiment.run(out, progress=not args.quiet, overwrite=args.overwrite)
    except RunFailed as exc:
        if out.is_file() and not experiment.writes_directory:
            raise RunFailed(f"{exc}; the log keeps every generation before it: {again}") from None
        raise
    except KeyboardInterrupt:
        if out.is_file() and not experiment.writes_directory:
            print(f"interrupted; {again}")
        raise
    experiment.report(out, summary, echo=print)
    if summary.get("status") == "interrupted":
        print(f"interrupted after {summary.get('presentations', 0)} presentations; {again}")
    return exit_code(summary)


def add_parser(sub):
    run = sub.add_parser("run", help="run a protocol file")
    run.add_argument("protocol", help="a YAML protocol, e.g. protocols/quickstart.yaml")
    run.add_argument("--out", help="run log path (default data/<protocol>.h5, never overwriting)")
    run.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE",
                     help="override a protocol field, e.g. --set seed=3 --set neuron.cell.noise_sigma=0.1")
    run.set_defaults(func=execute)
