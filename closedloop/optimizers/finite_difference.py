"""Finite-difference gradient ascent from responses alone.

Each generation probes the current point along `pairs` random directions, once on each side
(antithetic pairs), estimates the gradient from the response differences, and steps along it.
The step is normalised by the spread of the responses, so it does not depend on their scale.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class FiniteDifferenceSettings(Settings):
    pairs: int = Field(10, ge=1, le=10_000, description="antithetic probe pairs per generation")
    radius: float = Field(0.5, gt=0, le=100, description="probe distance, relative to the norm of the current point")
    learning_rate: float = Field(0.3, gt=0, le=100, description="step length, relative to the norm of the current point")


@register("optimizer", "finite_difference")
class FiniteDifference(Optimizer):
    Config = FiniteDifferenceSettings
    learns_from_any_stimulus = False  # its probes / its ascent start from its own point
    tells_answer_asks = True  # the scores of its probe pairs, in the order asked
    status_columns = ("gradient_norm",)

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        self.random = self.rng(0)
        self.x = space.sample(self.random, 1)[0]
        self.popsize = 2 * config.pairs
        self.gradient_norm = 0.0

    def _scale(self):
        return np.linalg.norm(self.x) or 1.0

    def ask(self):
        u = self.random.standard_normal((self.config.pairs, self.dim))
        u /= np.linalg.norm(u, axis=1, keepdims=True)
        self.directions = u
        step = self.config.radius * self._scale() * u
        return np.concatenate([self.x + step, self.x - step])

    def tell(self, z, scores):
        scores = np.asarray(scores, dtype=np.float64)
        plus, minus = np.split(scores, 2)
        spread = scores.std()
        if spread == 0:
            self.gradient_norm = 0.0
            return
        gradient = ((plus - minus) / spread) @ self.directions / self.config.pairs
        self.gradient_norm = float(np.linalg.norm(gradient))
        self.x = self.x + self.config.learning_rate * self._scale() * gradient

    def recommend(self):
        return self.x

    def status(self):
        return {"gradient_norm": self.gradient_norm}
