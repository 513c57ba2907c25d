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
  python benchmarks/sample_efficiency.py --large        # LNP cells at 64x64 and 128x128, with pycma and the GA
  python benchmarks/sample_efficiency.py --sizes        # cost: optimizer vs simulation ms per presentation, 16-128 px
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
FOURIER = {"kind": "fourier", "size": 16, "alpha": 1.0, "max_frequency": 0.3}
# our default: the model-based search, in the same pixel space as the peers (it brings its own
# learned 1/f prior, in Fourier coordinates); on a 1/f Fourier space it works too
BEST_OPTIMIZER = {"kind": "linear_model"}
BEST_SPACE = PIXELS
OPTIMIZERS = {
    "cmaes (pycma defaults)": ({"kind": "cmaes"}, PIXELS),
    "genetic (XDream settings)": ({"kind": "genetic"}, PIXELS),
    "finite_difference": ({"kind": "finite_difference"}, PIXELS),
    "random": ({"kind": "random"}, PIXELS),
    "nevergrad NGOpt": ({"kind": "nevergrad", "name": "NGOpt"}, PIXELS),
    "nevergrad TwoPointsDE": ({"kind": "nevergrad", "name": "TwoPointsDE"}, PIXELS),
    "best: linear_model (pixels)": (BEST_OPTIMIZER, BEST_SPACE),
    "linear_model (fourier 0.3)": (BEST_OPTIMIZER, FOURIER),
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
    optimizer.plan(budget)  # as evolve does: nevergrad picks its algorithm by the budget
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


def cell(window, noise, size=16, **extra):
    scaled = {"reference_size": 16} if size != 16 else {}
    return {"kind": "lnp", "size": size, "window": window, "noise": noise, **scaled, **extra}


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
    parser.add_argument("--large", action="store_true", help="only the LNP cells at 64x64 and 128x128")
    parser.add_argument("--sizes", action="store_true", help="only the cost: optimizer vs simulation per presentation")
    args = parser.parse_args(argv)
    seeds = args.seeds or (3 if args.quick else 10)
    budget = args.budget or (3000 if args.quick else 5000)
    checkpoints = [n for n in (1000, 3000, 5000) if n <= budget]
    if args.sizes:
        costs(args.budget or 3000)
        return
    if args.large:
        large_images(seeds, args.budget or 3000, args.workers, args.names)
        return
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


def other_cells(seeds, budget, workers):
    """The default on cells it was not tuned on: LNP cells at T = 0.2 s with random smooth fields,
    an energy-model complex cell, a centre-surround field and a fine Gabor (0.22 cycles/pixel),
    and Brian2 LIF cells (200 ms window) behind Gabor, complex and DoG front ends."""
    cells = {
        "LNP random smooth field (field_seed 1)": cell(200.0, "poisson", field="random", field_seed=1),
        "LNP random smooth field (field_seed 2)": cell(200.0, "poisson", field="random", field_seed=2),
        "LNP complex cell (energy model)": cell(200.0, "poisson", model="energy"),
        "LNP centre-surround (DoG)": cell(200.0, "poisson", field="dog"),
        "LNP fine Gabor (0.22 cycles/pixel)": cell(200.0, "poisson", front_end={"spatial_frequency": 0.22}),
        "Brian2 LIF, gabor front end": {"kind": "spiking"},
        "Brian2 LIF, complex front end": {"kind": "spiking", "front_end": {"kind": "complex"}},
        "Brian2 LIF, dog front end": {"kind": "spiking", "front_end": {"kind": "dog"}},
    }
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
    print(f"# the default on other cells ({time.time() - start:.0f} s): LNP cells T = 0.2 s, {seeds} seeds, "
          f"{budget:,} presentations; Brian2 cells {spiking_seeds} seeds, {spiking_budget:,} presentations")
    print("| cell | (a) at 500 / 1,000 / 3,000 / 5,000 | (b) at 500 / 1,000 / 3,000 / 5,000 | (a) to 0.90 | (b) to 0.90 | (a) to 0.95 |")
    print("|---|---|---|---|---|---|")
    for name, neuron in cells.items():
        n_budget = spiking_budget if neuron["kind"] == "spiking" else budget
        mine = [c for c, k in zip(curves, keys) if k == name]
        print(row(name, mine, n_budget, [500, 1000, 3000, 5000]))


def row(name, curves, budget, checkpoints):
    s = summarise(curves, budget, checkpoints)
    a = " / ".join(f"{v:.2f}" if np.isfinite(v) else "-" for v in s["a"])
    b = " / ".join(f"{v:.2f}" if np.isfinite(v) else "-" for v in s["b"])
    n = len(curves)
    return f"| {name} | {a} | {b} | {fmt_reach(s['a0.9'], n)} | {fmt_reach(s['b0.9'], n)} | {fmt_reach(s['a0.95'], n)} |"


def scaled_fourier(size):
    """The 1/f Fourier space whose band scales with the image: the 68 gratings of the 16x16
    space at 0.3 cycles/pixel, whatever the size (the peers' best chance at a large image: pycma
    in 4,096 or 16,384 pixels is out of reach, its covariance alone is 134 MB or 2 GB)."""
    return {"kind": "fourier", "size": size, "alpha": 1.0, "max_frequency": 0.3 * 16 / size}


def large_images(seeds, budget, workers, names=""):
    """LNP Gabor, DoG and energy-model cells scaled to 64x64 and 128x128 (receptive fields scaled
    with the image), T = 0.2 s: the default in pixels, pycma and the GA in the scaled Fourier space."""
    optimizers = {
        "best: linear_model (pixels)": (BEST_OPTIMIZER, lambda size: {"kind": "pixels", "size": size}),
        "cmaes, pycma defaults (scaled fourier, 68 dims)": ({"kind": "cmaes"}, scaled_fourier),
        "genetic, XDream settings (scaled fourier, 68 dims)": ({"kind": "genetic"}, scaled_fourier),
    }
    if names:
        optimizers = {k: v for k, v in optimizers.items() if any(part in k for part in names.split(","))}
    cells = {"Gabor": {}, "DoG": {"field": "dog"}, "energy model": {"model": "energy"}}
    start = time.time()
    jobs, keys = [], []
    for size in (64, 128):
        for cname, extra in cells.items():
            for oname, (opt, space) in optimizers.items():
                for seed in range(seeds):
                    jobs.append((cell(200.0, "poisson", size, **extra), space(size), opt, seed, budget))
                    keys.append((size, cname, oname))
    curves = run_jobs(jobs, workers)
    print(f"# LNP cells scaled to 64x64 and 128x128, T = 0.2 s, {seeds} seeds, {budget:,} presentations "
          f"({time.time() - start:.0f} s)")
    print("| size | cell | optimizer (space) | (a) at 500 / 1,000 / 3,000 | (b) at 500 / 1,000 / 3,000 | (a) to 0.90 | (b) to 0.90 | (a) to 0.95 |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (64, 128):
        for cname in cells:
            for oname in optimizers:
                mine = [c for c, k in zip(curves, keys) if k == (size, cname, oname)]
                print(row(f"{size} | {cname} | {oname}", mine, budget, [500, 1000, 3000]))


def costs(budget):
    """CPU milliseconds per presentation of the default optimizer (ask + tell), of the space's
    rendering and of the cell's simulation, side by side in one run, at 16, 32, 64 and 128 pixels:
    the LNP cell for `budget` presentations, the Brian2 cell for 600 (its C++ binary runs in a
    child process: its CPU time is counted from the children's)."""
    import resource

    def child_seconds():
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    print(f"# cost per presentation, CPU ms (process time; the spiking cell's includes its child processes); "
          f"LNP cell {budget:,} presentations, Brian2 cell 600; generations of 20")
    print("| image | space | held coefficients at the end | optimizer start-up (s) | optimizer ms | render ms | "
          "LNP cell ms | optimizer / LNP | Brian2 cell ms | optimizer / Brian2 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for size in (16, 32, 64, 128):
        for space_cfg in ({"kind": "pixels", "size": size}, {**FOURIER, "size": size}):
            if space_cfg["kind"] == "fourier" and size > 64:
                continue  # its dense basis would take 600 MB at 128x128
            row_cells = []
            for neuron_cfg, presentations in ((cell(200.0, "poisson", size), budget), ({"kind": "spiking", "size": size}, 600)):
                neuron = build("neuron", neuron_cfg, 1000)
                space = build("space", space_cfg, 0)
                t0 = time.process_time()
                optimizer = build("optimizer", BEST_OPTIMIZER, 0, space=space, neuron=neuron)
                startup = time.process_time() - t0
                t_opt = t_render = t_sim = 0.0
                used = 0
                while used + optimizer.popsize <= presentations:
                    t0 = time.process_time()
                    z = optimizer.ask()
                    t1 = time.process_time()
                    stimuli = space.render(z)
                    t2, c2 = time.process_time(), child_seconds()
                    responses = neuron.present(stimuli, 1).responses[:, 0]
                    t3, c3 = time.process_time(), child_seconds()
                    optimizer.tell(z, responses)
                    t4 = time.process_time()
                    t_opt += (t1 - t0) + (t4 - t3)
                    t_render += t2 - t1
                    t_sim += (t3 - t2) + (c3 - c2)
                    used += len(z)
                row_cells.append((startup, 1e3 * t_opt / used, 1e3 * t_render / used, 1e3 * t_sim / used, optimizer.k))
            (s_lnp, o_lnp, r_lnp, sim_lnp, k_lnp), (_, o_spk, _, sim_spk, _) = row_cells
            print(f"| {size}x{size} | {space_cfg['kind']} ({space.dim} dims) | {k_lnp} | {s_lnp:.2f} | {o_lnp:.3f} | "
                  f"{r_lnp:.3f} | {sim_lnp:.3f} | {o_lnp / sim_lnp:.1f} | {sim_spk:.3f} | {o_spk / sim_spk:.2f} |", flush=True)


if __name__ == "__main__":
    main()
