"""closedloop repair RUN.h5: make a log whose writer was killed openable by every HDF5 tool."""

from __future__ import annotations

ORDER = 6


def execute(args) -> int:
    from closedloop.errors import ClosedLoopError
    from closedloop.recording import open_run
    from closedloop.recording.repair import clear_write_flags
    from closedloop.recording.writer import holding

    with open_run(args.log) as run:  # refuses what is not a readable run log
        status, generations = run.status, len(run.generations)
    with holding(args.log):  # refused while a closedloop process writes it
        try:
            cleared = clear_write_flags(args.log)
        except OSError as exc:
            raise ClosedLoopError(f"{args.log}: cannot be written ({exc.strerror or exc})") from None
    state = "cleared the write marks a killed writer left" if cleared else "nothing to repair"
    print(f"{args.log}: {state}; status {status}, {generations} generations"
          + ("; continue with: closedloop resume " + str(args.log) if status not in ("complete",) else ""))
    return 0


def add_parser(sub):
    parser = sub.add_parser("repair", help="clear the write marks a killed run left, for other HDF5 tools")
    parser.add_argument("log", help="a run log")
    parser.set_defaults(func=execute)
