"""The numbers a sweep keeps of each finished run, read back from its log."""

from __future__ import annotations

import math

import numpy as np

from closedloop import protocol as protocol_module
from closedloop.analysis.plots import correlation
from closedloop.recording import open_run

METRICS = ("status", "best_response", "best_clean_response", "fraction_of_optimum", "rf_correlation",
           "recommended_rf_correlation", "presentations", "generations", "wall_time")


def measure(path) -> dict:
    """Final best (measured and clean) response, fraction of the known optimum, correlation of the
    best stimulus and of the last recommendation with the true receptive field, cost."""
    row = dict.fromkeys(METRICS, math.nan)
    with open_run(path) as run:
        row["status"] = run.status
        generations = run.generations
        if generations.empty:
            return row
        last = generations.iloc[-1]
        best = int(last["best_stimulus"])
        row.update(best_response=float(last["best"]), presentations=int(last["presentations"]),
                   generations=len(generations), wall_time=float(last["wall_time"]))
        trials = run.trials
        of_best = trials[(trials["stimulus"] == best) & (trials["phase"] == "search")]
        clean = of_best["clean"].to_numpy()
        row["best_clean_response"] = float(clean.mean()) if np.isfinite(clean).any() else math.nan
        row["fraction_of_optimum"] = _fraction_of_optimum(run, of_best, row["best_clean_response"])
        rf = run.receptive_field
        if rf is not None:
            space = protocol_module.parse(run.protocol, str(path)).build("space")
            best_image = run.rendered([best])
            best_image = best_image[0] if best_image is not None else space.render(run.z[best][None])[0]
            recommended = space.render(run.recommended[-1][None].astype(np.float64))[0]
            if best_image.shape == rf.shape:
                row["rf_correlation"] = correlation(best_image, rf)
                row["recommended_rf_correlation"] = correlation(recommended, rf)
    return row


def _fraction_of_optimum(run, of_best, best_clean: float) -> float:
    """Clean response over the neuron's known optimum response; else the 'drive' state column,
    which the receptive-field cells scale to 1.0 at their fixed-contrast optimum."""
    known = run.file.get("neuron")
    if known is not None and "optimum_response" in known and math.isfinite(best_clean):
        optimum = float(np.asarray(known["optimum_response"][()]).ravel()[0])
        return best_clean / optimum if optimum else math.nan
    if "drive" in of_best and len(of_best):
        return float(of_best["drive"].mean())
    return math.nan
