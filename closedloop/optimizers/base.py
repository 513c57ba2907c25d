"""The Optimizer role: ask() proposes latent vectors, tell() hears their scores.

The optimizer never calls the neuron: the experiment owns the loop (pycma and nevergrad style).
Scores are to be maximised.
"""

from __future__ import annotations

import numpy as np

from closedloop.component import Component


def onto_sphere(z: np.ndarray, radius: float) -> np.ndarray:
    """Rows of z scaled to the given norm (a zero row stays zero)."""
    norms = np.linalg.norm(z, axis=-1, keepdims=True)
    return np.divide(z * radius, norms, out=np.zeros_like(z), where=norms > 0)


class Optimizer(Component):
    popsize: int = 0  # latent vectors per ask(); every optimizer sets it in __init__
    # names of the numbers status() returns, fixed before the run so the log can hold them
    status_columns: tuple[str, ...] = ()
    # learns from any stimulus it is told about, not only from those it asked for, so seed
    # stimuli can take the place of some of its first proposals
    learns_from_any_stimulus: bool = True
    # inject(z) makes its next ask() propose z first (else the experiment puts z in their place)
    proposes_given: bool = False

    def __init__(self, config, seed: int, space, neuron=None):
        super().__init__(config, seed)
        self.space = space
        self.dim = space.dim

    def plan(self, stimuli: int) -> None:
        """How many stimuli the experiment will ask for at most, told before the first ask (for
        optimizers that choose their strategy by the budget)."""

    def ask(self) -> np.ndarray:
        """(n, dim) latent vectors to present next."""
        raise NotImplementedError

    def tell(self, z: np.ndarray, scores: np.ndarray) -> None:
        """The aggregated response of each vector that ask() returned."""
        raise NotImplementedError

    def inject(self, z: np.ndarray) -> None:
        """Make the next ask() propose these latent vectors first (where `proposes_given`)."""
        raise NotImplementedError(f"optimizer {self.kind} cannot propose given latents")

    def ask_from(self, given: np.ndarray) -> np.ndarray:
        """ask(), with `given` latents first: proposed by the optimizer itself where it can, else
        put in place of its first proposals (for an optimizer that learns from any stimulus)."""
        if self.proposes_given:
            self.inject(given)
            return np.array(self.ask(), dtype=np.float64)
        z = np.array(self.ask(), dtype=np.float64)
        z[: len(given)] = given
        return z

    def recommend(self) -> np.ndarray:
        """(dim,) the optimizer's own best estimate of the preferred stimulus."""
        raise NotImplementedError

    def status(self) -> dict[str, float]:
        """Numbers worth logging each generation (step size, ...)."""
        return {}
