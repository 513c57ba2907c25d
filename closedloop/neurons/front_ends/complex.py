"""V1 complex cell, energy model: the sum of squares of a quadrature pair of Gabors; phase
invariant. Optimum: any unit vector in the pair's span (e.g. the even Gabor)."""

from __future__ import annotations

from typing import Literal

import numpy as np

from closedloop.neurons.front_ends.base import gabor, unit_norm
from closedloop.neurons.front_ends.gabor import GaborSettings, SimpleCell
from closedloop.registry import register


class ComplexSettings(GaborSettings):
    kind: Literal["complex"] = "complex"


@register("front_end", "complex")
class ComplexCell(SimpleCell):
    Config = ComplexSettings

    def __init__(self, config: ComplexSettings, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed, size=size, reference_contrast=reference_contrast)
        odd = gabor(size, config.orientation, config.spatial_frequency, config.sigma, config.phase + 90.0,
                    config.center)
        odd = odd - (odd * self.receptive_field).sum() * self.receptive_field  # exact quadrature partner
        self.quadrature = unit_norm(odd)

    def drive(self, stimuli):
        flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
        even, odd = flat @ self.receptive_field.reshape(-1), flat @ self.quadrature.reshape(-1)
        return (even**2 + odd**2) / (self.contrast**2 * self.receptive_field.size)

    def ground_truth(self):
        return {**super().ground_truth(), "receptive_field_quadrature": self.quadrature}
