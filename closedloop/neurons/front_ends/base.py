"""What every front end shares: stimulus -> non-negative drive, 1.0 for the optimum stimulus shown
at the reference RMS contrast, and the ground truth (receptive field, optimum) kept for analysis.

A front end is one module in this package: a Settings class whose `kind` literal names it, and a
FrontEnd subclass decorated with `@register("front_end", "name")` whose Config is that class.
"""

from __future__ import annotations

import numpy as np

from closedloop.component import Component


class FrontEnd(Component):
    modality = "image"
    sample_rate: int | None = None
    value_range: tuple[float, float] | None = None
    receptive_field: np.ndarray | None = None
    stimulus_shape: tuple[int, ...] = ()

    def __init__(self, config, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed)
        self.size, self.contrast = size, reference_contrast

    def drive(self, stimuli: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def optimum(self) -> np.ndarray | None:
        """The most effective stimulus at the reference RMS contrast, where known."""
        return None

    def ground_truth(self) -> dict[str, np.ndarray]:
        truth = {} if self.receptive_field is None else {"receptive_field": self.receptive_field}
        best = self.optimum()
        if best is not None:
            truth["optimal_stimulus"] = best
        return truth


class LinearFrontEnd(FrontEnd):
    """Rectified projection onto a unit-norm image field (set `receptive_field` in __init__)."""

    def drive(self, stimuli):
        return linear_drive(stimuli, self.receptive_field, self.contrast)

    def optimum(self):
        return self.receptive_field * self.contrast * np.sqrt(self.receptive_field.size)


def gabor(size: int, orientation: float = 30.0, spatial_frequency: float = 0.15, sigma: float = 3.0,
          phase: float = 0.0, center: tuple[float, float] | None = None) -> np.ndarray:
    """A zero-mean, unit-L2-norm Gabor patch (size, size); angles in degrees."""
    cy, cx = center if center is not None else ((size - 1) / 2, (size - 1) / 2)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    theta = np.deg2rad(orientation)
    along = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    envelope = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    patch = envelope * np.cos(2 * np.pi * spatial_frequency * along + np.deg2rad(phase))
    patch -= patch.mean()
    return unit_norm(patch)


def unit_norm(field: np.ndarray) -> np.ndarray:
    """The (zero-mean) field scaled to unit L2 norm. A field that no pixel sees (its centre far
    outside the image, or narrower than a pixel and between pixel centres) is refused in one line:
    it would make every response NaN."""
    norm = float(np.linalg.norm(field))
    if not (np.isfinite(norm) and norm > 0):
        rows, columns = field.shape[-2:]
        raise ValueError(f"front_end: no pixel of the {rows}x{columns} image sees the receptive field; put its "
                         f"center inside the image, or widen it (sigma)")
    return field / norm


def linear_drive(stimuli: np.ndarray, field: np.ndarray, reference_contrast: float) -> np.ndarray:
    """Rectified projection onto a unit-norm field, 1.0 for the field itself shown at the
    reference RMS contrast: the optimum under a fixed-contrast bound."""
    flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
    projection = flat @ field.reshape(-1)
    return np.maximum(projection, 0.0) / (reference_contrast * np.sqrt(field.size))
