"""closedloop export RUN.h5 RUN.nwb: the run log as Neurodata Without Borders (needs pynwb)."""

from __future__ import annotations

from pathlib import Path

from closedloop.errors import ClosedLoopError

ORDER = 5


def execute(args) -> int:
    try:
        from closedloop.recording.nwb import export
        import pynwb  # noqa: F401
    except ImportError:
        raise ClosedLoopError("export needs pynwb: pip install 'closedloop[extras]'") from None
    out = Path(args.nwb) if args.nwb else Path(args.log).with_suffix(".nwb")
    if out.resolve() == Path(args.log).resolve():
        raise ClosedLoopError(f"{out}: is the run log itself; give another output path")
    if out.exists() and not args.overwrite:
        raise ClosedLoopError(f"{out}: exists; give --overwrite or another output path")
    try:
        written = export(args.log, out, experimenter=args.experimenter, institution=args.institution,
                         subject_id=args.subject_id)
    except OSError as exc:
        raise ClosedLoopError(f"{out}: cannot write ({exc.strerror or exc})") from None
    print(f"wrote {written['path']}: {written['trials']} trials, {written['spikes']} spikes, "
          f"stimuli: {written['stimuli']}")
    return 0


def add_parser(sub):
    parser = sub.add_parser("export", help="write a run log as an NWB file")
    parser.add_argument("log", help="a run log written by closedloop run")
    parser.add_argument("nwb", nargs="?", help="output path (default: the log's path with .nwb)")
    parser.add_argument("--overwrite", action="store_true", help="replace the output if it exists")
    parser.add_argument("--experimenter", action="append", metavar="'LAST, FIRST'",
                        help="who ran the experiment (DANDI asks for it; repeat for several people)")
    parser.add_argument("--institution", help="where it was run (DANDI asks for it)")
    parser.add_argument("--subject-id", help="the subject's identifier (default: simulated-<neuron kind>)")
    parser.set_defaults(func=execute)
