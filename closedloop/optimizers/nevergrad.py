"""Any nevergrad optimizer by name (`name: NGOpt`, `TwoPointsDE`, `CMA`, ...), through its ask/tell.

nevergrad minimises; closedloop's optimizers maximise, so each score is told as its negative.
Its parametrization is an unbounded array with the N(0, 1) prior nevergrad assumes, which is
every space's prior; its random state is seeded from the protocol seed, so runs repeat exactly.
nevergrad picks its algorithm by the budget (NGOpt does), which `evolve` tells it through
`plan` before the first ask: the number of stimuli the run will ask for.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class NevergradSettings(Settings):
    name: str = Field("NGOpt", description="a nevergrad optimizer: a key of nevergrad.optimizers.registry")
    popsize: int = Field(20, ge=1, le=10_000, description="stimuli per generation (nevergrad's num_workers)")
    budget: int | None = Field(None, ge=1, le=1_000_000_000, description="stimuli nevergrad may plan for; default: what the "
                               "experiment will ask for (evolve tells it)")


@register("optimizer", "nevergrad")
class Nevergrad(Optimizer):
    Config = NevergradSettings

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        import nevergrad

        if config.name not in nevergrad.optimizers.registry:
            import difflib

            close = difflib.get_close_matches(config.name, list(nevergrad.optimizers.registry), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValueError(f"name: no nevergrad optimizer {config.name!r}{hint}")
        self.popsize = config.popsize
        self.budget: int | None = config.budget
        self._optimizer = None
        self._asked: list = []
        self.best_z, self.best_score = np.zeros(self.dim), -np.inf

    def plan(self, stimuli: int) -> None:
        if self.config.budget is None:
            self.budget = int(stimuli)

    def _ng(self):
        if self._optimizer is None:
            import nevergrad

            parametrization = nevergrad.p.Array(shape=(self.dim,))
            parametrization.random_state = np.random.RandomState(self.rng(0).integers(2**31 - 1))
            factory = nevergrad.optimizers.registry[self.config.name]
            self._optimizer = factory(parametrization=parametrization, budget=self.budget, num_workers=self.popsize)
        return self._optimizer

    def ask(self):
        try:
            self._asked = [self._ng().ask() for _ in range(self.popsize)]
        except AssertionError:  # how nevergrad says that the optimizer it picks needs the budget
            if self.budget is not None:
                raise
            raise ValueError(f"nevergrad {self.config.name}: needs the budget; give budget=N (the stimuli it may ask "
                             f"for) or call plan(N) before the first ask") from None
        return np.array([candidate.value for candidate in self._asked], dtype=np.float64)

    def tell(self, z, scores):
        optimizer, z = self._ng(), np.asarray(z, dtype=np.float64)
        for k, score in enumerate(scores):
            asked = self._asked[k] if k < len(self._asked) else None
            # a stimulus the experiment put in place of nevergrad's (a seed, a dream's source) is told as itself
            candidate = asked if asked is not None and np.array_equal(asked.value, z[k]) else \
                optimizer.parametrization.spawn_child(new_value=z[k])
            optimizer.tell(candidate, -float(score))
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = np.asarray(z)[top].copy(), float(scores[top])

    def recommend(self):
        if self._optimizer is None or self._optimizer.num_tell == 0:
            return self.best_z
        return np.asarray(self._optimizer.provide_recommendation().value, dtype=np.float64)
