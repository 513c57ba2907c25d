"""Retinal/LGN centre-surround cell: rectified projection on a difference of Gaussians (made
zero-mean, since every stimulus is). Optimum: that zero-mean DoG."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.front_ends.base import LinearFrontEnd, unit_norm
from closedloop.registry import register


class DoGSettings(Settings):
    kind: Literal["dog"] = "dog"
    sigma_center: float = Field(1.5, gt=0, le=1000, description="pixels")
    sigma_surround: float = Field(4.0, gt=0, le=1000, description="pixels")
    surround_weight: float = Field(0.8, ge=0, le=10, description="surround volume relative to the centre's")
    polarity: Literal["on", "off"] = "on"
    center: tuple[float, float] | None = Field(None, description="(y, x) in pixels; default the image centre")


@register("front_end", "dog")
class CentreSurround(LinearFrontEnd):
    Config = DoGSettings

    def __init__(self, config: DoGSettings, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed, size=size, reference_contrast=reference_contrast)
        self.stimulus_shape = (size, size)
        field = difference_of_gaussians(size, config.sigma_center, config.sigma_surround, config.surround_weight,
                                        config.center)
        self.receptive_field = field if config.polarity == "on" else -field


def difference_of_gaussians(size: int, sigma_center: float, sigma_surround: float, surround_weight: float,
                            center: tuple[float, float] | None = None) -> np.ndarray:
    """Zero-mean, unit-norm centre-surround field (ON: positive centre)."""
    cy, cx = center if center is not None else ((size - 1) / 2, (size - 1) / 2)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    field = (np.exp(-r2 / (2 * sigma_center**2)) / sigma_center**2
             - surround_weight * np.exp(-r2 / (2 * sigma_surround**2)) / sigma_surround**2)
    field -= field.mean()
    return unit_norm(field)
