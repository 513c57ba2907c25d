"""The StimulusSpace role: `render(z) -> stimuli`, with a dimension and a prior."""

from __future__ import annotations

import functools
from typing import ClassVar

import numpy as np

from closedloop.component import Component, check_batch, check_in_subclasses, nonfinite_rows


def checked_render(render):
    """render(z), refusing latents of the wrong shape or NaN in one line (not an error from inside)."""

    @functools.wraps(render)
    def checked(self, z):
        shape = np.shape(z)
        if len(shape) != 2 or shape[1] != self.dim:
            raise ValueError(f"render: latent vectors of shape {shape}; expected (n, {self.dim}), one per row "
                             f"(one vector v: render(v[None]))")
        rows = nonfinite_rows(z)
        if rows:
            raise ValueError(f"render: NaN or Inf latents in rows {rows}")
        if shape[0] == 0:
            return np.zeros((0, *self.stimulus_shape))
        return render(self, z)

    return checked


def checked_encode(encode):
    """encode(stimuli), refusing stimuli of another shape, or NaN, in one line."""

    @functools.wraps(encode)
    def checked(self, stimuli):
        check_batch(self, stimuli, "encode: stimuli")
        return encode(self, stimuli)

    return checked


class StimulusSpace(Component):
    """Subclasses set `dim` and `stimulus_shape`, and declare what they can do: the loop and the
    optimizers read these attributes and never probe. Every kind's render() and encode() check
    their arguments first."""

    dim: int = 0
    stimulus_shape: tuple[int, ...] = ()
    modality: str = "image"  # "image" or "audio"
    sample_rate: int | None = None  # Hz, for audio
    value_range: tuple[float, float] | None = None  # the range rendered values lie in, when bounded
    # True when render(c * z) == render(z) for every c > 0 (e.g. a fixed contrast after a linear
    # map): only the latent's direction matters, and optimizers may keep latents on a sphere
    scale_invariant: bool = False
    # stimuli are changes around this one (a dream's source): priors act on the change, not on it
    centre: np.ndarray | None = None
    can_encode: ClassVar[bool] = False  # encode(stimuli) is implemented
    differentiable: ClassVar[bool] = False  # render_torch(z) is implemented (white-box ascent through it)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_in_subclasses(cls, "render", checked_render)
        check_in_subclasses(cls, "encode", checked_encode)

    def render(self, z: np.ndarray) -> np.ndarray:
        """(n, dim) latent vectors -> (n, *stimulus_shape) stimuli."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws from the space's prior over z (the optimizers' starting distribution)."""
        return rng.standard_normal((n, self.dim))

    def encode(self, stimuli: np.ndarray) -> np.ndarray:
        """Latent vectors whose rendering is closest to the given stimuli (when `can_encode`)."""
        raise NotImplementedError(f"space kind {self.kind!r} cannot encode stimuli")

    def render_torch(self, z):
        """(n, dim) torch tensor -> stimuli as a differentiable tensor equal to render (when `differentiable`)."""
        raise NotImplementedError(f"space kind {self.kind!r} is not differentiable")
