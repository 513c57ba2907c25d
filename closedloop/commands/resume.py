"""closedloop resume RUN.h5: continue a crashed or interrupted run to its stop rule."""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import ClosedLoopError

ORDER = 1


def execute(args) -> int:
    from closedloop import protocol as protocol_module
    from closedloop.analysis import report_run
    from closedloop.commands.run import exit_code
    from closedloop.recording import open_run
    from closedloop.recording.writer import holding

    path = Path(args.log)
    with open_run(path):  # a missing or damaged log is refused before anything is locked
        pass
    # exactly one resume proceeds: the lock is held across the check, the rebuild, the swap and
    # the run, and the status is read under it (another resume may have just finished the run)
    with holding(path):
        with open_run(path) as run:
            status, text, directory = run.status, run.protocol, run.protocol_dir
        if status == "complete":
            raise ClosedLoopError(f"{path}: the run is already complete; nothing to resume")
        protocol = protocol_module.parse(text, f"{path} (its protocol)", allowed_imports=getattr(args, "allow_import", None) or (),
                                         directory=directory or None)
        experiment = protocol.experiment_cls(protocol)
        if not experiment.resumable:
            raise ClosedLoopError(f"{path}: runs of kind {protocol.kind!r} cannot be resumed; run them again")
        summary = experiment.run(path, progress=not args.quiet, resume=True)
    report_run(path, echo=print)
    if summary.get("status") == "interrupted":
        print(f"interrupted after {summary.get('presentations', 0)} presentations; continue with: "
              f"closedloop resume {path}")
    return exit_code(summary)


def add_parser(sub):
    parser = sub.add_parser("resume", help="continue an interrupted or crashed run from its log")
    parser.add_argument("log", help="the run log to continue")
    parser.add_argument("--allow-import", action="append", metavar="MODULE",
                        help="let the log's protocol import this module (a custom network); a log never "
                             "runs code by itself")
    parser.set_defaults(func=execute)
