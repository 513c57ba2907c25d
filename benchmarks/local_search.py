"""Do deterministic local methods reach a network unit's white-box optimum where CMA-ES does not?

A network unit without noise is a deterministic function of the latent vector, the setting that
derivative-free trust-region methods and quasi-Newton steps on finite-difference gradients are
made for. This runs two of scipy's, from a prior draw, for the same budget as
benchmarks/whitebox_fraction.py and against the same white-box optimum (its gradient ascent, run
here for each seed):

  - lbfgs: L-BFGS-B on forward-difference gradients (dim + 1 presentations per gradient);
  - cobyqa: COBYQA (quadratic models in a trust region, one presentation per step).

    PYTHONPATH=$PWD .venv/bin/python benchmarks/local_search.py [--seeds 0 1 2] [--methods lbfgs cobyqa] \
        [--units face:face_logit] [--budget 3000]

They do not run through the evolve loop (they call the function one point or one gradient at
a time), so nothing is logged; each presentation is counted.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
from scipy.optimize import minimize
from whitebox_fraction import SPACES, WHITE_BOX, run

import closedloop

FD_STEP = 1e-3  # forward-difference step in latent units (latents are of order 1)


class Budgeted:
    """The unit's response to latent vectors, counting presentations and the best so far."""

    def __init__(self, model: str, unit: str, seed: int, budget: int):
        section = dict(SPACES[model])
        self.space = closedloop.space(section.pop("kind"), **section)
        self.neuron = closedloop.neuron("dnn", model=model, unit=unit, seed=seed)
        self.budget, self.best = budget, []

    def __call__(self, z: np.ndarray) -> np.ndarray:
        z = np.atleast_2d(z)[: max(self.budget - len(self.best), 0)]
        if not len(z):
            raise StopIteration
        responses = self.neuron.present(self.space.render(z), repeats=1).responses[:, 0]
        for r in responses:
            self.best.append(max(r, self.best[-1]) if self.best else r)
        return responses

    def best_after(self, presentations: int) -> float:
        return float(self.best[min(presentations, len(self.best)) - 1])


def lbfgs(f: Budgeted, x0: np.ndarray) -> None:
    dim = len(x0)

    def loss_and_gradient(x):
        r = f(np.vstack([x, x + FD_STEP * np.eye(dim)]))
        if len(r) < dim + 1:
            raise StopIteration
        return -r[0], -(r[1:] - r[0]) / FD_STEP

    minimize(loss_and_gradient, x0, jac=True, method="L-BFGS-B", options={"maxiter": 10**6, "maxfun": 10**6})


def cobyqa(f: Budgeted, x0: np.ndarray) -> None:
    minimize(lambda x: -float(f(x)[0]), x0, method="COBYQA", options={"maxfev": f.budget, "initial_tr_radius": 1.0})


METHODS = {"lbfgs": lbfgs, "cobyqa": cobyqa}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--units", nargs="+", default=["face:face_logit"], help="model:unit names")
    args = parser.parse_args()
    checkpoints = [c for c in (1000, args.budget) if c <= args.budget]
    fractions = {}
    with tempfile.TemporaryDirectory() as directory:
        for seed in args.seeds:
            for model, unit in (u.split(":", 1) for u in args.units):
                generations, _ = run(model, unit, WHITE_BOX, seed, directory, "white-box", generations=60)
                optimum = float(generations["best"].max())
                print(f"{model} {unit:<16} seed {seed}: white-box optimum {optimum:.4g}", flush=True)
                for name in args.methods:
                    f = Budgeted(model, unit, seed, args.budget)
                    started = time.perf_counter()
                    try:
                        METHODS[name](f, np.random.default_rng(seed).standard_normal(f.space.dim))
                    except StopIteration:
                        pass
                    reached = [f.best_after(c) / optimum for c in checkpoints]
                    fractions.setdefault((f"{model} {unit}", name), []).append(reached[-1])
                    print(f"  {name:<8} {len(f.best)} presentations, fraction at "
                          + ", ".join(f"{c}: {r:.3f}" for c, r in zip(checkpoints, reached))
                          + f" ({time.perf_counter() - started:.0f} s)", flush=True)
    print()
    for (label, name), values in fractions.items():
        print(f"{label:<24}{name:<8} fraction at {args.budget}: {' '.join(f'{v:.2f}' for v in values)}, "
              f"median {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
