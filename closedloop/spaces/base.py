"""The StimulusSpace role: `render(z) -> stimuli`, with a dimension and a prior."""

from __future__ import annotations

import numpy as np

from closedloop.component import Component


class StimulusSpace(Component):
    """Subclasses set `dim`, `stimulus_shape` and `modality` ("image" or "audio");
    audio spaces also set `sample_rate`."""

    dim: int = 0
    stimulus_shape: tuple[int, ...] = ()
    modality: str = "image"
    sample_rate: int | None = None
    # True when render(c * z) == render(z) for every c > 0 (e.g. a fixed contrast after a linear
    # map): only the latent's direction matters, and optimizers may keep latents on a sphere
    scale_invariant: bool = False

    def render(self, z: np.ndarray) -> np.ndarray:
        """(n, dim) latent vectors -> (n, *stimulus_shape) stimuli."""
        raise NotImplementedError

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """n draws from the space's prior over z (the optimizers' starting distribution)."""
        return rng.standard_normal((n, self.dim))

    def encode(self, stimuli: np.ndarray) -> np.ndarray:
        """Latent vectors whose rendering is closest to the given stimuli, where defined."""
        raise NotImplementedError(f"space kind {self.kind!r} cannot encode stimuli")
