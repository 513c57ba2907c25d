"""Random search: fresh draws from the space's prior every generation; the baseline."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class RandomSettings(Settings):
    popsize: int = Field(20, ge=1, le=100_000, description="stimuli per generation")


@register("optimizer", "random")
class RandomSearch(Optimizer):
    Config = RandomSettings

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        self.random = self.rng(0)
        self.popsize = config.popsize
        self.best_z, self.best_score = space.sample(self.rng(1), 1)[0], -np.inf

    def ask(self):
        return self.space.sample(self.random, self.popsize)

    def tell(self, z, scores):
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = np.asarray(z)[top].copy(), float(scores[top])

    def recommend(self):
        return self.best_z
