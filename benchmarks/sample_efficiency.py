"""The optimizer sample-efficiency benchmark (docs/benchmarks.md, "Optimizer sample efficiency").

A 16x16 Gabor LNP cell behind fixed-contrast stimuli; one presentation per stimulus; Poisson
counts with T = 0.05, 0.2, 1.0 s and a noise-free control (expected count at T = 1 s); 5,000
presentations; 10 seeds. After each generation: (a) the best clean response among all stimuli
presented so far, (b) the clean response of the optimizer's recommendation. Everything runs
through closedloop's own Neuron / StimulusSpace / Optimizer interfaces (the loop of `evolve`,
without the HDF5 log).

  python benchmarks/sample_efficiency.py            # full: 10 seeds, every optimizer, every cell
  python benchmarks/sample_efficiency.py --quick    # 3 seeds, 3,000 presentations
  python benchmarks/sample_efficiency.py --only best --levels 0.2
  python benchmarks/sample_efficiency.py --cells-only   # the best configuration on other cells
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from closedloop.registry import lookup  # noqa: E402

PIXELS = {"kind": "pixels", "size": 16}
# our best configuration: model-based search in a smooth 1/f Fourier space
BEST_SPACE = {"kind": "fourier", "size": 16, "alpha": 1.0, "max_frequency": 0.3}
BEST_OPTIMIZER = {"kind": "linear_model"}
OPTIMIZERS = {
    "cmaes (pycma defaults)": ({"kind": "cmaes"}, PIXELS),
    "genetic (XDream settings)": ({"kind": "genetic"}, PIXELS),
    "finite_difference": ({"kind": "finite_difference"}, PIXELS),
    "random": ({"kind": "random"}, PIXELS),
    "best: linear_model + fourier": (BEST_OPTIMIZER, BEST_SPACE),
}
LEVELS = {"0.05": (50.0, "poisson"), "0.2": (200.0, "poisson"), "1.0": (1000.0, "poisson"),
          "noise-free": (1000.0, "none")}


def build(role, section, seed, **kwargs):
    section = dict(section)
    cls = lookup(role, section.pop("kind"))
    return cls(cls.Config(**section), seed, **kwargs)


def clean_response(neuron, stimuli):
    """The noise-free response relative to the optimum (1.0), from the neuron's ground truth:
    the LNP cell's expected rate / r_max, or a spiking cell's front-end drive (for the complex
    cell that is the quadrature energy, cos^2)."""
    if hasattr(neuron, "clean_response"):
        return neuron.clean_response(stimuli)
    return neuron.drive(stimuli)


def run_one(job):
    """One optimizer on one cell for one seed: (presentations, best-so-far, recommendation)."""
    neuron_cfg, space_cfg, optimizer_cfg, seed, budget = job
    neuron = build("neuron", neuron_cfg, seed + 1000)
    space = build("space", space_cfg, seed)
    optimizer = build("optimizer", optimizer_cfg, seed, space=space, neuron=neuron)
    used, best, curve_n, curve_a, curve_b = 0, 0.0, [], [], []
    while used + optimizer.popsize <= budget:
        z = optimizer.ask()
        stimuli = space.render(z)
        trials = neuron.present(stimuli, 1)
        optimizer.tell(z, trials.responses.mean(axis=1))
        used += len(z)
        best = max(best, float(np.max(clean_response(neuron, stimuli))))
        recommended = space.render(optimizer.recommend()[None])
        curve_n.append(used)
        curve_a.append(best)
        curve_b.append(float(clean_response(neuron, recommended)[0]))
    return np.array(curve_n), np.array(curve_a), np.array(curve_b)


def at(curve, n, budget):
    """Value of a step curve after n presentations (NaN beyond the run)."""
    ns, values = curve
    if n > budget or not len(ns):
        return np.nan
    i = np.searchsorted(ns, n, side="right") - 1
    return values[i] if i >= 0 else 0.0


def first_reach(ns, values, level):
    hit = np.nonzero(values >= level)[0]
    return ns[hit[0]] if len(hit) else np.inf


def summarise(curves, budget, checkpoints):
    """Medians over seeds of metric a and b at the checkpoints, and presentations to 0.9/0.95."""
    out = {}
    for metric, col in (("a", 1), ("b", 2)):
        out[metric] = [float(np.median([at((c[0], c[col]), n, budget) for c in curves])) for n in checkpoints]
        for level in (0.9, 0.95):
            reach = [first_reach(c[0], c[col], level) for c in curves]
            out[f"{metric}{level}"] = (float(np.median(reach)), int(np.sum(np.isfinite(reach))))
    return out


def fmt_reach(pair, seeds):
    median, hits = pair
    text = "never" if not np.isfinite(median) else f"{median:,.0f}"
    return f"{text} ({hits}/{seeds})"


def table(results, levels, checkpoints, seeds, metric):
    cps = " / ".join(f"{n:,}" for n in checkpoints)
    head = " | ".join(f"T = {lv} s" if lv != "noise-free" else "noise-free" for lv in levels)
    lines = [f"metric ({metric}) median of {seeds} seeds at {cps} presentations; "
             f"noise-free: also presentations to 0.90 / 0.95 (seeds reaching)",
             f"| optimizer (space) | {head} | noise-free to 0.90 / 0.95 |",
             "|---|" + "---|" * (len(levels) + 1)]
    for name, by_level in results.items():
        cells = [" / ".join(f"{v:.2f}".lstrip("0") if np.isfinite(v) else "-" for v in by_level[lv][metric])
                 for lv in levels]
        nf = by_level.get("noise-free")
        reach = (f"{fmt_reach(nf[f'{metric}0.9'], seeds)} / {fmt_reach(nf[f'{metric}0.95'], seeds)}"
                 if nf else "-")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {reach} |")
    return lines


def cell(window, noise, **extra):
    return {"kind": "lnp", "size": 16, "window": window, "noise": noise, **extra}


def run_jobs(jobs, workers):
    if workers <= 1:
        return [run_one(j) for j in jobs]
    with ProcessPoolExecutor(workers) as pool:
        return list(pool.map(run_one, jobs, chunksize=1))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 3,000 presentations")
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--budget", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", choices=["all", "best", "peers"], default="all")
    parser.add_argument("--levels", nargs="*", default=list(LEVELS), choices=list(LEVELS))
    parser.add_argument("--no-cells", action="store_true", help="skip the other cells (Brian2, complex, DoG)")
    parser.add_argument("--names", default="", help="comma-separated substrings: only these optimizers")
    parser.add_argument("--cells-only", action="store_true", help="only the other cells")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    budget = args.budget or (3000 if args.quick else 5000)
    checkpoints = [n for n in (1000, 3000, 5000) if n <= budget]
    if args.cells_only:
        other_cells(seeds, budget, args.workers)
        return
    names = [n for n in OPTIMIZERS if args.only == "all" or (args.only == "best") == n.startswith("best")]
    if args.names:
        names = [n for n in names if any(part in n for part in args.names.split(","))]
    start = time.time()
    jobs, keys = [], []
    for name in names:
        opt, space = OPTIMIZERS[name]
        for level in args.levels:
            window, noise = LEVELS[level]
            for seed in range(seeds):
                jobs.append((cell(window, noise), space, opt, seed, budget))
                keys.append((name, level))
    curves = run_jobs(jobs, args.workers)
    results = {}
    for name in names:
        results[name] = {}
        for level in args.levels:
            mine = [c for c, k in zip(curves, keys) if k == (name, level)]
            results[name][level] = summarise(mine, budget, checkpoints)
    print(f"# LNP Gabor cell, {seeds} seeds, budget {budget:,}; {time.time() - start:.0f} s")
    for metric in ("a", "b"):
        print("\n".join(table(results, args.levels, checkpoints, seeds, metric)))
        print()
    if args.only != "peers" and not args.no_cells:
        other_cells(seeds, budget, args.workers)


def spiking_or_lnp(front_end, fallback):
    """A Brian2 cell with the given front end, or the LNP stand-in where this checkout lacks it."""
    section = {"kind": "spiking", "front_end": front_end}
    try:
        build("neuron", section, 0)
        return f"Brian2 LIF, {front_end['kind']} front end", section
    except Exception as exc:  # the front end is not in this checkout (pydantic or ValueError)
        print(f"# spiking front end {front_end['kind']!r} unavailable ({type(exc).__name__}); using LNP {fallback}")
        return f"LNP {fallback}", cell(200.0, "poisson", **fallback)


def other_cells(seeds, budget, workers):
    """The best configuration on cells it was not tuned on: LNP cells at T = 0.2 s with random
    smooth fields, and the Brian2 LIF cell (200 ms window) with Gabor, complex and DoG front ends."""
    cells = dict([
        ("LNP random smooth field (field_seed 1)", cell(200.0, "poisson", field="random", field_seed=1)),
        ("LNP random smooth field (field_seed 2)", cell(200.0, "poisson", field="random", field_seed=2)),
        ("LNP complex cell (energy model)", cell(200.0, "poisson", model="energy")),
        ("LNP centre-surround (DoG)", cell(200.0, "poisson", field="dog")),
        ("Brian2 LIF, gabor front end", {"kind": "spiking"}),
        spiking_or_lnp({"kind": "complex"}, {"model": "energy"}),
        spiking_or_lnp({"kind": "dog"}, {"field": "dog"}),
    ])
    spiking_seeds, spiking_budget = min(seeds, 5), min(budget, 3000)
    build("neuron", {"kind": "spiking"}, 0).present(np.zeros((20, 16, 16)), 1)  # compile once, before the pool
    start = time.time()
    jobs, keys = [], []
    for name, neuron in cells.items():
        brian = neuron["kind"] == "spiking"
        for seed in range(spiking_seeds if brian else seeds):
            jobs.append((neuron, BEST_SPACE, BEST_OPTIMIZER, seed, spiking_budget if brian else budget))
            keys.append(name)
    curves = run_jobs(jobs, workers)
    print(f"# best configuration on other cells ({time.time() - start:.0f} s): LNP cells T = 0.2 s, {seeds} seeds, "
          f"{budget:,} presentations; Brian2 cells {spiking_seeds} seeds, {spiking_budget:,} presentations")
    print("| cell | (a) at 1,000 / 3,000 / 5,000 | (b) at 1,000 / 3,000 / 5,000 | (a) to 0.90 | (b) to 0.90 |")
    print("|---|---|---|---|---|")
    for name, neuron in cells.items():
        n_budget = spiking_budget if neuron["kind"] == "spiking" else budget
        mine = [c for c, k in zip(curves, keys) if k == name]
        s = summarise(mine, n_budget, [1000, 3000, 5000])
        a = " / ".join(f"{v:.2f}" if np.isfinite(v) else "-" for v in s["a"])
        b = " / ".join(f"{v:.2f}" if np.isfinite(v) else "-" for v in s["b"])
        print(f"| {name} | {a} | {b} | {fmt_reach(s['a0.9'], len(mine))} | {fmt_reach(s['b0.9'], len(mine))} |")


if __name__ == "__main__":
    main()
