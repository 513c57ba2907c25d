"""closedloop sweep SWEEP.yaml: run a grid of protocols x seeds on local processes or a Dask cluster."""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import EXIT_FAILED, EXIT_OK, ProtocolError

ORDER = 1


def execute(args) -> int:
    from closedloop import protocol as protocol_module

    if args.workers is not None and args.workers < 1:
        raise ProtocolError(f"--workers {args.workers}: expected at least 1")
    if not 0 < args.connect_timeout <= 86_400:  # NaN fails too
        raise ProtocolError(f"--connect-timeout {args.connect_timeout}: expected seconds above 0, at most 86400")
    if args.workers is not None and args.scheduler:
        raise ProtocolError("--workers: local processes only; a Dask cluster (--scheduler) has its own workers")
    protocol = protocol_module.load(args.sweep)
    if protocol.kind != "sweep":
        raise ProtocolError(f"{args.sweep}: kind: expected 'sweep' here, got {protocol.kind!r} (use closedloop run)")
    experiment = protocol.experiment_cls(protocol)  # validates every run before any starts
    out = Path(args.out) if args.out else experiment.default_output()
    summary = experiment.run(out, progress=not args.quiet, workers=args.workers, scheduler=args.scheduler,
                             connect_timeout=args.connect_timeout)
    experiment.report(out, summary, echo=print)
    return EXIT_OK if summary["status"] == "complete" else EXIT_FAILED


def add_parser(sub):
    parser = sub.add_parser("sweep", help="run a sweep file: a base protocol over a grid of values x seeds")
    parser.add_argument("sweep", help="a YAML file of kind: sweep, e.g. protocols/sweep-noise.yaml")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on this Dask scheduler (e.g. tcp://10.0.0.5:8786) instead of local processes")
    parser.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                        help="give up on a scheduler that does not answer within this time (default 10)")
    parser.add_argument("--workers", type=int, help="local worker processes (default: one per core)")
    parser.add_argument("--out", help="directory of run logs (default the sweep's output, or data/<sweep name>)")
    parser.set_defaults(func=execute)
