"""Auditory cell: a spectro-temporal receptive field weighting the power spectrogram (Hann frames,
half overlap) of a waveform (n_samples,). The drive is a quadratic form of the waveform, so the
optimum under an RMS bound is its top eigenvector (found by power iteration)."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.front_ends.base import FrontEnd
from closedloop.registry import register


class STRFSettings(Settings):
    kind: Literal["strf"] = "strf"
    sample_rate: int = Field(16000, ge=1000, le=192_000, description="Hz of the input waveform")
    duration: float = Field(0.25, gt=0, le=5, description="stimulus length, s (n_samples = duration * sample_rate)")
    best_frequency: float = Field(1000.0, gt=0, le=96_000, description="Hz")
    bandwidth: float = Field(0.5, gt=0, le=10, description="spectral Gaussian sigma, octaves")
    spectral_modulation: float = Field(0.5, ge=0, le=10, description="cycles per octave (inhibitory side bands)")
    latency: float | None = Field(None, ge=0, le=5, description="temporal centre of the STRF, s; default mid-stimulus")
    temporal_sigma: float = Field(0.05, gt=0, le=5, description="s")
    temporal_modulation: float = Field(0.0, ge=0, le=1000, description="Hz; 0 gives a steady preferred sound")
    window: int = Field(256, ge=16, le=65_536, description="spectrogram frame, samples (16 ms at 16 kHz)")


@register("front_end", "strf")
class AuditoryCell(FrontEnd):
    Config = STRFSettings
    modality = "audio"

    def __init__(self, config: STRFSettings, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed, size=size, reference_contrast=reference_contrast)
        cfg = config
        self.sample_rate = cfg.sample_rate
        n = int(round(cfg.duration * cfg.sample_rate))
        if n < cfg.window:
            raise ValueError(f"front_end: duration {cfg.duration} s is shorter than one {cfg.window}-sample frame")
        self.stimulus_shape = (n,)
        self.hop = cfg.window // 2
        frequencies = np.fft.rfftfreq(cfg.window, 1.0 / cfg.sample_rate)
        times = (np.arange((n - cfg.window) // self.hop + 1) * self.hop + cfg.window / 2) / cfg.sample_rate
        octaves = np.log2(np.maximum(frequencies, 1.0) / cfg.best_frequency)[:, None]
        t0 = cfg.latency if cfg.latency is not None else cfg.duration / 2
        lag = (times - t0)[None, :]
        strf = (np.exp(-octaves**2 / (2 * cfg.bandwidth**2)) * np.exp(-lag**2 / (2 * cfg.temporal_sigma**2))
                * np.cos(2 * np.pi * (cfg.spectral_modulation * octaves + cfg.temporal_modulation * lag)))
        strf[frequencies <= 0] = 0.0
        self.receptive_field = strf / np.abs(strf).sum()  # (frequencies, frames)
        self.frequencies, self.times = frequencies, times
        self._best = self._top_eigenvector(seed)
        self._scale = float(self._energy(self._best[None])[0])

    def spectrogram(self, stimuli: np.ndarray) -> np.ndarray:
        """Power spectrogram (n, frequencies, frames) with scipy's STFT."""
        from scipy.signal import stft

        _, _, z = stft(np.asarray(stimuli, dtype=np.float64), fs=self.sample_rate, window="hann",
                       nperseg=self.config.window, noverlap=self.config.window - self.hop, boundary=None,
                       padded=False, detrend=False, axis=-1)
        return np.abs(z) ** 2

    def _energy(self, stimuli):
        return np.einsum("nft,ft->n", self.spectrogram(stimuli), self.receptive_field)

    def _apply_form(self, x: np.ndarray) -> np.ndarray:
        """Q x for the quadratic form x'Qx = sum_ft H |X_ft|^2 (up to scipy's constant scale)."""
        w = self.config.window
        window = np.hanning(w + 1)[:-1]  # periodic Hann, as scipy's get_window("hann")
        starts = np.arange(self.receptive_field.shape[1]) * self.hop
        frames = x[starts[:, None] + np.arange(w)] * window
        spectrum = np.fft.rfft(frames, axis=1) * self.receptive_field.T
        full = np.zeros((len(starts), w), dtype=complex)
        full[:, : spectrum.shape[1]] = spectrum
        back = np.real(np.fft.ifft(full, axis=1)) * w * window
        out = np.zeros_like(x)
        np.add.at(out, starts[:, None] + np.arange(w), back)
        return out

    def _top_eigenvector(self, seed: int) -> np.ndarray:
        """Largest-eigenvalue eigenvector of the (symmetric) form, at the reference RMS."""
        rng = np.random.default_rng(seed)
        x = rng.standard_normal(self.stimulus_shape[0])
        shift = 2 * np.abs(self.receptive_field).max() * self.config.window  # makes Q + shift positive definite
        for _ in range(300):
            y = self._apply_form(x) + shift * x
            x = y / np.linalg.norm(y)
        return x * self.contrast * np.sqrt(x.size) / np.linalg.norm(x)

    def drive(self, stimuli):
        return np.maximum(self._energy(stimuli), 0.0) / self._scale

    def optimum(self):
        return self._best
