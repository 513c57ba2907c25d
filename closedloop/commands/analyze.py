"""closedloop analyze RUN.h5: figures and key numbers of a run log (also of one still running)."""

from __future__ import annotations

ORDER = 2


def execute(args) -> int:
    from closedloop.analysis import report_run

    report_run(args.log, echo=print)
    return 0


def add_parser(sub):
    parser = sub.add_parser("analyze", help="figures and summary of a run log")
    parser.add_argument("log", help="a run log written by closedloop run")
    parser.set_defaults(func=execute)
