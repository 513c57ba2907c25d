"""closedloop run PROTOCOL: validate, run, and print the summary."""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import ClosedLoopError, ProtocolError

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
            raise ProtocolError(f"--set {item}: expected FIELD=VALUE, e.g. seed=3")
        key, value = item.split("=", 1)
        overrides[key.strip()] = load_yaml(value, f"--set {item}")
    return overrides


def execute(args) -> int:
    from closedloop import protocol as protocol_module

    protocol = protocol_module.load(args.protocol, parse_overrides(args.set))
    experiment = protocol.experiment_cls(protocol)
    if experiment.writes_directory:  # resumes into its directory, skipping what is complete
        out = Path(args.out) if args.out else experiment.default_output()
    elif args.out:
        out = Path(args.out)
        if out.exists() and not args.overwrite:
            raise ClosedLoopError(f"{out}: exists; give --overwrite or another --out")
    else:
        out = unique_output(experiment.default_output())
    summary = experiment.run(out, progress=not args.quiet)
    experiment.report(out, summary, echo=print)
    if summary.get("status") == "interrupted":
        again = (f"continue with: closedloop resume {out}" if experiment.resumable
                 else f"run it again to redo it: closedloop run {args.protocol}")
        print(f"interrupted after {summary.get('presentations', 0)} presentations; {again}")
    return 0 if summary.get("status") != "failed" else 1


def add_parser(sub):
    run = sub.add_parser("run", help="run a protocol file")
    run.add_argument("protocol", help="a YAML protocol, e.g. protocols/quickstart.yaml")
    run.add_argument("--out", help="run log path (default data/<protocol>.h5, never overwriting)")
    run.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    run.add_argument("--set", action="append", metavar="FIELD=VALUE",
                     help="override a protocol field, e.g. --set seed=3 --set neuron.cell.noise_sigma=0.1")
    run.set_defaults(func=execute)
