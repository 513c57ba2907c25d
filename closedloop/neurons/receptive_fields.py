"""Receptive-field front ends: stimulus -> drive, with the ground truth kept for analysis."""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings


class GaborSettings(Settings):
    orientation: float = Field(30.0, description="degrees, of the grating's wave vector")
    spatial_frequency: float = Field(0.15, gt=0, le=0.5, description="cycles per pixel")
    sigma: float = Field(3.0, gt=0, description="Gaussian envelope, pixels")
    phase: float = Field(0.0, description="degrees")
    center: tuple[float, float] | None = Field(None, description="(y, x) in pixels; default the image centre")


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
    return patch / np.linalg.norm(patch)


def linear_drive(stimuli: np.ndarray, field: np.ndarray, reference_contrast: float) -> np.ndarray:
    """Rectified projection onto a unit-norm field, 1.0 for the field itself shown at the
    reference RMS contrast: the optimum under a fixed-contrast bound."""
    flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
    projection = flat @ field.reshape(-1)
    return np.maximum(projection, 0.0) / (reference_contrast * np.sqrt(field.size))
