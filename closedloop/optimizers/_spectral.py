"""Orthonormal real Fourier coordinates of stimuli, ordered from low to high frequency.

`forward` maps (n, *shape) stimuli to (n, size) real coefficients by a real FFT over the
spatial axes (the last two of an image, the last of a sound; leading axes such as colour
channels are transformed alike): a cosine and a sine coefficient for every frequency pair and
one for each self-conjugate frequency (zero, Nyquist). The map is orthonormal, so inner
products, norms and angles are the same as between the stimuli, and `inverse` undoes it.
Coefficients are sorted by frequency radius, so the first k of them are a low-pass band.
Cost per stimulus: one FFT, O(p log p) for p pixels.
"""

from __future__ import annotations

import numpy as np


class Fourier:
    def __init__(self, shape: tuple[int, ...], spatial_axes: int):
        self.shape = tuple(shape)
        self.spatial = self.shape[-spatial_axes:]
        self.channels = int(np.prod(self.shape[:-spatial_axes], dtype=int))
        self.axes = tuple(range(-spatial_axes, 0))
        half = (*self.spatial[:-1], self.spatial[-1] // 2 + 1)
        self.half = half
        grid = np.indices(half).reshape(spatial_axes, -1)
        partner = (-grid) % np.array(self.spatial)[:, None]
        flat = np.ravel_multi_index(grid, half)
        stored = partner[-1] < half[-1]  # the conjugate partner is itself in the rfft output
        partner_flat = np.full_like(flat, -1)
        partner_flat[stored] = np.ravel_multi_index(partner[:, stored], half)
        self_conjugate = partner_flat == flat
        unique = ~stored | self_conjugate | (flat < partner_flat)
        radius = np.sqrt(sum(np.fft.fftfreq(n)[k] ** 2 for n, k in zip(self.spatial, grid)))
        cells = np.prod(half)
        # one row per real coefficient: (position in the flattened rfft output of all channels, part)
        position, part = [], []  # part: 0 real, 1 imaginary, 2 real of a self-conjugate frequency
        for c in range(self.channels):
            base = c * cells
            pairs = flat[unique & ~self_conjugate] + base
            singles = flat[unique & self_conjugate] + base
            position += [pairs, pairs, singles]
            part += [np.zeros(len(pairs), int), np.ones(len(pairs), int), np.full(len(singles), 2)]
        position, part = np.concatenate(position), np.concatenate(part)
        freq = radius[position % cells]
        order = np.lexsort((part, position, freq))
        self.position, self.part, self.radius = position[order], part[order], freq[order]
        self.size = len(self.position)
        assert self.size == int(np.prod(self.shape)), "coefficient count must equal the pixel count"
        self.scale = np.where(self.part == 2, 1.0, np.sqrt(2.0))
        # where each coefficient's frequency and its conjugate lie on the full (channels, *spatial) grid
        channel, cell = np.divmod(self.position, cells)
        index = np.array(np.unravel_index(cell, half))
        plane = int(np.prod(self.spatial))
        self.cell = channel * plane + np.ravel_multi_index(index, self.spatial)
        self.mirror = channel * plane + np.ravel_multi_index((-index) % np.array(self.spatial)[:, None], self.spatial)
        # copies that keep the rfft output Hermitian where a frequency and its partner are both stored
        channel_base = (np.arange(self.channels) * cells)[:, None]
        duplicated = stored & ~self_conjugate & ~unique
        self._mirror_to = (flat[duplicated][None] + channel_base).ravel()
        self._mirror_from = (partner_flat[duplicated][None] + channel_base).ravel()
        self._cells = cells

    def forward(self, stimuli: np.ndarray, k: int | None = None) -> np.ndarray:
        """(n, *shape) -> (n, k) coefficients of the k lowest frequencies (all by default)."""
        x = np.asarray(stimuli, dtype=np.float64).reshape(-1, self.channels, *self.spatial)
        spectrum = np.fft.rfftn(x, axes=self.axes, norm="ortho").reshape(len(x), -1)
        k = self.size if k is None else k
        position, part = self.position[:k], self.part[:k]
        values = np.where(part == 1, spectrum[:, position].imag, spectrum[:, position].real)
        return values * self.scale[:k]

    def inverse(self, coefficients: np.ndarray) -> np.ndarray:
        """(n, k) coefficients of the k lowest frequencies -> (n, *shape) stimuli."""
        c = np.asarray(coefficients, dtype=np.float64)
        k = c.shape[1]
        spectrum = np.zeros((len(c), self.channels * self._cells), dtype=np.complex128)
        values = c / self.scale[:k]
        part, position = self.part[:k], self.position[:k]
        real, imaginary = part != 1, part == 1
        spectrum[:, position[real]] += values[:, real]
        spectrum[:, position[imaginary]] += 1j * values[:, imaginary]
        spectrum[:, self._mirror_to] = np.conj(spectrum[:, self._mirror_from])
        spectrum = spectrum.reshape(len(c), self.channels, *self.half)
        images = np.fft.irfftn(spectrum, s=self.spatial, axes=self.axes, norm="ortho")
        return images.reshape(len(c), *self.shape)


class Smoother:
    """Averages values given per coefficient over a Gaussian neighbourhood of `sigma` frequency
    bins on the (periodic) frequency plane, among the given coefficients only (the cosine and
    sine of a frequency, and its mirror frequency, share one cell)."""

    def __init__(self, fourier: Fourier, coefficients: np.ndarray, sigma: float):
        self.shape = (fourier.channels, *fourier.spatial)
        self.radius = int(4.0 * sigma + 0.5)  # the kernel reaches 4 sigma, as scipy.ndimage's
        weights = np.exp(-0.5 / (sigma * sigma) * np.arange(-self.radius, self.radius + 1) ** 2)
        self.weights = weights / weights.sum()
        # along each frequency axis: the indices of the values padded periodically by the radius (any length)
        self.wrap = [np.arange(-self.radius, n + self.radius) % n for n in fourier.spatial]
        self.cells = fourier.cell[coefficients]
        self.both = np.concatenate([self.cells, fourier.mirror[coefficients]])
        self.count = np.bincount(self.both, minlength=int(np.prod(self.shape))).astype(float)
        support = self._filter((self.count > 0).astype(float).reshape(self.shape))
        self.support = np.maximum(support.reshape(-1)[self.cells], 1e-12)
        self.count = np.maximum(self.count, 1.0)

    def __call__(self, values: np.ndarray) -> np.ndarray:
        total = np.bincount(self.both, weights=np.concatenate([values, values]), minlength=len(self.count))
        mean = self._filter((total / self.count).reshape(self.shape))
        return mean.reshape(-1)[self.cells] / self.support

    def _filter(self, values: np.ndarray) -> np.ndarray:
        """A periodic Gaussian filter over the frequency plane. Its sums are those of
        scipy.ndimage.gaussian_filter(mode="wrap"), in the same order, so its results are the same
        to the bit (tests/test_linear_model.py; the logged trials depend on them), without importing
        scipy.ndimage for it, a tenth of a second of every run's start-up."""
        radius, weights = self.radius, self.weights
        for axis in range(1, values.ndim):
            n = values.shape[axis]
            padded = np.take(values, self.wrap[axis - 1], axis=axis)

            def shifted(by: int) -> np.ndarray:  # values[(i + by) % n] along the axis, a view
                return padded[(slice(None),) * axis + (slice(radius + by, radius + by + n),)]

            filtered = values * weights[radius]
            for offset in range(radius, 0, -1):
                filtered += (shifted(-offset) + shifted(offset)) * weights[radius - offset]
            values = filtered
        return values
