"""closedloop analyze RUN.h5|SWEEP_FOLDER: figures and key numbers of a run log (also of one still
running), or the summary of a sweep's folder of logs, made again."""

from __future__ import annotations

ORDER = 2


def execute(args) -> int:
    from pathlib import Path

    if Path(args.log).is_dir():
        from closedloop.sweeps.summary import from_folder, report

        report(from_folder(args.log), echo=print)
        return 0
    from closedloop.analysis import report_run

    report_run(args.log, echo=print)
    return 0


def add_parser(sub):
    parser = sub.add_parser("analyze", help="figures and summary of a run log, or of a sweep's folder")
    parser.add_argument("log", help="a run log written by closedloop run, or a folder written by closedloop sweep")
    parser.set_defaults(func=execute)
