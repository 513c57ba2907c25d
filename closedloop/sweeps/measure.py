"""The numbers a sweep keeps of each finished run, read back from its log."""

from __future__ import annotations

import math

import numpy as np

from closedloop import protocol as protocol_module
from closedloop.analysis.plots import correlation
from closedloop.recording import open_run

METRICS = ("status", "best_response", "best_clean_response", "fraction_of_optimum", "rf_correlation",
           "recommended_rf_correlation", "presentations", "generations", "wall_time")


def measure(path, text: str | None = None) -> dict:
    """Final best (measured and clean) response, fraction of the known optimum, correlation of the
    best stimulus and of the last recommendation with the true receptive field, cost. `text`: the
    run's protocol as the sweep made it; without it the log's own, which may import no code."""
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
        # the sweep's own protocol (which may import the user's code), else the log's, which may not
        build = (protocol_module.parse(text, str(path), directory=run.protocol_dir or None).build if text is not None
                 else run.build)
        rf, best_image = run.receptive_field, None
        if rf is not None and best >= 0:  # -1: a fixed set of stimuli (tuning, ...) names no best
            best_image = run.rendered([best])[0]
            recommended = build("space").render(run.recommended[-1][None].astype(np.float64))[0]
            if best_image.shape == rf.shape:
                row["rf_correlation"] = correlation(best_image, rf)
                row["recommended_rf_correlation"] = correlation(recommended, rf)
            else:
                best_image = None
        row["fraction_of_optimum"] = _fraction_of_optimum(run, build, of_best, row["best_clean_response"],
                                                          best_image)
    return row


def _fraction_of_optimum(run, build, of_best, best_clean: float, best_image) -> float:
    """Where the neuron knows its clean response: best clean over the neuron's logged
    `optimum_response`, or over its clean response to its own receptive field shown at the
    contrast of the best stimulus (the optimum of a linear-nonlinear cell under fixed contrast).
    Otherwise the 'drive' state column, which the Brian2 cell scales to 1.0 at that optimum."""
    known = run.ground_truth()
    if math.isfinite(best_clean):
        if "optimum_response" in known:
            optimum = float(np.asarray(known["optimum_response"]).ravel()[0])
            return best_clean / optimum if optimum else math.nan
        if best_image is not None:
            rf = run.receptive_field
            scale = np.sqrt(np.mean(best_image**2) / np.mean(rf**2))
            optimum = float(build("neuron").present((rf * scale)[None], 1).clean[0, 0])
            if math.isfinite(optimum) and optimum > 0:
                return best_clean / optimum
    if "drive" in of_best and len(of_best):
        return float(of_best["drive"].mean())
    return math.nan

