"""Presentations per second of the Brian2 spiking cell (200 ms at dt 0.1 ms, OU noise).

For each batch size: the batched cpp_standalone simulator (built once, then re-run with run
arguments), beside (a) the naive way, one Brian2 run per presentation (runtime mode; a few are
timed and the rate extrapolated), and (b) the floor: the time numpy's default generator takes to
draw one Gaussian per neuron per time step. All figures come from this one run.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/presentations.py [--batches 100 1000 10000] [--threads 1 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from closedloop.neurons.brian_engine import Engine, Inputs
from closedloop.neurons.cells.lif import LIF, LIFSettings

WINDOW_MS, DT_MS = 200.0, 0.1


def inputs(n: int, cell: LIFSettings, seed: int) -> Inputs:
    rng = np.random.default_rng(seed)
    sigma = cell.noise_sigma * 1e-9
    return Inputs(I_stim=(cell.bias + cell.gain * rng.random(n)) * 1e-9, theta=np.zeros(n),
                  I_noise=rng.standard_normal(n) * sigma, noise_sigma=sigma, seed=seed)


def fano_factors(repeats: int = 100) -> tuple[np.ndarray, np.ndarray]:
    """Mean spike count and Fano factor of the default cell (state reset) at five drive levels."""
    from closedloop.neurons.spiking import SpikingCell, SpikingSettings

    cell = SpikingCell(SpikingSettings(reset_state=True, target="numpy"), 1)
    best = cell.front_end.optimum()
    counts = cell.present(np.array([level * best for level in (0, 0.25, 0.5, 0.75, 1)]), repeats).responses
    return counts.mean(axis=1), counts.var(axis=1, ddof=1) / counts.mean(axis=1)


def best_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[100, 1000, 10000])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--naive", type=int, default=3, help="presentations timed for the naive loop")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per batch (the best is kept)")
    parser.add_argument("--no-fano", action="store_true", help="skip the spike-count variability figures")
    args = parser.parse_args()
    if not args.no_fano:
        mean, fano = fano_factors()
        print("default cell, drive 0 / 0.25 / 0.5 / 0.75 / 1 (100 repeats each, 200 ms):")
        print("  mean count  " + "  ".join(f"{m:5.1f}" for m in mean))
        print("  Fano factor " + "  ".join(f"{f:5.2f}" for f in fano) + f"   (mean {fano.mean():.2f})")
    cell = LIFSettings()
    model = LIF(cell, 0).model
    steps = int(round(WINDOW_MS / DT_MS))

    naive_sim = Engine(model, DT_MS, WINDOW_MS, cell.noise_tau).simulator(1, "numpy")
    naive_sim.run(inputs(1, cell, 0))  # first run pays Brian2's code generation
    naive = best_time(lambda: naive_sim.run(inputs(1, cell, 1)), args.naive)
    print(f"naive loop (one Brian2 runtime run per presentation): {naive * 1000:.0f} ms per presentation, "
          f"{1 / naive:.2f} presentations/s")
    print(f"{'batch':>6} {'threads':>7} {'build s':>8} {'run s':>8} {'pres/s':>10} {'x naive':>9} "
          f"{'floor s':>8} {'/ floor':>8}")
    for batch in args.batches:
        rng = np.random.default_rng(0)
        floor = best_time(lambda: rng.standard_normal(batch * steps), 3)
        for threads in args.threads:
            start = time.perf_counter()
            sim = Engine(model, DT_MS, WINDOW_MS, cell.noise_tau, threads).simulator(batch, "standalone")
            sim.run(inputs(batch, cell, 0))
            build = time.perf_counter() - start
            run = best_time(lambda: sim.run(inputs(batch, cell, 2)), args.repeats)
            rate = batch / run
            print(f"{batch:>6} {threads:>7} {build:>8.2f} {run:>8.4f} {rate:>10.0f} {rate * naive:>9.0f} "
                  f"{floor:>8.4f} {run / floor:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
