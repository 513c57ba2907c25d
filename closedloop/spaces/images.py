"""Grayscale image spaces under a fixed RMS contrast.

Images are luminance deviations from mean gray. Every rendered image has zero mean and the
same RMS contrast, so "the most preferred stimulus" is well defined; for a linear receptive
field it is the receptive field itself (or its projection onto the space).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.registry import register
from closedloop.spaces.base import StimulusSpace


class ImageSettings(Settings):
    size: int = Field(16, ge=2, le=512, description="image side in pixels")
    contrast: float = Field(0.25, gt=0, le=10, description="RMS contrast of every rendered image")


def fix_contrast(images: np.ndarray, contrast: float) -> np.ndarray:
    """Zero mean and the given RMS over the last two axes; a blank image stays blank."""
    flat = images.reshape(len(images), -1)
    flat = flat - flat.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(flat**2, axis=1, keepdims=True))
    flat = np.divide(flat * contrast, rms, out=np.zeros_like(flat), where=rms > 0)
    return flat.reshape(images.shape)


class ImageSpace(StimulusSpace):
    modality = "image"
    scale_invariant = True  # the rendering is linear in z, then fixes the contrast

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)


@register("space", "pixels")
class PixelSpace(ImageSpace):
    """One latent number per pixel."""

    can_encode = True
    Config = ImageSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.dim = config.size**2

    def render(self, z):
        z = np.asarray(z, dtype=np.float64)
        return fix_contrast(z.reshape(len(z), *self.stimulus_shape), self.config.contrast)

    def encode(self, stimuli):
        return np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)


class FourierSettings(ImageSettings):
    alpha: float = Field(1.0, ge=0, le=4, description="amplitude scale 1/f^alpha; 0 gives white noise")
    max_frequency: float = Field(0.5, gt=0, le=0.75, description="highest kept frequency, cycles/pixel")


def fourier_basis(size: int, alpha: float, max_frequency: float) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm cosine and sine gratings of every frequency up to `max_frequency` (cycles/pixel)
    on a size x size grid, each scaled by 1/f^alpha: (basis (k, size*size), frequencies (k,))."""
    freqs = np.fft.fftfreq(size)
    ky, kx = np.meshgrid(freqs, freqs, indexing="ij")
    radius = np.hypot(ky, kx)
    # one of each +-k pair: the half plane kx > 0, or kx == 0 and ky > 0
    half = (kx > 0) | ((kx == 0) & (ky > 0))
    keep = half & (radius <= max_frequency)
    ky, kx, radius = ky[keep], kx[keep], radius[keep]
    y, x = np.mgrid[0:size, 0:size]
    phase = 2 * np.pi * (ky[:, None, None] * y + kx[:, None, None] * x)
    basis = np.concatenate([np.cos(phase), np.sin(phase)])
    scale = np.concatenate([radius, radius]) ** -alpha
    flat = basis.reshape(len(basis), -1)
    alive = np.linalg.norm(flat, axis=1) > 1e-9 * size  # sine of a Nyquist frequency is zero
    flat, scale = flat[alive], scale[alive]
    flat /= np.linalg.norm(flat, axis=1, keepdims=True)
    return flat * scale[:, None], np.concatenate([radius, radius])[alive]


@register("space", "fourier")
class FourierSpace(ImageSpace):
    """Cosine and sine gratings of every kept frequency, scaled by 1/f^alpha.

    An isotropic z renders as 1/f^alpha ("pink" for alpha=1) noise; dropping frequencies above
    `max_frequency` shrinks the dimension, which is what makes noisy search affordable.
    """

    can_encode = True
    Config = FourierSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.basis, self.frequencies = fourier_basis(config.size, config.alpha, config.max_frequency)
        self.dim = len(self.basis)

    def render(self, z):
        z = np.asarray(z, dtype=np.float64)
        images = (z @ self.basis).reshape(len(z), *self.stimulus_shape)
        return fix_contrast(images, self.config.contrast)

    def encode(self, stimuli):
        flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
        solution, *_ = np.linalg.lstsq(self.basis.T, flat.T, rcond=None)
        return solution.T
