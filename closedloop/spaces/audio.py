"""Audio spaces: latent vectors -> 16 kHz mono waveforms that never clip.

Every space renders (n, dim) latents to (n, n_samples) float waveforms, then applies the same
finish: raised-cosine fade in and out (the first and last samples are exactly 0, so there is no
click), a fixed RMS loudness, and a scale-down of any waveform whose peak would exceed `peak`.
So every sound has RMS <= `loudness` and |x| <= `peak`; a silent latent stays silent.

- waveform:    sinusoids on a frequency grid in a band, amplitudes scaled by 1/f^alpha
- harmonic:    f0 (log scale, optional glide), harmonic amplitudes, an amplitude envelope
- spectrogram: a coarse time x log-frequency magnitude grid, phase by Griffin-Lim
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator
from scipy.signal import istft, stft

from closedloop.component import Settings
from closedloop.registry import register
from closedloop.spaces.base import StimulusSpace

SAMPLE_RATE = 16000
NYQUIST = SAMPLE_RATE / 2


class AudioSettings(Settings):
    duration: float = Field(0.5, ge=0.064, le=10, description="length of every sound, s")
    loudness: float = Field(0.1, gt=0, le=0.5, description="RMS of every rendered sound (full scale = 1)")
    peak: float = Field(0.9, gt=0, le=1, description="no sample exceeds this magnitude")
    fade: float = Field(0.01, ge=0.001, le=0.25, description="raised-cosine fade in and out, s")
    f_min: float = Field(60.0, gt=0, lt=NYQUIST, description="lowest frequency in the sound, Hz")
    f_max: float = Field(4000.0, gt=0, le=NYQUIST, description="highest frequency in the sound, Hz")

    @model_validator(mode="after")
    def _band(self):
        if self.f_min >= self.f_max:
            raise ValueError(f"f_min ({self.f_min} Hz) must be below f_max ({self.f_max} Hz)")
        if 2 * self.fade >= self.duration:
            raise ValueError(f"fade ({self.fade} s) must be shorter than half the duration ({self.duration} s)")
        return self


def fade_window(n_samples: int, fade_samples: int) -> np.ndarray:
    """1 in the middle, raised-cosine ramps from exactly 0 at both ends."""
    window = np.ones(n_samples)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(fade_samples) / fade_samples)
    window[:fade_samples] = ramp
    window[n_samples - fade_samples:] = ramp[::-1]
    return window


def finish(waves: np.ndarray, fade: np.ndarray, loudness: float, peak: float) -> np.ndarray:
    """Fade, set the RMS to `loudness`, then scale down anything whose peak exceeds `peak`."""
    waves = waves * fade
    waves = waves - fade * (waves.sum(axis=1, keepdims=True) / fade.sum())  # no DC, ends stay 0
    rms = np.sqrt(np.mean(waves**2, axis=1, keepdims=True))
    waves = np.divide(waves * loudness, rms, out=np.zeros_like(waves), where=rms > 1e-12)
    top = np.abs(waves).max(axis=1, keepdims=True)
    return np.where(top > peak, waves * (peak / np.maximum(top, 1e-12)), waves)


def finish_torch(waves: torch.Tensor, fade: torch.Tensor, loudness: float, peak: float) -> torch.Tensor:
    """`finish` on tensors, differentiable (for white-box optimizers)."""
    waves = waves * fade
    waves = waves - fade * (waves.sum(dim=1, keepdim=True) / fade.sum())
    rms = waves.pow(2).mean(dim=1, keepdim=True).sqrt()
    waves = waves * (loudness / rms.clamp_min(1e-12)) * (rms > 1e-12)
    top = waves.abs().amax(dim=1, keepdim=True)
    return torch.where(top > peak, waves * (peak / top.clamp_min(1e-12)), waves)


class AudioSpace(StimulusSpace):
    modality = "audio"
    sample_rate = SAMPLE_RATE

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.n_samples = int(round(config.duration * SAMPLE_RATE))
        self.stimulus_shape = (self.n_samples,)
        self.time = np.arange(self.n_samples) / SAMPLE_RATE
        self.fade = fade_window(self.n_samples, int(round(config.fade * SAMPLE_RATE)))

    def render(self, z):
        z = np.asarray(z, dtype=np.float64)
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"space {self.kind}: expected latents of shape (n, {self.dim}), got {z.shape}")
        waves = self.synthesize(z)
        return finish(waves, self.fade, self.config.loudness, self.config.peak)

    def synthesize(self, z: np.ndarray) -> np.ndarray:
        """(n, dim) -> (n, n_samples) raw waveforms, before fade and loudness."""
        raise NotImplementedError


class DifferentiableAudioSpace(AudioSpace):
    """A space whose rendering is written in torch, so white-box optimizers can ascend through it."""

    differentiable = True

    def synthesize_torch(self, z: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def synthesize(self, z):
        with torch.no_grad():
            return self.synthesize_torch(torch.as_tensor(z, dtype=torch.float64)).numpy()

    def parameters_torch(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def parameters(self, z: np.ndarray) -> dict[str, np.ndarray]:
        """The sounds' named synthesis parameters (f0 points in Hz, amplitudes, ...), from parameters_torch."""
        with torch.no_grad():
            params = self.parameters_torch(torch.as_tensor(np.asarray(z, dtype=np.float64)))
        return {name: value.numpy() for name, value in params.items()}

    def render_torch(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) tensor -> (n, n_samples) tensor, differentiable; equal to render."""
        fade = torch.as_tensor(self.fade, dtype=z.dtype)
        return finish_torch(self.synthesize_torch(z), fade, self.config.loudness, self.config.peak)


class WaveformSettings(AudioSettings):
    resolution: float = Field(10.0, ge=1, le=1000, description="spacing of the frequency grid, Hz")
    alpha: float = Field(1.0, ge=0, le=3, description="amplitude scale 1/f^alpha; 0 gives white noise")


@register("space", "waveform")
class WaveformSpace(DifferentiableAudioSpace):
    """A cosine and a sine at every grid frequency in [f_min, f_max], scaled by 1/f^alpha.

    An isotropic latent renders as coloured noise ("pink" for alpha=1) with the spectral prior;
    the grid spacing sets the dimension (2 per frequency) and the sound repeats every
    1/resolution seconds, which is what keeps the search affordable.
    """

    can_encode = True
    Config = WaveformSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        first = np.ceil(config.f_min / config.resolution)
        last = np.floor(min(config.f_max, NYQUIST - 1e-9) / config.resolution)
        if last < first:
            raise ValueError(f"no multiple of resolution {config.resolution} Hz lies in [{config.f_min}, {config.f_max}] Hz")
        self.frequencies = np.arange(first, last + 1) * config.resolution
        phase = 2 * np.pi * self.frequencies[:, None] * self.time[None, :]
        scale = (self.frequencies / self.frequencies[0]) ** -config.alpha
        self.basis = np.concatenate([np.cos(phase), np.sin(phase)]) * np.concatenate([scale, scale])[:, None]
        self.dim = len(self.basis)

    def synthesize(self, z):
        return z @ self.basis

    def synthesize_torch(self, z):
        return z @ torch.as_tensor(self.basis, dtype=z.dtype)

    def encode(self, stimuli):
        solution, *_ = np.linalg.lstsq(self.basis.T, np.asarray(stimuli, dtype=np.float64).T, rcond=None)
        return solution.T


class HarmonicSettings(AudioSettings):
    f_min: float = Field(60.0, gt=0, lt=NYQUIST, description="lowest fundamental and lowest partial, Hz")
    f0_max: float = Field(1000.0, gt=0, lt=NYQUIST, description="highest fundamental, Hz")
    harmonics: int = Field(12, ge=1, le=64, description="number of harmonics (the fundamental is the first)")
    rolloff: float = Field(1.0, ge=0, le=4, description="prior amplitude of harmonic k is k^-rolloff")
    spread: float = Field(1.0, gt=0, le=5, description="log-amplitude change per unit of a harmonic's latent")
    pitch_points: int = Field(1, ge=1, le=16, description="f0 contour points over the sound (1 = steady pitch)")
    envelope_points: int = Field(4, ge=1, le=32, description="amplitude envelope points over the sound")

    @model_validator(mode="after")
    def _f0_range(self):
        if self.f0_max <= self.f_min:
            raise ValueError(f"f0_max ({self.f0_max} Hz) must be above f_min ({self.f_min} Hz)")
        return self


@register("space", "harmonic")
class HarmonicSpace(DifferentiableAudioSpace):
    """A harmonic tone: latent = [f0 contour | harmonic log-amplitudes | amplitude envelope].

    f0 latents map through the normal CDF onto a log-frequency range [f_min, f0_max], so the
    standard-normal prior is uniform over pitch in octaves; each harmonic's amplitude is
    k^-rolloff * exp(spread * z_k); envelope points map through the normal CDF onto (0, 1).
    Partials above f_max fade out smoothly instead of aliasing.
    """

    Config = HarmonicSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.dim = config.pitch_points + config.harmonics + config.envelope_points
        self.order = np.arange(1, config.harmonics + 1)
        self.pitch_weights = contour_weights(config.pitch_points, self.n_samples)
        self.envelope_weights = contour_weights(config.envelope_points, self.n_samples)

    def parameters_torch(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        c = self.config
        p, h = c.pitch_points, c.harmonics
        order = torch.as_tensor(self.order, dtype=z.dtype)
        return {
            "f0": log_range(torch.special.ndtr(z[:, :p]), c.f_min, c.f0_max),
            "amplitudes": order ** -c.rolloff * torch.exp(torch.clamp(c.spread * z[:, p:p + h], -30, 30)),
            "envelope": torch.special.ndtr(z[:, p + h:]),
        }

    def synthesize_torch(self, z):
        c = self.config
        params = self.parameters_torch(z)
        f0 = params["f0"] @ torch.as_tensor(self.pitch_weights, dtype=z.dtype)
        phase = 2 * np.pi * torch.cumsum(f0, dim=1) / SAMPLE_RATE
        waves = torch.zeros_like(f0)
        for k, amplitude in zip(self.order, params["amplitudes"].T):
            gain = partial_gain(k * f0, c.f_max)
            if not bool((gain > 0).any()):
                break
            waves = waves + amplitude[:, None] * gain * torch.sin(k * phase)
        return waves * (params["envelope"] @ torch.as_tensor(self.envelope_weights, dtype=z.dtype))


class SpectrogramSettings(AudioSettings):
    time_bins: int = Field(8, ge=1, le=128, description="coarse grid: time steps over the sound")
    frequency_bins: int = Field(24, ge=2, le=256, description="coarse grid: log-spaced frequencies in the band")
    spread: float = Field(1.5, gt=0, le=10, description="log-magnitude change per unit of a grid latent")
    alpha: float = Field(1.0, ge=0, le=3, description="prior magnitude scale 1/f^alpha")
    n_fft: int = Field(512, ge=64, le=4096, description="STFT window length, samples")
    iterations: int = Field(16, ge=0, le=500, description="Griffin-Lim iterations")


def griffin_lim(magnitude: np.ndarray, n_fft: int, hop: int, n_samples: int, iterations: int,
                phase: np.ndarray, momentum: float = 0.99) -> np.ndarray:
    """Waveforms whose STFT magnitude approaches `magnitude` ((n, freqs, frames)): alternate
    between consistent spectrograms (istft then stft) and the target magnitude (Griffin & Lim
    1984), with the momentum of the "fast" variant (Perraudin et al. 2013) from a given phase."""
    overlap = n_fft - hop
    spec = magnitude * np.exp(1j * phase)
    previous = spec
    for _ in range(iterations):
        _, waves = istft(spec, fs=SAMPLE_RATE, nperseg=n_fft, noverlap=overlap, boundary=True)
        _, _, consistent = stft(fit_length(waves, n_samples), fs=SAMPLE_RATE, nperseg=n_fft, noverlap=overlap,
                                boundary="zeros", padded=True)
        consistent = consistent[..., :magnitude.shape[-1]]
        accelerated = consistent + momentum * (consistent - previous)
        previous = consistent
        spec = magnitude * accelerated / np.maximum(np.abs(accelerated), 1e-12)
    _, waves = istft(spec, fs=SAMPLE_RATE, nperseg=n_fft, noverlap=overlap, boundary=True)
    return fit_length(waves, n_samples)


def fit_length(waves: np.ndarray, n_samples: int) -> np.ndarray:
    if waves.shape[-1] >= n_samples:
        return waves[..., :n_samples]
    return np.pad(waves, [(0, 0)] * (waves.ndim - 1) + [(0, n_samples - waves.shape[-1])])


def stft_magnitude(waves: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    _, _, spec = stft(waves, fs=SAMPLE_RATE, nperseg=n_fft, noverlap=n_fft - hop, boundary="zeros", padded=True)
    return np.abs(spec)


def spectral_convergence(target: np.ndarray, estimate: np.ndarray) -> float:
    """||target - estimate||_F / ||target||_F over STFT magnitudes (0 = perfect)."""
    return float(np.linalg.norm(target - estimate) / np.linalg.norm(target))


@register("space", "spectrogram")
class SpectrogramSpace(AudioSpace):
    """A time x log-frequency grid of log-magnitudes, upsampled to the STFT grid; the phase comes
    from Griffin-Lim started from a fixed random phase (drawn from the space's seed, so rendering
    is deterministic). The latent at (time i, frequency j) is z[i * frequency_bins + j]."""

    Config = SpectrogramSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        c = config
        if c.n_fft > self.n_samples:
            raise ValueError(f"n_fft ({c.n_fft}) is longer than the sound ({self.n_samples} samples)")
        self.hop = c.n_fft // 4
        self.dim = c.time_bins * c.frequency_bins
        self.grid_frequencies = np.geomspace(c.f_min, c.f_max, c.frequency_bins)
        self.stft_frequencies = np.fft.rfftfreq(c.n_fft, 1 / SAMPLE_RATE)
        n_frames = stft_magnitude(np.zeros((1, self.n_samples)), c.n_fft, self.hop).shape[-1]
        # interpolation matrices from the coarse grid to STFT bins (log frequency) and frames (time)
        log_f = np.log(np.maximum(self.stft_frequencies, 1.0))
        self.freq_weights = _interp_matrix(np.log(self.grid_frequencies), log_f)
        in_band = (self.stft_frequencies >= c.f_min) & (self.stft_frequencies <= c.f_max)
        self.freq_weights[~in_band] = 0
        self.time_weights = _interp_matrix(np.linspace(0, 1, c.time_bins), np.linspace(0, 1, n_frames))
        self.prior = np.where(in_band, np.maximum(self.stft_frequencies, c.f_min) ** -c.alpha, 0.0)
        self.initial_phase = self.rng(0).uniform(-np.pi, np.pi, (len(self.stft_frequencies), n_frames))

    def magnitude(self, z: np.ndarray) -> np.ndarray:
        """(n, dim) -> (n, stft frequencies, frames) target magnitudes."""
        c = self.config
        grid = np.clip(c.spread * np.asarray(z, dtype=np.float64), -30, 30).reshape(len(z), c.time_bins, c.frequency_bins)
        log_mag = self.time_weights @ grid @ self.freq_weights.T  # (n, frames, stft frequencies)
        return np.exp(log_mag).transpose(0, 2, 1) * self.prior[None, :, None]

    def synthesize(self, z):
        c = self.config
        return griffin_lim(self.magnitude(z), c.n_fft, self.hop, self.n_samples, c.iterations, self.initial_phase)


def contour_weights(points: int, n_samples: int) -> np.ndarray:
    """(points, samples): a contour over the sound, linear between `points` evenly spaced values."""
    return _interp_matrix(np.linspace(0, 1, points), np.linspace(0, 1, n_samples)).T


def log_range(unit: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Values in [0, 1] onto [low, high], evenly on a log scale (octaves, for frequencies)."""
    return torch.exp(np.log(low) + (np.log(high) - np.log(low)) * unit)


def partial_gain(frequency: torch.Tensor, f_max: float) -> torch.Tensor:
    """Full level up to 0.8 f_max, fading to zero at f_max: partials never alias."""
    return torch.clamp((f_max - frequency) / (0.2 * f_max), 0, 1)


def _interp_matrix(points: np.ndarray, at: np.ndarray) -> np.ndarray:
    """(len(at), len(points)) weights of linear interpolation (constant beyond the ends)."""
    weights = np.zeros((len(at), len(points)))
    if len(points) == 1:
        weights[:, 0] = 1
        return weights
    right = np.clip(np.searchsorted(points, at), 1, len(points) - 1)
    left = right - 1
    fraction = np.clip((at - points[left]) / (points[right] - points[left]), 0, 1)
    weights[np.arange(len(at)), left] = 1 - fraction
    weights[np.arange(len(at)), right] += fraction
    return weights
