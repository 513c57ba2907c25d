"""The Optimizer role: ask() proposes latent vectors, tell() hears their scores.

The optimizer never calls the neuron: the experiment owns the loop (pycma and nevergrad style).
Scores are to be maximised. Every kind's tell() checks its arguments first (one latent vector of
`dim` numbers per row, one finite score per row, and for a kind that `tells_answer_asks` the
scores of its last ask(), once) and names what is wrong in one line: in a notebook the caller is
a person, and a NaN score would otherwise steer the search silently.
"""

from __future__ import annotations

import functools

import numpy as np

from closedloop.component import Component, check_in_subclasses, nonfinite_rows


def onto_sphere(z: np.ndarray, radius: float) -> np.ndarray:
    """Rows of z scaled to the given norm (a zero row stays zero)."""
    norms = np.linalg.norm(z, axis=-1, keepdims=True)
    return np.divide(z * radius, norms, out=np.zeros_like(z), where=norms > 0)


TOLD = -1  # _rows_asked once the generation of the last ask() has been told


def checked_tell(tell):
    """tell(z, scores), refusing arguments no optimizer can use before any state changes."""

    @functools.wraps(tell)
    def checked(self, z, scores):
        z, scores = np.asarray(z, dtype=np.float64), np.asarray(scores, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"tell: latent vectors of shape {z.shape}; expected (n, {self.dim}), one per row as ask() "
                             f"returns them")
        if scores.shape != (len(z),):
            raise ValueError(f"tell: scores of shape {scores.shape} for {len(z)} latent vectors; expected ({len(z)},), "
                             f"one per row")
        for name, values in (("scores", scores), ("latent vectors", z)):
            rows = nonfinite_rows(values)
            if rows:
                raise ValueError(f"tell: NaN or Inf {name} in rows {rows}; an optimizer can only rank finite scores "
                                 f"of finite latents")
        if self.tells_answer_asks:
            asked = getattr(self, "_rows_asked", None)
            if asked is None:
                raise ValueError(f"tell before ask: optimizer {self.kind} learns from the scores of the latents its "
                                 f"ask() returned; call ask() first")
            if asked == TOLD:
                raise ValueError(f"tell: the last ask()'s latents were told already; optimizer {self.kind} hears "
                                 f"each generation once: call ask() for the next")
            if len(z) != asked:
                raise ValueError(f"tell: {len(z)} latent vectors; optimizer {self.kind} learns from the scores of "
                                 f"all {asked} that ask() returned")
        result = tell(self, z, scores)
        self._rows_asked = TOLD
        return result

    return checked


def recorded_ask(ask):
    """ask(), remembering how many latent vectors it returned (for tell's check)."""

    @functools.wraps(ask)
    def recorded(self):
        z = ask(self)
        self._rows_asked = len(z)
        return z

    return recorded


class Optimizer(Component):
    popsize: int = 0  # latent vectors per ask(); every optimizer sets it in __init__
    # names of the numbers status() returns, fixed before the run so the log can hold them
    status_columns: tuple[str, ...] = ()
    # learns from any stimulus it is told about, not only from those it asked for, so seed
    # stimuli can take the place of some of its first proposals
    learns_from_any_stimulus: bool = True
    # inject(z) makes its next ask() propose z first (else the experiment puts z in their place)
    proposes_given: bool = False
    # tell() answers the last ask(): once, with a score for every row it returned (pycma's
    # generation, the probe pairs of finite differences); other kinds learn from whatever is told
    tells_answer_asks: bool = False

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_in_subclasses(cls, "ask", recorded_ask)
        check_in_subclasses(cls, "tell", checked_tell)

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
