"""How close do black-box optimizers get to the white-box optimum of a network unit?

For the digits unit (class-3 logit) and the face unit (O-Net face probability, and its logit),
in the same image space as the protocols (protocols/digit-cell.yaml, protocols/face-cell.yaml):
  1. the white-box optimum: gradient ascent on the unit's own gradient, no priors, several starts;
  2. the model-based default, CMA-ES and the genetic algorithm, black-box, 3,000 presentations each;
and prints the best response each reached after 1,000 and 3,000 presentations as a fraction of
the white-box optimum. Besides the output units, ten channel units of conv layers (a channel's
mean over positions). Everything runs through the ordinary evolve loop and its run log, in one
run of this script:

    PYTHONPATH=$PWD python benchmarks/whitebox_fraction.py [--seeds 0 1 2] [--budget 3000] \
        [--optimizers linear_model cmaes ...] [--units face:face_logit digits:conv2:10 ...]

With several seeds each seed has its own white-box optimum and runs; the summary prints each
fraction per seed and their median.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import yaml

from closedloop import protocol as protocol_module
from closedloop.recording import open_run

SPACES = {
    "digits": {"kind": "color_pixels", "size": 8, "channels": 1, "contrast": 0.3},
    "face": {"kind": "color_fourier", "size": 48, "channels": 3, "max_frequency": 0.0625, "contrast": 0.25},
}
UNITS = [("digits", "class3"), ("face", "face_probability"), ("face", "face_logit")]
# channel units of conv layers (the channel's mean over positions), a fixed spread over layers
CHANNELS = [("digits", "conv1:3"), ("digits", "conv2:10"), ("digits", "conv2:25"),
            ("face", "conv1:5"), ("face", "conv2:20"), ("face", "conv3:9"), ("face", "conv3:40"),
            ("face", "conv4:7"), ("face", "conv4:64"), ("face", "conv4:110")]
WHITE_BOX = {"kind": "gradient_ascent", "popsize": 4, "steps": 10, "learning_rate": 0.1}
# CMA-ES as in protocols/face-cell.yaml (pycma's population, a bold first step: the rendering
# fixes the contrast, so only the latent's direction matters); the same with a smaller
# population (more generations in the budget); CMA-ES searching directions on a sphere
# (closedloop/optimizers/cmaes.py); sep-CMA-ES (a diagonal covariance); the genetic algorithm as it comes
BLACK_BOX = {"linear_model": {"kind": "linear_model"},
             "cmaes": {"kind": "cmaes", "sigma0": 10},
             "cmaes-10": {"kind": "cmaes", "sigma0": 10, "popsize": 10},
             "cmaes-sph": {"kind": "cmaes", "sigma0": 0.3, "sphere": True},
             "cmaes-diag": {"kind": "cmaes", "sigma0": 10, "diagonal": True},
             "genetic": {"kind": "genetic", "popsize": 20}}


def run(model, unit, optimizer, seed, directory, label=None, **stop) -> tuple:
    data = {"kind": "evolve", "seed": seed, "record_rendered": False,
            "neuron": {"kind": "dnn", "model": model, "unit": unit},
            "space": SPACES[model], "optimizer": optimizer, "generations": None, **stop}
    protocol = protocol_module.parse(yaml.safe_dump(data, sort_keys=False), f"{model}-{unit}-{optimizer['kind']}")
    path = Path(directory) / f"{model}-{unit}-{label or optimizer['kind']}-{seed}.h5"
    started = time.perf_counter()
    protocol.experiment_cls(protocol).run(path, progress=False)
    with open_run(path) as log:
        return log.generations.copy(), time.perf_counter() - started


def best_after(generations, presentations: int) -> float:
    return float(generations.loc[generations["presentations"] <= presentations, "best"].max())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--whitebox-generations", type=int, default=60)
    parser.add_argument("--optimizers", nargs="+", default=list(BLACK_BOX), choices=list(BLACK_BOX))
    parser.add_argument("--units", nargs="+", default=None,
                        help="model:unit names (default: the three output units and the ten channels)")
    args = parser.parse_args()
    units = ([tuple(u.split(":", 1)) for u in args.units] if args.units else UNITS + CHANNELS)
    checkpoints = [c for c in (1000, args.budget) if c <= args.budget]
    header = f"{'unit':<24}{'optimizer':<13}{'seed':>5}" + "".join(f"{'best@' + str(c):>12}{'fraction':>10}" for c in checkpoints)
    rows, fractions = [], {}
    with tempfile.TemporaryDirectory() as directory:
        for seed in args.seeds:
            for model, unit in units:
                label = f"{model} {unit}"
                generations, seconds = run(model, unit, WHITE_BOX, seed, directory, "white-box",
                                           generations=args.whitebox_generations)
                optimum = float(generations["best"].max())
                rows.append(f"{label:<24}{'white-box':<13}{seed:>5}{optimum:>12.6g}{1.0:>10.3f}"
                            f"   ({int(generations['presentations'].iloc[-1])} presentations, "
                            f"{args.whitebox_generations * WHITE_BOX['steps'] * WHITE_BOX['popsize']} gradients, {seconds:.0f} s)")
                print(rows[-1], flush=True)
                for name in args.optimizers:
                    optimizer = BLACK_BOX[name]
                    generations, seconds = run(model, unit, optimizer, seed, directory, name, budget=args.budget)
                    reached = [best_after(generations, c) for c in checkpoints]
                    fractions.setdefault((label, name), []).append([r / optimum for r in reached])
                    cells = "".join(f"{r:>12.6g}{r / optimum:>10.3f}" for r in reached)
                    rows.append(f"{label:<24}{name:<13}{seed:>5}{cells}   ({seconds:.0f} s)")
                    print(rows[-1], flush=True)
    print()
    print(header)
    print("\n".join(rows))
    if len(args.seeds) > 1:
        print()
        print(f"{'unit':<24}{'optimizer':<13}" + "".join(f"{'fraction@' + str(c) + ' per seed':>34}{'median':>8}" for c in checkpoints))
        for (label, name), values in fractions.items():
            cells = ""
            for i in range(len(checkpoints)):
                column = [v[i] for v in values]
                cells += f"{' '.join(f'{x:.2f}' for x in column):>34}{statistics.median(column):>8.3f}"
            print(f"{label:<24}{name:<13}{cells}")

if __name__ == "__main__":
    main()
