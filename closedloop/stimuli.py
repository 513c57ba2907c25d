"""Stimulus families the fixed-set protocols draw from: gratings, tones and noise.

Every generator works from a neuron's `stimulus_shape`: (H, W) or (C, H, W) images, (L,) sound
waveforms. Patterns are made as zero-mean deviations of unit RMS, then `to_neuron_range` maps
them into the neuron's input range (around its mid value, clipped), or scales them by the
contrast for neurons that take luminance deviations (value_range None).
"""

from __future__ import annotations

import numpy as np

NOISE_KINDS = ("white", "pink", "tv")
# static named by its colour -> (noise kind, alpha) for `noise`: an image's amplitude spectrum 1/f^alpha
STATIC_COLOURS = {"white": ("white", None), "pink": ("pink", 1.0), "brown": ("pink", 2.0)}


def image_size(shape) -> tuple[int, int, int]:
    """(channels, height, width) of an image stimulus shape (H, W) or (C, H, W)."""
    if len(shape) == 2:
        return 1, shape[0], shape[1]
    if len(shape) == 3:
        return shape[0], shape[1], shape[2]
    raise ValueError(f"an image protocol needs stimuli of shape (H, W) or (C, H, W), the neuron takes {tuple(shape)}")


def to_neuron_range(patterns: np.ndarray, neuron, contrast: float) -> np.ndarray:
    """Unit-RMS deviations -> stimuli the neuron accepts, with RMS `contrast` of its range."""
    value_range = neuron.value_range
    if value_range is None:
        return patterns * contrast
    lo, hi = value_range
    return np.clip((lo + hi) / 2 + patterns * contrast * (hi - lo), lo, hi)


def grating(shape, orientation: float, spatial_frequency: float, phase: float,
            envelope_sigma: float | None = None) -> np.ndarray:
    """A sinusoidal grating of unit RMS (full field); angles in degrees, frequency in cycles/pixel.

    Orientation is that of the wave vector and phase is relative to the image centre, as in
    closedloop.neurons.front_ends.base.gabor, so a grating matched to a Gabor shares its numbers."""
    channels, height, width = image_size(shape)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    cy, cx = (height - 1) / 2, (width - 1) / 2
    theta = np.deg2rad(orientation)
    along = (x - cx) * np.cos(theta) + (y - cy) * np.sin(theta)
    image = np.sqrt(2) * np.cos(2 * np.pi * spatial_frequency * along + np.deg2rad(phase))
    if envelope_sigma is not None:
        image *= np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * envelope_sigma**2))
    return np.broadcast_to(image, (channels, height, width)).reshape(shape).copy()


def tone(n_samples: int, sample_rate: int, frequency: float, level_db: float, ramp_ms: float = 10.0) -> np.ndarray:
    """A pure tone at `level_db` dB re full scale (peak), with raised-cosine on/off ramps."""
    t = np.arange(n_samples) / sample_rate
    wave = 10 ** (level_db / 20) * np.sin(2 * np.pi * frequency * t)
    ramp = min(int(ramp_ms * sample_rate / 1000), n_samples // 2)
    if ramp > 0:
        edge = 0.5 - 0.5 * np.cos(np.pi * np.arange(ramp) / ramp)
        wave[:ramp] *= edge
        wave[n_samples - ramp:] *= edge[::-1]
    return wave


def tones_to_range(waves: np.ndarray, neuron) -> np.ndarray:
    """Full-scale waveforms -> the neuron's range (full scale = half the range)."""
    value_range = neuron.value_range
    if value_range is None:
        return waves
    lo, hi = value_range
    return np.clip((lo + hi) / 2 + waves * (hi - lo) / 2, lo, hi)


def noise_amplitude(shape, kind: str, alpha: float | None = None) -> np.ndarray | None:
    """Fourier amplitude (of rfftn over the spatial/temporal axes) that colours white noise,
    normalised so that the coloured noise keeps unit variance; None for white and TV static."""
    if kind in ("white", "tv"):
        return None
    if kind != "pink":
        raise ValueError(f"unknown noise {kind!r} (one of: {', '.join(NOISE_KINDS)})")
    if len(shape) == 1:
        alpha = 0.5 if alpha is None else alpha  # pink sound: power 1/f
        radius = np.abs(np.fft.rfftfreq(shape[0]))
    else:
        alpha = 1.0 if alpha is None else alpha  # pink image: amplitude 1/f, like natural scenes
        _, height, width = image_size(shape)
        radius = np.hypot(*np.meshgrid(np.fft.fftfreq(height), np.fft.rfftfreq(width), indexing="ij"))
    amplitude = np.zeros_like(radius)
    amplitude[radius > 0] = radius[radius > 0] ** -alpha
    # irfftn of unit white noise filtered by A has variance mean(A^2) over the full spectrum
    full = _full_spectrum_power(amplitude**2, shape)
    return amplitude / np.sqrt(full)


def _full_spectrum_power(power_half: np.ndarray, shape) -> float:
    last = shape[-1]
    weights = np.full(power_half.shape[-1], 2.0)
    weights[0] = 1.0
    if last % 2 == 0:
        weights[-1] = 1.0
    return float((power_half * weights).sum() / last / int(np.prod(power_half.shape[:-1])))


def noise(rng: np.random.Generator, n: int, shape, kind: str, alpha: float | None = None) -> np.ndarray:
    """n noise stimuli of unit pixel (or sample) variance.

    white: independent Gaussian values; pink: Gaussian noise with a 1/f^alpha amplitude spectrum
    (still Gaussian, so the stimulus distribution is known exactly); tv: "TV static", independent
    +-1 values per pixel and per colour channel (coloured static for RGB neurons)."""
    shape = tuple(shape)
    if kind == "tv":
        return rng.choice(np.array([-1.0, 1.0]), size=(n, *shape))
    white = rng.standard_normal((n, *shape))
    amplitude = noise_amplitude(shape, kind, alpha)
    if amplitude is None:
        return white
    axes = (-1,) if len(shape) == 1 else (-2, -1)
    spatial = shape if len(shape) == 1 else shape[-2:]
    spectrum = np.fft.rfftn(white, axes=axes) * amplitude
    return np.fft.irfftn(spectrum, s=spatial, axes=axes)
