"""A natural-image prior: the principal components of patches of natural pictures.

Patches of `resolution` x `resolution` pixels (grey or RGB) are cut at random from scikit-image
pictures that show no face and no digit (`PICTURES`), each picture scaled so that a patch covers
1/4, 1/8, 1/16 or 1/32 of its shorter side, and mirrored. Their mean and covariance give a
Gaussian prior over patches; its top `components` eigenvectors, scaled by the square roots of
their eigenvalues, are the space's basis. So z ~ N(0, I) renders as a patch with the pictures'
colours, contrast and 1/f-like spectrum, and "prior strength" is how few components are kept
(fewer: smoother, closer to the pictures' statistics) and how coarse `resolution` is: a patch is
upsampled bicubically to the unit's `size`. Values go into the unit's range by a smooth tanh
around its middle (identity near mid-grey). Unlike the contrast-fixed spaces, the latent's norm
matters: a long z is a high-contrast, improbable image, and `decay` (optimizers/regularized.py)
pulls it back.

The learned basis is cached under $CLOSEDLOOP_CACHE (zoo/natural-pca-<recipe hash>.npz, arrays
only), computed in a few seconds on first use.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.component import Level, Settings
from closedloop.registry import register
from closedloop.spaces.base import StimulusSpace

# scikit-image pictures with no face and no digit in them (checked by eye): a cup of coffee, a
# rocket on its pad at dusk, a stained tissue section, a deep-field sky, grass, gravel, a brick
# wall and the moon's surface
PICTURES = ("coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "grass", "gravel", "brick", "moon")
COVERS = (4, 8, 16, 32)  # a patch spans 1/cover of the picture's shorter side
PATCHES = 1500  # per picture, per scale
LUMA = np.array([0.299, 0.587, 0.114])


class NaturalPCASettings(Settings):
    size: int = Field(48, ge=2, le=512, description="image side in pixels, as the unit takes it")
    channels: Literal[1, 3] = Field(3, description="1 (grey) or 3 (RGB)")
    resolution: int = Field(16, ge=2, le=32, description="side of the learned patches; upsampled to size")
    components: int = Field(64, ge=1, le=3 * 32 * 32, description="principal components kept: the fewer, the stronger the prior")
    value_range: tuple[Level, Level] = Field((0.0, 1.0), description="the unit's input range")

    @model_validator(mode="after")
    def _fits(self):
        if self.resolution > self.size:
            raise ValueError(f"resolution ({self.resolution}) must not exceed size ({self.size})")
        if self.components > self.channels * self.resolution**2:
            raise ValueError(f"components ({self.components}) exceeds the patch's {self.channels * self.resolution**2} "
                             f"numbers ({self.channels} x {self.resolution} x {self.resolution})")
        if not self.value_range[0] < self.value_range[1]:
            raise ValueError(f"value_range {list(self.value_range)} must be [low, high] with low < high")
        return self


def picture(name: str, channels: int) -> np.ndarray:
    """(H, W, channels) in [0, 1]."""
    from skimage import data

    image = getattr(data, name)().astype(np.float64)
    image /= 255.0 if image.max() > 1 else 1.0
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    image = image[..., :3]
    return image @ LUMA[:, None] if channels == 1 else image


def patches(resolution: int, channels: int, seed: int = 0) -> np.ndarray:
    """(n, channels * resolution**2) patches, channel-major, from every picture at every scale."""
    from skimage.transform import rescale

    rng = np.random.default_rng(seed)
    rows = []
    for name in PICTURES:
        scaled = picture(name, channels)
        for cover in sorted(COVERS, reverse=True):  # finest first: each scale from the one before
            scale = resolution * cover / min(scaled.shape[:2])
            scaled = np.clip(rescale(scaled, scale, channel_axis=-1, anti_aliasing=scale < 1, order=1), 0, 1)
            h, w = scaled.shape[:2]
            top = rng.integers(0, h - resolution + 1, PATCHES)
            left = rng.integers(0, w - resolution + 1, PATCHES)
            cut = np.stack([scaled[t:t + resolution, s:s + resolution] for t, s in zip(top, left)])
            mirror = rng.random(PATCHES) < 0.5
            cut[mirror] = cut[mirror, :, ::-1]
            rows.append(np.moveaxis(cut, -1, 1).reshape(PATCHES, -1))
    return np.concatenate(rows)


def recipe(resolution: int, channels: int) -> dict:
    return {"version": 1, "pictures": PICTURES, "covers": COVERS, "patches": PATCHES, "resolution": resolution,
            "channels": channels, "rescale": "bilinear, anti-aliased, each scale from the finer one", "mirror": 0.5, "seed": 0}


def learned(resolution: int, channels: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mean patch, eigenvalues descending, eigenvectors as columns), cached by recipe."""
    from closedloop.zoo import cache_dir

    key = hashlib.sha256(json.dumps(recipe(resolution, channels), sort_keys=True).encode()).hexdigest()[:12]
    path = cache_dir() / f"natural-pca-{key}.npz"
    if not path.is_file():
        samples = patches(resolution, channels)
        mean = samples.mean(axis=0)
        values, vectors = np.linalg.eigh(np.cov(samples, rowvar=False))
        order = np.argsort(values)[::-1]
        partial = path.with_suffix(f".{os.getpid()}.part.npz")
        np.savez(partial, mean=mean, values=np.maximum(values[order], 0), vectors=vectors[:, order])
        os.replace(partial, path)  # atomic: a concurrent process never reads half a file
    with np.load(path, allow_pickle=False) as saved:
        return saved["mean"], saved["values"], saved["vectors"]


@register("space", "natural_pca")
class NaturalPCASpace(StimulusSpace):
    Config = NaturalPCASettings
    modality = "image"
    can_encode = True
    differentiable = True
    scale_invariant = False

    def __init__(self, config, seed):
        super().__init__(config, seed)
        c, r, k = config.channels, config.resolution, config.components
        self.stimulus_shape = (c, config.size, config.size)
        self.value_range = tuple(config.value_range)
        low, high = config.value_range
        self._middle, self._half = (low + high) / 2, (high - low) / 2
        mean, values, vectors = learned(r, c)
        self.variances = values[:k]
        self.dim = k
        basis = (vectors[:, :k] * np.sqrt(values[:k])).T.reshape(k, c, r, r)  # z ~ N(0, I): a natural patch
        self._mean = self.upsample(torch.as_tensor(mean.reshape(1, c, r, r)))[0]
        self._basis = self.upsample(torch.as_tensor(basis))  # (k, c, size, size): linear in z
        flat = self._basis.reshape(k, -1).numpy()
        self._inverse = np.linalg.solve(flat @ flat.T, flat).T  # (pixels, k): least squares, by normal equations

    def upsample(self, patches: torch.Tensor) -> torch.Tensor:
        if self.config.resolution == self.config.size:
            return patches
        return torch.nn.functional.interpolate(patches, size=(self.config.size,) * 2, mode="bicubic",
                                               align_corners=False)

    def linear_torch(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, C, H, W) natural-range values before the squash (mean patch + basis z)."""
        return self._mean.to(z.dtype) + torch.einsum("nk,kchw->nchw", z, self._basis.to(z.dtype))

    def render_torch(self, z: torch.Tensor) -> torch.Tensor:
        unit = (self.linear_torch(z) * (2 * self._half) + self.value_range[0] - self._middle) / self._half
        return self._middle + self._half * torch.tanh(unit)

    def render(self, z):
        with torch.no_grad():
            return self.render_torch(torch.as_tensor(np.asarray(z, dtype=np.float64))).numpy()

    def encode(self, stimuli):
        """Least squares in the squash's inverse: the latent whose rendering is nearest."""
        unit = np.clip((np.asarray(stimuli, dtype=np.float64) - self._middle) / self._half, -1 + 1e-6, 1 - 1e-6)
        natural = (np.arctanh(unit) * self._half + self._middle - self.value_range[0]) / (2 * self._half)
        return (natural - self._mean.numpy()).reshape(len(natural), -1) @ self._inverse
