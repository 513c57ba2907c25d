"""CMA-ES through pycma, driven by ask/tell."""

from __future__ import annotations

import cma
import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class CMAESSettings(Settings):
    popsize: int | None = Field(None, ge=2, description="stimuli per generation; default pycma's 4 + 3 ln(dim)")
    sigma0: float = Field(1.0, gt=0, description="initial step size, in units of the prior's standard deviation")


@register("optimizer", "cmaes")
class CMAES(Optimizer):
    Config = CMAESSettings
    status_columns = ("sigma",)

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        rng = self.rng(0)
        x0 = space.sample(rng, 1)[0]
        options = {
            "seed": np.nan,  # never touch numpy's global generator ...
            "randn": lambda *shape: rng.standard_normal(shape),  # ... draw from our own instead
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "tolfun": 0, "tolfunhist": 0, "tolflatfitness": np.inf, "tolx": 0, "tolstagnation": np.inf,
        }
        if config.popsize:
            options["popsize"] = config.popsize
        self.es = cma.CMAEvolutionStrategy(x0, config.sigma0, options)
        self.popsize = self.es.popsize

    def inject(self, z):
        self.es.inject(list(np.asarray(z, dtype=np.float64)), force=True)
        return True

    def ask(self):
        return np.asarray(self.es.ask())

    def tell(self, z, scores):
        self.es.tell(list(np.asarray(z)), list(-np.asarray(scores, dtype=np.float64)))

    def recommend(self):
        return np.asarray(self.es.mean)

    def status(self):
        return {"sigma": float(self.es.sigma)}
