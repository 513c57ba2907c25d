"""Stimuli near a source picture or recording: the space a dream searches (experiments/dream.py).

A latent vector sets a change that is added to the source: gratings (pictures) or sinusoids
(recordings, from a lowest frequency: below hearing, a network may still hear a slow drift) up to a
highest frequency, their amplitudes scaled by 1/f^alpha, so that a draw from
the prior (z ~ N(0, I)) is 1/f^alpha noise of RMS `distance`. A change whose RMS exceeds
`distance` is scaled down to it, and the sum is clipped into the neuron's input range, so no
rendered stimulus is further than `distance` (RMS) from the source: z = 0 is the source itself.

The band of frequencies that may change can be narrowed (`set_band`): DeepDream's octaves
become a coarse-to-fine schedule for a unit whose input has one fixed size. Latents keep their
layout whatever the band; coefficients above it are ignored by `render` and zero in `sample`
and `encode`.

It is built by the dream experiment around its source, so it is no protocol kind of its own.
"""

from __future__ import annotations

import numpy as np
import torch

from closedloop.spaces.base import StimulusSpace
from closedloop.spaces.images import fourier_basis


class NearSource(StimulusSpace):
    kind = "near_source"
    can_encode = True
    differentiable = True

    def __init__(self, source: np.ndarray, *, distance: float, max_frequency: float, alpha: float,
                 modality: str, value_range, sample_rate: int | None = None, min_frequency: float = 0.0):
        super().__init__(None, 0)
        self.source = np.asarray(source, dtype=np.float64)
        self.centre = self.source
        self.stimulus_shape = self.source.shape
        self.distance, self.alpha, self.modality = float(distance), float(alpha), modality
        self.value_range = None if value_range is None else tuple(float(v) for v in value_range)
        self.sample_rate = sample_rate
        if modality == "audio":
            self._audio_basis(min_frequency, max_frequency)
        else:
            self._image_basis(max_frequency)
        # a prior draw renders a change of RMS `distance` (E|change|^2 = sum of squared amplitudes)
        self.dim = self.channels * len(self.frequencies)
        typical = np.sqrt(self.channels * np.sum(self.amplitudes**2) / self.source.size)
        self.gain = self.distance / typical
        self.max_frequency = float(self.frequencies.max())
        self.set_band(self.max_frequency)
        self._source_torch = torch.as_tensor(self.source)

    # --- the change's basis ------------------------------------------------------------------

    def _image_basis(self, max_frequency: float) -> None:
        """Unit-norm gratings per channel (cycles/pixel), plus a flat one where the image has a
        range (a brightness or tint change); 1/f^alpha amplitudes."""
        shape = self.stimulus_shape
        if len(shape) not in (2, 3) or shape[-1] != shape[-2]:
            raise ValueError(f"a picture's change needs square images; the neuron takes {tuple(shape)}")
        size = shape[-1]
        self.channels = 1 if len(shape) == 2 else shape[0]
        lowest = 1.0 / size
        if max_frequency < lowest:
            raise ValueError(f"max_frequency: {max_frequency:g} cycles/pixel is below the lowest grating of a "
                             f"{size}-pixel picture (1/{size} = {lowest:.3g}): nothing could change")
        gratings, frequencies = fourier_basis(size, 0.0, max_frequency)
        if self.value_range is not None:
            gratings = np.concatenate([np.full((1, size * size), 1.0 / size), gratings])
            frequencies = np.concatenate([[0.0], frequencies])
        self.basis = gratings
        self.frequencies = frequencies
        self.amplitudes = np.maximum(frequencies, lowest) ** -self.alpha

    def _audio_basis(self, min_frequency: float, max_frequency: float) -> None:
        """A cosine and a sine at every frequency of the FFT grid of the sound (1 / duration apart)
        from min_frequency to max_frequency (cycles/sample), below Nyquist; 1/f^alpha amplitudes,
        flat below min_frequency's."""
        n = self.stimulus_shape[-1]
        bins = np.arange(1, (n - 1) // 2 + 1)
        bins = bins[(bins / n >= min_frequency - 1e-12) & (bins / n <= max_frequency + 1e-12)]
        if not len(bins):
            rate = self.sample_rate or 1
            raise ValueError(f"f_min, f_max: no frequency of a {n}-sample sound lies between {min_frequency * rate:g} "
                             f"and {max_frequency * rate:g} Hz (f_min is 60 Hz unless given)")
        self.channels = 1
        self.bins = bins
        self.frequencies = np.repeat(bins / n, 2)  # (cosine, sine) per bin
        self.amplitudes = np.maximum(self.frequencies, max(min_frequency, 1.0 / n)) ** -self.alpha

    def set_band(self, highest: float) -> None:
        """Only frequencies up to `highest` (cycles per pixel or per sample) may change from now on."""
        self.band = float(highest)
        active = self.frequencies <= self.band + 1e-12
        self.active = np.tile(active, self.channels)
        self._weights = torch.as_tensor(np.tile(self.amplitudes * active, self.channels) * self.gain)

    # --- the StimulusSpace role ----------------------------------------------------------------

    def change_torch(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, *shape) change, before the distance bound."""
        coefficients = z * self._weights.to(z.dtype)
        if self.modality == "audio":
            n = self.stimulus_shape[-1]
            spectrum = torch.zeros(len(z), n // 2 + 1, dtype=torch.complex128 if z.dtype == torch.float64
                                   else torch.complex64)
            pairs = coefficients.reshape(len(z), -1, 2)
            # ortho irfft of (a - ib) / sqrt(2) at bin k is a unit-norm cosine times a plus sine times b
            spectrum[:, torch.as_tensor(self.bins)] = torch.complex(pairs[..., 0], -pairs[..., 1]) / np.sqrt(2)
            return torch.fft.irfft(spectrum, n=n, norm="ortho")
        per_channel = coefficients.reshape(len(z), self.channels, -1)
        images = per_channel @ torch.as_tensor(self.basis, dtype=z.dtype)
        return images.reshape(len(z), *self.stimulus_shape)

    def render_torch(self, z: torch.Tensor) -> torch.Tensor:
        change = self.change_torch(z)
        # clamped before the root, whose slope at 0 is infinite: the source itself has a gradient
        rms = change.reshape(len(change), -1).pow(2).mean(dim=1).clamp_min(1e-24).sqrt()
        shrink = (self.distance / rms).clamp(max=1.0)
        stimuli = self._source_torch.to(z.dtype) + change * shrink.reshape(-1, *([1] * (change.ndim - 1)))
        if self.value_range is not None:
            stimuli = stimuli.clamp(*self.value_range)
        return stimuli

    def render(self, z):
        z = torch.as_tensor(np.asarray(z, dtype=np.float64)).reshape(-1, self.dim)
        with torch.no_grad():
            return self.render_torch(z).numpy()

    def sample(self, rng, n):
        return rng.standard_normal((n, self.dim)) * self.active

    def encode(self, stimuli):
        """The latent of each stimulus' difference from the source, within the band (the inverse
        of `render` for a change inside the distance bound and the range)."""
        change = np.asarray(stimuli, dtype=np.float64).reshape(-1, *self.stimulus_shape) - self.source
        weights = self._weights.numpy()
        if self.modality == "audio":
            n = self.stimulus_shape[-1]
            spectrum = np.fft.rfft(change, n=n, norm="ortho")[:, self.bins] * np.sqrt(2)
            coefficients = np.stack([spectrum.real, -spectrum.imag], axis=-1).reshape(len(change), -1)
        else:
            flat = change.reshape(len(change), self.channels, -1)
            coefficients = (flat @ self.basis.T).reshape(len(change), -1)
        return np.divide(coefficients, weights, out=np.zeros_like(coefficients), where=weights != 0)

    def distances(self, stimuli) -> np.ndarray:
        """RMS difference of each stimulus from the source."""
        change = np.asarray(stimuli, dtype=np.float64).reshape(-1, self.source.size) - self.source.ravel()
        return np.sqrt(np.mean(change**2, axis=1))

    def describe(self) -> dict:
        return {"kind": self.kind, "distance": self.distance, "max_frequency": self.max_frequency,
                "alpha": self.alpha, "dim": self.dim, "modality": self.modality,
                "value_range": None if self.value_range is None else list(self.value_range)}
