"""Image spaces for deep-network units: (channels, size, size) images inside the unit's value range.

A latent vector renders to a deviation from mid-gray (pixels, or 1/f gratings per channel),
brought to a fixed RMS contrast, then mapped into the value range by clipping or a smooth tanh.
The rendering is written once in torch, so a white-box optimizer can differentiate through it
(`render_torch`); `render` is the same computation on numpy arrays.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.component import Level, Settings
from closedloop.registry import register
from closedloop.spaces.base import StimulusSpace
from closedloop.spaces.images import fourier_basis


class ColorSettings(Settings):
    size: int = Field(48, ge=2, le=512, description="image side in pixels")
    channels: Literal[1, 3] = Field(3, description="1 (gray) or 3 (RGB), as the unit takes them")
    value_range: tuple[Level, Level] = Field((0.0, 1.0), description="the unit's input range; mid-gray is its middle")
    contrast: float = Field(0.25, gt=0, le=10, description="RMS deviation from mid-gray, as a fraction of the range's width")
    squash: Literal["clip", "tanh"] = Field("tanh", description="how deviations are mapped into the range")

    @model_validator(mode="after")
    def _increasing_range(self):
        if not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range {list(self.value_range)} must be [low, high] with low < high")
        return self


class ColorImageSpace(StimulusSpace):
    modality = "image"
    differentiable = True
    scale_invariant = True  # linear_torch is linear in z, then the contrast is fixed
    Config = ColorSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.channels, config.size, config.size)
        self.value_range = tuple(config.value_range)
        low, high = config.value_range
        self._middle, self._half = (low + high) / 2, (high - low) / 2

    def linear_torch(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, C, H, W) deviations from gray, before contrast and range."""
        raise NotImplementedError

    def render_torch(self, z: torch.Tensor) -> torch.Tensor:
        """Differentiable rendering: (n, dim) tensor -> (n, C, H, W) tensor in the value range."""
        deviation = self.linear_torch(z)
        flat = deviation.reshape(len(deviation), -1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        rms = flat.pow(2).mean(dim=1, keepdim=True).sqrt()
        target = self.config.contrast * 2 * self._half
        # a blank image stays blank; the clamp keeps the gradient finite there
        flat = flat * (target / rms.clamp_min(1e-12)) * (rms > 0)
        unit = flat / self._half
        unit = unit.clamp(-1.0, 1.0) if self.config.squash == "clip" else torch.tanh(unit)
        return (self._middle + self._half * unit).reshape(deviation.shape)

    def render(self, z):
        z = torch.as_tensor(np.asarray(z, dtype=np.float64))
        with torch.no_grad():
            return self.render_torch(z).numpy()

    def deviations(self, stimuli) -> np.ndarray:
        """The inverse of the range mapping: (n, C, H, W) deviations from gray (contrast aside)."""
        unit = (np.asarray(stimuli, dtype=np.float64) - self._middle) / self._half
        unit = np.clip(unit, -1 + 1e-6, 1 - 1e-6)
        return (unit if self.config.squash == "clip" else np.arctanh(unit)) * self._half


@register("space", "color_pixels")
class ColorPixelSpace(ColorImageSpace):
    """One latent number per pixel and channel: its prior renders as white static."""

    can_encode = True

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.dim = int(np.prod(self.stimulus_shape))

    def linear_torch(self, z):
        return z.reshape(len(z), *self.stimulus_shape)

    def encode(self, stimuli):
        return self.deviations(stimuli).reshape(len(stimuli), -1)


class ColorFourierSettings(ColorSettings):
    alpha: float = Field(1.0, ge=0, le=4, description="amplitude scale 1/f^alpha; 0 gives white noise")
    max_frequency: float = Field(0.25, gt=0, le=0.75, description="highest kept frequency, cycles/pixel")


@register("space", "color_fourier")
class ColorFourierSpace(ColorImageSpace):
    """Per channel: the 1/f^alpha gratings of the gray `fourier` space, plus (in colour) the
    channel's mean, so that an image can be tinted. Latent layout: (channel, coefficient)."""

    can_encode = True
    Config = ColorFourierSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        basis, frequencies = fourier_basis(config.size, config.alpha, config.max_frequency)
        if config.channels > 1:
            # a flat image per channel, as strong as the strongest grating
            flat = np.full((1, basis.shape[1]), np.linalg.norm(basis, axis=1).max() / config.size)
            basis, frequencies = np.concatenate([flat, basis]), np.concatenate([[0.0], frequencies])
        self.basis = basis
        self.frequencies = np.tile(frequencies, config.channels)
        self._basis_torch = torch.as_tensor(basis)
        self.dim = config.channels * len(basis)

    def linear_torch(self, z):
        coefficients = z.reshape(len(z), self.config.channels, len(self.basis))
        images = coefficients @ self._basis_torch.to(z.dtype)
        return images.reshape(len(z), *self.stimulus_shape)

    def encode(self, stimuli):
        flat = self.deviations(stimuli).reshape(len(stimuli) * self.config.channels, -1)
        solution, *_ = np.linalg.lstsq(self.basis.T, flat.T, rcond=None)
        return solution.T.reshape(len(stimuli), -1)
