"""Wall time of every shipped protocol, run from its YAML through the CLI as a user would.

    PYTHONPATH=$PWD .venv/bin/python benchmarks/protocols.py [--figures docs/figures]

Runs protocols/{tuning,reverse-correlation,fooling,repeatability}.yaml, and fooling a second
time against the quickstart's evolved optimum (threshold_fraction 0.5, its evolved stimuli
shown for contrast); prints each run's wall time (including interpreter start-up and
analysis) and its key numbers. With --figures, copies each analysis figure there for the tour.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RUNS = [
    ("tuning", "tuning.yaml", [], "tuning.png"),
    ("reverse_correlation", "reverse-correlation.yaml", [], "reverse_correlation.png"),
    ("fooling", "fooling.yaml", [], "fooling.png"),
    ("repeatability", "repeatability.yaml", [], "repeatability.png"),
    ("quickstart (reference for fooling)", "quickstart.yaml", [], None),
    ("fooling vs evolved optimum", "fooling.yaml",
     ["--set", "threshold=null", "--set", "threshold_fraction=0.5", "--set", "reference_run={quickstart}"],
     "fooling.png"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=Path, help="copy the figures here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        logs = {"quickstart": tmp / "quickstart.h5"}
        for name, protocol, extra, figure in RUNS:
            out = tmp / f"{name.split()[0]}.h5" if "quickstart" not in name else logs["quickstart"]
            if name.startswith("fooling vs"):
                out = tmp / "fooling-evolved.h5"
            command = [sys.executable, "-m", "closedloop.cli", "run", str(ROOT / "protocols" / protocol),
                       "--out", str(out), "--overwrite", "-q", *[a.format(**logs) for a in extra]]
            start = time.perf_counter()
            result = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
            seconds = time.perf_counter() - start
            if result.returncode:
                print(f"{name}: FAILED\n{result.stderr}")
                return 1
            summary = [line for line in result.stdout.splitlines() if not line.startswith(("log:", "figure:", "report:"))]
            print(f"## {name}: {seconds:.1f} s wall (run + analysis)")
            for line in summary:
                print(f"    {line}")
            if args.figures and figure:
                args.figures.mkdir(parents=True, exist_ok=True)
                shutil.copy(out.with_suffix("") / figure, args.figures / figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
