"""A bandit over frequencies: how much does a grating of each frequency drive the cell?

For cells that stay at their floor for every broadband stimulus (a complex cell that needs a
strong drive), the experimenter's first tool is a grating. Each arm is one frequency of the
stimulus's Fourier coordinates (its cosine and sine coefficient: a grating of any phase). Its
mean response has a normal prior at the mean response of all trials, with the spread of all
responses, updated by every grating shown; old pulls fade as the regression's trials do.
"""

from __future__ import annotations

import numpy as np


class GratingBandit:
    def __init__(self, arms: int):
        self.pulls, self.sums = np.zeros(arms), np.zeros(arms)

    def fade(self, decay: float) -> None:
        self.pulls *= decay
        self.sums *= decay

    def credit(self, arms: np.ndarray, scores: np.ndarray) -> None:
        np.add.at(self.pulls, arms, 1.0)
        np.add.at(self.sums, arms, scores)

    def posterior(self, arms: np.ndarray, n: float, total: float, squares: float):
        """Mean and sd of each arm's response, given the (weighted) count, sum and square sum of
        all responses."""
        mean = total / n
        variance = max(squares / n - mean**2, 1e-12)
        weight = 1.0 + self.pulls[arms]
        return (mean + self.sums[arms]) / weight, np.sqrt(variance / weight)

    def thompson(self, arms: np.ndarray, count: int, rng: np.random.Generator, *totals) -> np.ndarray:
        """`count` arms, each the best under one draw from the posterior."""
        if count == 0:
            return np.zeros(0, dtype=int)
        mean, sd = self.posterior(arms, *totals)
        return arms[np.argmax(mean + sd * rng.standard_normal((count, len(arms))), axis=1)]
