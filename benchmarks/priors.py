"""Prior strength against the unit's score against what independent judges say of its best image.

For the face unit (MTCNN O-Net, p(face)) and the digit unit (class-3 logit of the zoo's digits
CNN), a black-box CMA-ES search of 3,000 presentations in each stimulus space below, seeds given
on the command line; the run's best stimulus (highest response, earliest on ties: the one the
evolve analysis reports) is shown to the judges (closedloop/judges), which the search never sees.
Each row: the space, its prior strength, per seed the unit's score of the best stimulus and
whether every judge accepts it, and the count of seeds it meets the goal in (face: score >= 0.99
and both face judges accept; digit: the judge calls it a 3, or the digit of `--digit`). Writes a
markdown table and a figure:

    PYTHONPATH=$PWD python benchmarks/priors.py --seeds 0 1 2 3 4 --workers 2 \
        --table docs/figures/priors.md --figure docs/figures/priors.png

The protocols' settings were chosen on seeds 10-14 and checked on fresh seeds: face-cell-prior's
128 components on 20-24; digit-cell-strokes.yaml's page on 20-24, and its population, chosen
after a look at seeds 0-4, on 30-34 (docs/tour.md says how). `--units digit --digit K --only
"popsize 24" --seeds 0` runs the stroke prior on another digit's unit, which chose nothing;
`--control N` shows what the digit judge reads in a setting's prior draws before any search.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from multiprocessing import Pool
from pathlib import Path

import numpy as np
import yaml

FACE = {"kind": "dnn", "model": "face", "unit": "face_probability"}
DIGIT = {"kind": "dnn", "model": "digits", "unit": "class3"}
# the stroke space's settings (strokes, control points per stroke, pen width, margin: one number
# or [left and right, top and bottom]), with pycma's population; digit-cell-strokes.yaml's follows
STROKES = [(2, 4, 0.12, 0.1), (2, 4, 0.18, 0.1), (3, 4, 0.18, 0.1), (2, 5, 0.2, [0.25, 0.1]),
           (3, 4, 0.2, [0.25, 0.1]), (3, 4, 0.15, [0.25, 0.1]), (3, 4, 0.2, [0.3, 0.1]),
           (2, 4, 0.2, [0.3, 0.1])]
# (unit, label, prior strength, space, optimizer); the first of each unit is the shipped
# protocol without a natural prior (face-cell.yaml, digit-cell.yaml)
SETTINGS = [
    ("face", "1/f gratings (face-cell.yaml)", "none",
     {"kind": "color_fourier", "size": 48, "channels": 3, "max_frequency": 0.0625, "contrast": 0.25},
     {"kind": "cmaes", "sigma0": 10}),
    *[("face", f"natural_pca, {k} components", str(k),
       {"kind": "natural_pca", "size": 48, "channels": 3, "resolution": 16, "components": k},
       {"kind": "cmaes", "sigma0": 1}) for k in (256, 128, 64, 32, 16)],
    ("face", "natural_pca, 64, decay 0.05, blur 1 px", "64 + reg",
     {"kind": "natural_pca", "size": 48, "channels": 3, "resolution": 16, "components": 64},
     {"kind": "regularized", "search": {"kind": "cmaes", "sigma0": 1}, "decay": 0.05, "blur_sigma": 1.0}),
    ("digit", "pixels (digit-cell.yaml)", "none",
     {"kind": "color_pixels", "size": 8, "channels": 1, "contrast": 0.3},
     {"kind": "cmaes", "popsize": 16, "sigma0": 10}),
    *[("digit", f"natural_pca, {k} components", str(k),
       {"kind": "natural_pca", "size": 8, "channels": 1, "resolution": 8, "components": k},
       {"kind": "cmaes", "sigma0": 1}) for k in (64, 32, 16, 8, 4)],
    ("digit", "natural_pca, 16, decay 0.1", "16 + reg",
     {"kind": "natural_pca", "size": 8, "channels": 1, "resolution": 8, "components": 16},
     {"kind": "regularized", "search": {"kind": "cmaes", "sigma0": 1}, "decay": 0.1}),
    *[("digit", f"strokes, {n} x {p} points, width {w}, margin {m}",
       f"{n}x{p}, {w}" + (", tall" if m != 0.1 else ""),
       {"kind": "strokes", "size": 8, "strokes": n, "points": p, "width": w, "margin": m},
       {"kind": "cmaes", "sigma0": 1}) for n, p, w, m in STROKES],
    ("digit", "strokes, 3 x 4 points, width 0.2, margin [0.3, 0.1], popsize 24", "3x4, 0.2, tall, pop 24",
     {"kind": "strokes", "size": 8, "strokes": 3, "points": 4, "width": 0.2, "margin": [0.3, 0.1]},
     {"kind": "cmaes", "sigma0": 1, "popsize": 24}),
]
GOAL = {"face": "p(face) >= 0.99 and both face judges accept", "digit": "the digit judge calls it a {digit}"}


def run_one(job) -> dict:
    from closedloop import protocol as protocol_module
    from closedloop.judges import judges_for
    from closedloop.recording import open_run

    index, seed, budget, directory, digit = job
    unit, label, strength, space, optimizer = SETTINGS[index]
    neuron = FACE if unit == "face" else {**DIGIT, "unit": f"class{digit}"}
    data = {"kind": "evolve", "seed": seed, "neuron": neuron, "space": space,
            "optimizer": optimizer, "generations": None, "budget": budget, "record_rendered": False}
    protocol = protocol_module.parse(yaml.safe_dump(data, sort_keys=False), f"{unit}-{index}-{seed}")
    path = Path(directory) / f"{unit}-{index}-{seed}.h5"
    started = time.perf_counter()
    protocol.experiment_cls(protocol).run(path, progress=False)
    with open_run(path) as run:
        means = run.stimulus_means()["mean"].sort_values(ascending=False, kind="stable")
        best = int(means.index[0])
        image = run.rendered([best])[0]
        category, expected = run.claim
        verdicts = {judge.kind: judge.judge(image[None], expected)[0] for judge in judges_for(category)}
        presentations = int(run.generations["presentations"].iloc[-1])
    score = float(means.iloc[0])
    every = all(v.accepted for v in verdicts.values())
    goal = every and (score >= 0.99 if unit == "face" else True)
    return {"index": index, "seed": seed, "score": score, "accepted": {k: v.accepted for k, v in verdicts.items()},
            "heard": {k: v.heard for k, v in verdicts.items()}, "every": every, "goal": goal, "image": image,
            "presentations": presentations, "seconds": time.perf_counter() - started}


def control(index: int, count: int) -> str:
    """What the digit judge reads in `count` draws of the setting's prior, before any search."""
    from closedloop.judges.digit_svm import ink, read
    from closedloop.registry import lookup

    settings = dict(SETTINGS[index][3])
    cls = lookup("space", settings.pop("kind"))
    space = cls(cls.Config(**settings), 0)
    classes, closeness = read(ink(space.render(space.sample(np.random.default_rng(0), count))))
    read_as = np.bincount(classes[closeness <= 1], minlength=10)
    return (f"{SETTINGS[index][1]}: {np.mean(closeness <= 1):.3f} of {count} prior draws pass as a digit; as each "
            f"digit 0-9: {' '.join(map(str, read_as))}")


def table(results, seeds, digit=3) -> str:
    lines = []
    for unit in ("face", "digit"):
        rows = [i for i, s in enumerate(SETTINGS) if s[0] == unit]
        if not any(r["index"] in rows for r in results):
            continue
        score = "p(face)" if unit == "face" else f"class-{digit} logit"
        goal = GOAL[unit].format(digit=digit)
        lines += [f"**{unit} unit** — goal: {goal}; per seed ({', '.join(map(str, seeds))}): "
                  f"{score} of the best image, then the judges' verdicts", "",
                  "| space | components | " + " | ".join(f"seed {s}" for s in seeds) + " | goal met |",
                  "| --- | --- | " + " | ".join("---" for _ in seeds) + " | --- |"]
        for i in rows:
            found = {r["seed"]: r for r in results if r["index"] == i}
            if not found:
                continue
            cells = []
            for s in seeds:
                r = found.get(s)
                if r is None:
                    cells.append("")
                    continue
                said = " ".join(f"{k.split('_')[0]}:{'yes' if a else 'no'}" for k, a in r["accepted"].items())
                if unit == "digit":
                    said = f"judge: {next(iter(r['heard'].values()))}"
                cells.append(f"{r['score']:.4g} {said}")
            met = sum(r["goal"] for r in found.values())
            lines.append(f"| {SETTINGS[i][1]} | {SETTINGS[i][2]} | " + " | ".join(cells) + f" | {met} of {len(found)} |")
        lines.append("")
    return "\n".join(lines)


def figure(results, seeds, path, digit=3):
    from closedloop.analysis.plots import figure, save, show_image

    units = [u for u in ("face", "digit") if any(SETTINGS[r["index"]][0] == u for r in results)]
    ran = {r["index"] for r in results}
    rows = [[i for i, s in enumerate(SETTINGS) if s[0] == u and i in ran] for u in units]
    height = 1.15 * sum(map(len, rows)) + 1.0 * len(units)
    fig = figure(figsize=(1.1 * len(seeds) + 3.6, height))
    outer = fig.add_gridspec(len(units), 1, height_ratios=[len(r) for r in rows], hspace=0.6 / len(units),
                             top=1 - 0.55 / height, bottom=0.01)
    for u, (unit, settings) in enumerate(zip(units, rows)):
        grid = outer[u].subgridspec(len(settings), len(seeds) + 2, width_ratios=[1] * len(seeds) + [0.2, 2.6],
                                    wspace=0.05, hspace=0.35)
        for row, i in enumerate(settings):
            found = {r["seed"]: r for r in results if r["index"] == i}
            for col, seed in enumerate(seeds):
                ax = fig.add_subplot(grid[row, col])
                r = found.get(seed)
                if r is None:
                    ax.axis("off")
                    continue
                show_image(ax, r["image"], f"{r['score']:.3g}" if unit == "face" else f"{r['score']:.1f}")
                for side in ax.spines.values():
                    side.set_color("tab:green" if r["goal"] else "tab:red")
                    side.set_linewidth(2.5)
                if col == 0:
                    ax.set_ylabel(SETTINGS[i][2] if SETTINGS[i][2] != "none" else "no\nprior", fontsize=8)
            ax = fig.add_subplot(grid[row, -1])
            met = sum(r["goal"] for r in found.values())
            accepted = {k: sum(r["accepted"][k] for r in found.values()) for k in next(iter(found.values()))["accepted"]}
            text = f"{SETTINGS[i][1]}\ngoal met: {met} of {len(found)}\n" + \
                   ", ".join(f"{k}: {n}" for k, n in accepted.items())
            ax.text(0, 0.5, text, fontsize=7, va="center")
            ax.axis("off")
        fig.text(0.01, outer[u].get_position(fig).y1 + 0.3 / height,
                 f"{unit} unit: best image per seed (score above; green frame: goal met — "
                 f"{GOAL[unit].format(digit=digit)})", fontsize=8)
    save(fig, path)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--budget", type=int, default=3000)
    parser.add_argument("--units", nargs="+", default=["face", "digit"], choices=["face", "digit"])
    parser.add_argument("--digit", type=int, default=3, choices=range(10), help="the digit unit's class")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--only", help="run only the settings whose label contains this text")
    parser.add_argument("--control", type=int, metavar="N", help="instead of searching, show N prior draws of "
                        "each chosen digit setting to the digit judge: what it reads in the space before any search")
    parser.add_argument("--table", type=Path)
    parser.add_argument("--figure", type=Path)
    args = parser.parse_args()
    chosen = [i for i, s in enumerate(SETTINGS) if s[0] in args.units and (args.only is None or args.only in s[1])]
    if args.control:
        for i in chosen:
            if SETTINGS[i][0] == "digit":
                print(control(i, args.control), flush=True)
        return
    with tempfile.TemporaryDirectory() as directory:
        jobs = [(i, seed, args.budget, directory, args.digit) for i in chosen for seed in args.seeds]
        with Pool(args.workers) as pool:
            results = []
            for r in pool.imap_unordered(run_one, jobs):
                results.append(r)
                print(f"{SETTINGS[r['index']][1]:<34} seed {r['seed']:>3}: score {r['score']:.5g}, "
                      f"{r['heard']}, goal {'met' if r['goal'] else 'missed'} ({r['seconds']:.0f} s)", flush=True)
    text = table(results, args.seeds, args.digit)
    print(text)
    if args.table:
        args.table.write_text(text + "\n")
    if args.figure:
        figure(results, args.seeds, args.figure, args.digit)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
