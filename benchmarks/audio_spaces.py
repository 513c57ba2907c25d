"""Compare the audio spaces: presentations until a unit's response first reaches 0.9.

For the CREPE "A4" pitch unit and the Silero speech unit, every space (waveform, harmonic,
spectrogram) is searched black-box by CMA-ES and by the genetic algorithm, for a few seeds and a
fixed budget of presentations, through the real evolve loop and run log (`--optimizers
gradient_ascent` adds the white-box reference where the space is differentiable). For each run the table
gives the presentations at which the best response first reached the threshold ("-" = not within
the budget), the best response, and what measures that do not ask the network say about the best
sound: its YIN pitch (this repository's own estimator, not CREPE), the fraction of voiced frames,
and its spectral flatness (1 = white noise, 0 = pure tone).

    PYTHONPATH=$PWD python benchmarks/audio_spaces.py [--seeds 2] [--budget 720] [--units pitch speech]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from closedloop.analysis.audio import describe_sound
from closedloop.protocol import from_dict
from closedloop.recording import open_run

THRESHOLD = 0.9
UNITS = {
    "pitch": {"kind": "dnn", "model": "pitch", "unit": "A4"},   # 256 ms sounds
    "speech": {"kind": "dnn", "model": "speech", "unit": "speech_probability"},  # 512 ms sounds
}
DURATION = {"pitch": 0.256, "speech": 0.512}
SPACES = {
    "waveform": {"kind": "waveform", "resolution": 20, "f_min": 60, "f_max": 4000},
    "harmonic": {"kind": "harmonic", "f_min": 60, "f0_max": 1000, "harmonics": 12, "pitch_points": 2,
                 "envelope_points": 4},
    "spectrogram": {"kind": "spectrogram", "time_bins": 8, "frequency_bins": 24, "f_min": 60, "f_max": 4000},
}
OPTIMIZERS = {"cmaes": {"kind": "cmaes", "popsize": 12}, "genetic": {"kind": "genetic", "popsize": 12},
              # white-box reference: 4 starts, 5 gradient steps between two presentations of each
              "gradient_ascent": {"kind": "gradient_ascent", "popsize": 4, "steps": 5, "learning_rate": 0.05}}


def run_one(unit, space, optimizer, seed, budget, folder) -> dict:
    protocol = from_dict({
        "kind": "evolve", "seed": seed, "budget": budget, "generations": None,
        "neuron": UNITS[unit], "space": {**SPACES[space], "duration": DURATION[unit]},
        "optimizer": OPTIMIZERS[optimizer],
    }, f"{unit}-{space}-{optimizer}-{seed}")
    path = Path(folder) / f"{unit}-{space}-{optimizer}-{seed}.h5"
    started = time.perf_counter()
    protocol.experiment_cls(protocol).run(path, progress=False)
    seconds = time.perf_counter() - started
    with open_run(path) as run:
        generations = run.generations
        reached = generations[generations["best"] >= THRESHOLD]
        best_index = int(generations["best_stimulus"].iloc[-1])
        sound = describe_sound(run.rendered([best_index])[0], run.sample_rate)
        return {"presentations": int(reached["presentations"].iloc[0]) if len(reached) else None,
                "best": float(generations["best"].iloc[-1]), "seconds": seconds, **sound}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--budget", type=int, default=720, help="presentations per run")
    parser.add_argument("--units", nargs="+", default=list(UNITS), choices=list(UNITS))
    parser.add_argument("--spaces", nargs="+", default=list(SPACES), choices=list(SPACES))
    parser.add_argument("--optimizers", nargs="+", default=["cmaes", "genetic"], choices=list(OPTIMIZERS))
    args = parser.parse_args()
    print(f"threshold {THRESHOLD}, budget {args.budget} presentations, seeds 0..{args.seeds - 1}, "
          + "; ".join(f"{name}: {OPTIMIZERS[name]}" for name in args.optimizers))
    print("| unit | space | dim | optimizer | presentations to 0.9 (per seed) | reached | best response (mean) "
          "| YIN pitch of best sound (Hz) | voiced frames | spectral flatness | s per run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for unit in args.units:
            for space in args.spaces:
                built = from_dict({"kind": "evolve", "neuron": UNITS[unit], "optimizer": OPTIMIZERS["cmaes"],
                                   "space": {**SPACES[space], "duration": DURATION[unit]}}, "dim").build("space")
                dim = built.dim
                for optimizer in args.optimizers:
                    if optimizer == "gradient_ascent" and not hasattr(built, "render_torch"):
                        continue  # Griffin-Lim is not differentiable here
                    rows = [run_one(unit, space, optimizer, seed, args.budget, folder) for seed in range(args.seeds)]
                    hits = [r["presentations"] for r in rows]
                    cells = [
                        ", ".join("-" if h is None else str(h) for h in hits),
                        f"{sum(h is not None for h in hits)}/{len(hits)}",
                        f"{np.mean([r['best'] for r in rows]):.3f}",
                        ", ".join("-" if np.isnan(r["f0"]) else f"{r['f0']:.0f}" for r in rows),
                        ", ".join(f"{r['voiced_fraction']:.0%}" for r in rows),
                        ", ".join(f"{r['spectral_flatness']:.2g}" for r in rows),
                        f"{np.mean([r['seconds'] for r in rows]):.0f}",
                    ]
                    print(f"| {unit} | {space} | {dim} | {optimizer} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
