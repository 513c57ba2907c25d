"""CMA-ES through pycma, driven by ask/tell.

`sphere: true` is for spaces whose rendering ignores the latent's scale (a fixed contrast):
there plain CMA-ES's mean drifts outwards (the radial part of each step is unselected noise),
so its angular step shrinks like 1/sqrt(generations) whatever sigma does. With `sphere` each
sample keeps only the part of its step tangent to the sphere through the mean, and the mean is
put back on the sphere of the prior's typical norm, sqrt(dim), after each update; sigma is
then the angular step (in radians, roughly) and CMA-ES's own step-size control sets it,
capped at the prior's scale, where a tangent step is already 45 degrees. On the face logit
this makes the result insensitive to sigma0 (0.1-1) but, seed for seed, no better than plain
pycma with `sigma0: 10`, whose drift acts as an annealing schedule (docs/benchmarks.md).
Off by default: `cmaes` alone is plain pycma.
"""

from __future__ import annotations

import cma
import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer, onto_sphere
from closedloop.registry import register


class CMAESSettings(Settings):
    popsize: int | None = Field(None, ge=2, le=100_000, description="stimuli per generation; default pycma's 4 + 3 ln(dim)")
    sigma0: float = Field(1.0, gt=0, le=100, description="initial step size, in units of the prior's standard deviation")
    sphere: bool = Field(False, description="search directions only, on a sphere (for spaces that ignore the latent's scale)")
    diagonal: bool = Field(False, description="sep-CMA-ES: a diagonal covariance, learned about dim/3 times "
                           "faster")


@register("optimizer", "cmaes")
class CMAES(Optimizer):
    Config = CMAESSettings
    status_columns = ("sigma",)
    proposes_given = True  # pycma's inject: the next ask() holds them, and they count in the update
    tells_answer_asks = True  # pycma's tell closes the generation its ask opened

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        rng = self.rng(0)
        x0 = space.sample(rng, 1)[0]
        self.sphere = config.sphere
        if self.sphere and not space.scale_invariant:
            raise ValueError(f"sphere: the {space.kind!r} space's rendering depends on the latent's scale")
        self.radius = float(np.sqrt(self.dim))
        if self.sphere:
            x0 = onto_sphere(x0, self.radius)
        options = {
            "seed": np.nan,  # never touch numpy's global generator ...
            "randn": lambda *shape: rng.standard_normal(shape),  # ... draw from our own instead
            "verbose": -9,
            "verb_log": 0,
            "verb_disp": 0,
            "tolfun": 0, "tolfunhist": 0, "tolflatfitness": np.inf, "tolx": 0, "tolstagnation": np.inf,
        }
        if self.sphere:
            options["maxstd"] = 1.0  # a step beyond the prior's scale is nearly orthogonal
        if config.diagonal:
            options["CMA_diagonal"] = True
        if config.popsize:
            options["popsize"] = config.popsize
        self.es = cma.CMAEvolutionStrategy(x0, config.sigma0, options)
        self.popsize = self.es.popsize

    def inject(self, z):
        self.es.inject(list(np.asarray(z, dtype=np.float64)), force=True)

    def ask(self):
        z = np.asarray(self.es.ask())
        if self.sphere:  # keep the tangential part of each step: no radial move is ever made
            direction = self.es.mean / np.linalg.norm(self.es.mean)
            z = z - np.outer((z - self.es.mean) @ direction, direction)
        return z

    def tell(self, z, scores):
        self.es.tell(list(np.asarray(z, dtype=np.float64)), list(-np.asarray(scores, dtype=np.float64)))
        if self.sphere:
            norm = float(np.linalg.norm(self.es.mean))
            if norm > 0:
                self.es.mean *= self.radius / norm  # in place: pycma keeps views of it
                self.es.mean_after_tell[:] = self.es.mean

    def recommend(self):
        return np.asarray(self.es.mean)

    def status(self):
        return {"sigma": float(self.es.sigma)}
