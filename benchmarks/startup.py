"""How long a warm quickstart takes, and how much of it is spent importing modules, beside the same
figures for a baseline revision measured in the same run (so a shared, noisy machine affects both).

    .venv/bin/python benchmarks/startup.py [--baseline REV] [--repeats 3]

The baseline is checked out with `git worktree` into a temporary folder and run with this
checkout's virtual environment (PYTHONPATH puts its package first). Each revision gets its own
cache (compiled Brian2 programs, trained weights), warmed by one run that is not counted; then
the runs alternate between the revisions. Import time is the sum of the top-level entries of
`python -X importtime`; wall time is measured on separate runs without it.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE_ISSUE_11 = "2cff144"  # main before "one way to do each thing" (issue 11)
COMMAND = ["-m", "closedloop.cli", "run", "protocols/quickstart.yaml", "-q", "--overwrite"]


def run_once(tree: Path, cache: Path, out: Path, importtime: bool) -> tuple[float, float]:
    """(wall seconds, import seconds) of one quickstart run from `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree), "CLOSEDLOOP_CACHE": str(cache)}
    flags = ["-X", "importtime"] if importtime else []
    start = time.perf_counter()
    result = subprocess.run([sys.executable, *flags, *COMMAND, "--out", str(out)], cwd=tree, env=env,
                            capture_output=True, text=True)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        raise SystemExit(f"quickstart failed in {tree}:\n{result.stderr[-3000:]}")
    top_level = re.findall(r"^import time:\s+\d+ \|\s+(\d+) \| \S", result.stderr, re.MULTILINE)
    return wall, sum(int(us) for us in top_level) / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default=BEFORE_ISSUE_11, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="closedloop-startup-") as scratch:
        scratch = Path(scratch)
        baseline = scratch / "baseline"
        subprocess.run(["git", "worktree", "add", "--detach", str(baseline), args.baseline], cwd=ROOT, check=True,
                       capture_output=True)
        try:
            trees = {"this checkout": ROOT, f"baseline {args.baseline}": baseline}
            figures = {name: {"wall": [], "imports": [], "wall_importtime": []} for name in trees}
            for name, tree in trees.items():  # warm the caches (compiled programs, weights)
                run_once(tree, scratch / f"cache-{tree.name}", scratch / f"{tree.name}.h5", False)
            for _ in range(args.repeats):
                for name, tree in trees.items():
                    cache, out = scratch / f"cache-{tree.name}", scratch / f"{tree.name}.h5"
                    figures[name]["wall"].append(run_once(tree, cache, out, False)[0])
                    wall, imports = run_once(tree, cache, out, True)
                    figures[name]["wall_importtime"].append(wall)
                    figures[name]["imports"].append(imports)
        finally:
            subprocess.run(["git", "worktree", "remove", "--force", str(baseline)], cwd=ROOT, capture_output=True)
    print(f"warm quickstart, median of {args.repeats} runs each (interleaved)")
    print(f"{'revision':<24} {'wall s':>8} {'imports s':>10} {'import share':>13}")
    rows = {}
    for name, f in figures.items():
        wall, imports = statistics.median(f["wall"]), statistics.median(f["imports"])
        share = statistics.median(i / w for i, w in zip(f["imports"], f["wall_importtime"]))
        rows[name] = wall
        print(f"{name:<24} {wall:8.2f} {imports:10.2f} {share:13.0%}")
    this, base = rows["this checkout"], rows[f"baseline {args.baseline}"]
    print(f"wall time, this checkout / baseline: {this / base:.2f}")


if __name__ == "__main__":
    main()
