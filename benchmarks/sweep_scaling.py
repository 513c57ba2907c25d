"""Wall time of one sweep run serially (1 worker) and on N local worker processes.

    PYTHONPATH=$PWD python benchmarks/sweep_scaling.py protocols/sweep-noise.yaml --workers 1 2

Each worker count runs the whole sweep into a fresh temporary directory; the summaries must
agree run for run (same protocol and seed -> same log, whichever process ran it).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

from closedloop import protocol as protocol_module


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", nargs="?", default="protocols/sweep-noise.yaml")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--keep", metavar="DIR", help="run the last worker count into DIR and keep its logs and summary")
    args = parser.parse_args()
    protocol = protocol_module.load(args.sweep)
    experiment = protocol.experiment_cls(protocol)
    print(f"{args.sweep}: {len(experiment.runs)} runs, {os.cpu_count()} cores")
    print(f"{'workers':>7} {'wall time (s)':>14} {'sum of run times (s)':>21} {'CPU s / wall s':>15} "
          f"{'load avg before/after':>22}")
    tables, times = [], {}
    for k, workers in enumerate(args.workers):
        keep = args.keep if k == len(args.workers) - 1 else None
        if keep and os.path.exists(keep):
            raise SystemExit(f"{keep}: exists; the timed sweep must start from nothing")
        with tempfile.TemporaryDirectory(prefix="sweep-bench-") as scratch:
            out = keep or scratch
            load_before = os.getloadavg()[0]
            started = time.perf_counter()
            summary = experiment.run(out, progress=False, workers=workers)
            elapsed = time.perf_counter() - started
            load_after = os.getloadavg()[0]
        if summary["status"] != "complete":
            raise SystemExit(f"{summary['failed']} runs did not complete")
        times[workers] = elapsed
        table = summary["table"]
        tables.append(table)
        print(f"{workers:>7} {elapsed:>14.1f} {table['wall_time'].sum():>21.1f} "
              f"{table['cpu_time'].sum() / elapsed:>15.2f} "
              f"{load_before:>10.1f} / {load_after:<9.1f}", flush=True)
    if 1 in times:
        for workers, elapsed in times.items():
            if workers != 1:
                print(f"speed-up of {workers} workers over 1: {times[1] / elapsed:.2f}x")
    for table in tables[1:]:
        same = np.array_equal(table["best_response"], tables[0]["best_response"]) and np.allclose(
            table["rf_correlation"], tables[0]["rf_correlation"], equal_nan=True)
        print(f"results identical to the first worker count: {same}")
    keys = ["optimizer", *(k for k in experiment.settings.grid if k.split(".")[0] != "optimizer")]
    means = tables[0].groupby(keys)[["rf_correlation", "recommended_rf_correlation"]].mean()
    print("mean over seeds:")
    print(means.round(3).to_string())


if __name__ == "__main__":
    main()
