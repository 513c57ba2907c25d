"""closedloop resume RUN.h5: continue a crashed or interrupted run to its stop rule."""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import ClosedLoopError

ORDER = 1


def execute(args) -> int:
    from closedloop import protocol as protocol_module
    from closedloop.analysis import report_run
    from closedloop.recording import open_run
    from closedloop.recording.writer import lock, unlock

    path = Path(args.log)
    with open_run(path) as run:
        status, text = run.status, run.protocol
    unlock(path, lock(path))  # refuse a run that is still being written
    if status == "complete":
        raise ClosedLoopError(f"{path}: the run is already complete; nothing to resume")
    protocol = protocol_module.parse(text, f"{path} (its protocol)")
    experiment = protocol.experiment_cls(protocol)
    if not experiment.resumable:
        raise ClosedLoopError(f"{path}: runs of kind {protocol.kind!r} cannot be resumed; run them again")
    summary = experiment.run(path, progress=not args.quiet, resume=True)
    report_run(path, echo=print)
    return 0


def add_parser(sub):
    parser = sub.add_parser("resume", help="continue an interrupted or crashed run from its log")
    parser.add_argument("log", help="the run log to continue")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=execute)
