"""closedloop sounds RUN.h5: the best sound of an audio run and of chosen generations, as WAVs."""

from __future__ import annotations

ORDER = 3


def execute(args) -> int:
    from pathlib import Path

    from closedloop.analysis import figures_folder
    from closedloop.analysis.audio import analyze_sounds
    from closedloop.errors import ClosedLoopError
    from closedloop.recording import open_run

    if args.every is not None and args.every < 1:
        raise ClosedLoopError(f"--every {args.every}: expected a whole number of generations, at least 1")
    with open_run(args.log) as run:
        if run.modality != "audio":
            raise ClosedLoopError(f"{args.log}: not an audio run (its stimuli are {run.modality}s)")
        generations = run.generations
        if generations.empty:
            raise ClosedLoopError(f"{args.log}: no generation logged yet")
        per_generation = run.best_per_generation()
        chosen = args.generations
        if chosen is None and args.every:
            chosen = list(range(0, len(per_generation), args.every))
        bad = [g for g in chosen or [] if not 0 <= g < len(per_generation)]
        if bad:
            raise ClosedLoopError(f"--generations: {bad} not in the run's generations 0..{len(per_generation) - 1}")
        out = Path(args.out) if args.out else figures_folder(args.log)
        best = int(generations["best_stimulus"].iloc[-1])
        if best < 0:  # a kind without a search (fooling, tuning): the sound with the highest mean response
            best = int(run.stimulus_means()["mean"].idxmax())
        lines = analyze_sounds(run, out, best, per_generation, {}, generations=chosen)
    for line in lines:
        print(line)
    return 0


def add_parser(sub):
    parser = sub.add_parser("sounds", help="WAV files of an audio run's best sounds (all or chosen generations)")
    parser.add_argument("log", help="a run log of an audio protocol")
    parser.add_argument("--generations", type=int, nargs="+", metavar="G",
                        help="write the best sound of these generations (default: five, first to last)")
    parser.add_argument("--every", type=int, metavar="N", help="or of every N-th generation")
    parser.add_argument("--out", help="folder for sounds/ (default: beside the log, as analyze)")
    parser.set_defaults(func=execute)
