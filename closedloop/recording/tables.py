"""Notebook conveniences over a run log: trials joined with stimulus parameters, in one call.

    from closedloop.recording.tables import load_tables
    tables = load_tables("data/tuning.h5")
    tables["trials"].groupby("orientation")["response"].mean()
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from closedloop.recording.reader import Run, open_run


def parameter_names(run: Run) -> list[str]:
    """Names of the latent dimensions when the run's stimuli are parametric (tuning, ...)."""
    return list(run.config.get("space", {}).get("parameters", []))


def trial_table(run: Run) -> pd.DataFrame:
    """One row per presentation with, where the space names them, the stimulus parameters."""
    trials = run.trials.copy()
    names = parameter_names(run)
    if names and len(trials):
        z = run.z
        for k, name in enumerate(names):
            trials[name] = z[trials["stimulus"].to_numpy(), k].astype(np.float64)
    return trials


def load_tables(path) -> dict[str, pd.DataFrame | dict]:
    """Every table of a run log as pandas objects (the file is closed afterwards)."""
    with open_run(path) as run:
        return {"trials": trial_table(run), "generations": run.generations, "z": pd.DataFrame(run.z),
                "config": run.config, "protocol": run.protocol, "kind": run.kind, "status": run.status}
