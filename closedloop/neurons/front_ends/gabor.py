"""V1 simple cell: rectified projection on a Gabor. Optimum: the Gabor itself."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.front_ends.base import LinearFrontEnd, gabor
from closedloop.registry import register


class GaborSettings(Settings):
    kind: Literal["gabor"] = "gabor"
    orientation: float = Field(30.0, ge=-360, le=360, description="degrees, of the grating's wave vector")
    spatial_frequency: float = Field(0.15, gt=0, le=0.5, description="cycles per pixel")
    sigma: float = Field(3.0, gt=0, le=1000, description="Gaussian envelope, pixels")
    phase: float = Field(0.0, ge=-360, le=360, description="degrees")
    center: tuple[float, float] | None = Field(None, description="(y, x) in pixels; default the image centre")


@register("front_end", "gabor")
class SimpleCell(LinearFrontEnd):
    Config = GaborSettings

    def __init__(self, config: GaborSettings, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed, size=size, reference_contrast=reference_contrast)
        self.stimulus_shape = (size, size)
        self.receptive_field = gabor(size, config.orientation, config.spatial_frequency, config.sigma,
                                     config.phase, config.center)
