"""Receptive-field front ends: stimulus -> non-negative drive, 1.0 for the optimum stimulus shown
at the reference RMS contrast. Each keeps its ground truth (receptive field, optimum) for analysis.

    gabor    V1 simple cell: rectified projection on a Gabor. Optimum: the Gabor itself.
    complex  V1 complex cell, energy model: sum of squares of a quadrature pair of Gabors; phase
             invariant. Optimum: any unit vector in the pair's span (e.g. the even Gabor).
    dog      retinal/LGN centre-surround: rectified projection on a difference of Gaussians (made
             zero-mean, since every stimulus is). Optimum: that zero-mean DoG.
    strf     auditory cell: a spectro-temporal receptive field weighting the power spectrogram of
             a 16 kHz waveform (n_samples,). The drive is a quadratic form of the waveform, so the
             optimum under an RMS bound is its top eigenvector (found by power iteration).
    dnn      a unit of a deep network (closedloop/neurons/dnn.py) read out through the spiking cell.

Add a front end: a Settings class with a `kind` literal, a class with `drive(stimuli)`, and one
entry in `FRONT_ENDS` and in `FrontEndSettings`, the union the protocol validates by `kind`.
"""

from __future__ import annotations

from typing import Any, Literal, Union

import numpy as np
from pydantic import Field

from closedloop.component import Settings


class GaborSettings(Settings):
    kind: Literal["gabor"] = "gabor"
    orientation: float = Field(30.0, description="degrees, of the grating's wave vector")
    spatial_frequency: float = Field(0.15, gt=0, le=0.5, description="cycles per pixel")
    sigma: float = Field(3.0, gt=0, description="Gaussian envelope, pixels")
    phase: float = Field(0.0, description="degrees")
    center: tuple[float, float] | None = Field(None, description="(y, x) in pixels; default the image centre")


class ComplexSettings(GaborSettings):
    kind: Literal["complex"] = "complex"


class DoGSettings(Settings):
    kind: Literal["dog"] = "dog"
    sigma_center: float = Field(1.5, gt=0, description="pixels")
    sigma_surround: float = Field(4.0, gt=0, description="pixels")
    surround_weight: float = Field(0.8, ge=0, description="surround volume relative to the centre's")
    polarity: Literal["on", "off"] = "on"
    center: tuple[float, float] | None = Field(None, description="(y, x) in pixels; default the image centre")


class STRFSettings(Settings):
    kind: Literal["strf"] = "strf"
    sample_rate: int = Field(16000, description="Hz of the input waveform")
    duration: float = Field(0.25, gt=0, le=5, description="stimulus length, s (n_samples = duration * sample_rate)")
    best_frequency: float = Field(1000.0, gt=0, description="Hz")
    bandwidth: float = Field(0.5, gt=0, description="spectral Gaussian sigma, octaves")
    spectral_modulation: float = Field(0.5, ge=0, description="cycles per octave (inhibitory side bands)")
    latency: float | None = Field(None, description="temporal centre of the STRF, s; default mid-stimulus")
    temporal_sigma: float = Field(0.05, gt=0, description="s")
    temporal_modulation: float = Field(0.0, ge=0, description="Hz; 0 gives a steady preferred sound")
    window: int = Field(256, ge=16, description="spectrogram frame, samples (16 ms at 16 kHz)")


class DnnFrontEndSettings(Settings):
    kind: Literal["dnn"] = "dnn"
    unit: dict[str, Any] = Field(description="the `neuron:` section of a `kind: dnn` neuron (without kind)")
    scale: float = Field(gt=0, description="the unit activation that gives drive 1 (input current bias + gain)")


FrontEndSettings = Union[GaborSettings, ComplexSettings, DoGSettings, STRFSettings, DnnFrontEndSettings]


def front_end_settings() -> dict[str, type]:
    """kind -> settings class (the spiking neuron validates `front_end` by its `kind`)."""
    return {cls.model_fields["kind"].default: cls for cls in FrontEndSettings.__args__}


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


def difference_of_gaussians(size: int, sigma_center: float, sigma_surround: float, surround_weight: float,
                            center: tuple[float, float] | None = None) -> np.ndarray:
    """Zero-mean, unit-norm centre-surround field (ON: positive centre)."""
    cy, cx = center if center is not None else ((size - 1) / 2, (size - 1) / 2)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (x - cx) ** 2 + (y - cy) ** 2
    field = (np.exp(-r2 / (2 * sigma_center**2)) / sigma_center**2
             - surround_weight * np.exp(-r2 / (2 * sigma_surround**2)) / sigma_surround**2)
    field -= field.mean()
    return field / np.linalg.norm(field)


def linear_drive(stimuli: np.ndarray, field: np.ndarray, reference_contrast: float) -> np.ndarray:
    """Rectified projection onto a unit-norm field, 1.0 for the field itself shown at the
    reference RMS contrast: the optimum under a fixed-contrast bound."""
    flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
    projection = flat @ field.reshape(-1)
    return np.maximum(projection, 0.0) / (reference_contrast * np.sqrt(field.size))


class FrontEnd:
    modality = "image"
    sample_rate: int | None = None
    value_range: tuple[float, float] | None = None
    receptive_field: np.ndarray | None = None

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


class SimpleCell(FrontEnd):
    def __init__(self, cfg: GaborSettings, size: int, contrast: float, seed: int):
        self.stimulus_shape, self.contrast = (size, size), contrast
        self.receptive_field = gabor(size, cfg.orientation, cfg.spatial_frequency, cfg.sigma, cfg.phase, cfg.center)

    def drive(self, stimuli):
        return linear_drive(stimuli, self.receptive_field, self.contrast)

    def optimum(self):
        return self.receptive_field * self.contrast * np.sqrt(self.receptive_field.size)


class ComplexCell(SimpleCell):
    def __init__(self, cfg: ComplexSettings, size: int, contrast: float, seed: int):
        super().__init__(cfg, size, contrast, seed)
        odd = gabor(size, cfg.orientation, cfg.spatial_frequency, cfg.sigma, cfg.phase + 90.0, cfg.center)
        odd = odd - (odd * self.receptive_field).sum() * self.receptive_field  # exact quadrature partner
        self.quadrature = odd / np.linalg.norm(odd)

    def drive(self, stimuli):
        flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
        even, odd = flat @ self.receptive_field.reshape(-1), flat @ self.quadrature.reshape(-1)
        return (even**2 + odd**2) / (self.contrast**2 * self.receptive_field.size)

    def ground_truth(self):
        return {**super().ground_truth(), "receptive_field_quadrature": self.quadrature}


class CentreSurround(SimpleCell):
    def __init__(self, cfg: DoGSettings, size: int, contrast: float, seed: int):
        self.stimulus_shape, self.contrast = (size, size), contrast
        field = difference_of_gaussians(size, cfg.sigma_center, cfg.sigma_surround, cfg.surround_weight, cfg.center)
        self.receptive_field = field if cfg.polarity == "on" else -field


class AuditoryCell(FrontEnd):
    """STRF on the power spectrogram (Hann frames, half overlap) of a waveform."""

    modality = "audio"

    def __init__(self, cfg: STRFSettings, size: int, contrast: float, seed: int):
        self.cfg, self.contrast, self.sample_rate = cfg, contrast, cfg.sample_rate
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
                       nperseg=self.cfg.window, noverlap=self.cfg.window - self.hop, boundary=None, padded=False,
                       detrend=False, axis=-1)
        return np.abs(z) ** 2

    def _energy(self, stimuli):
        return np.einsum("nft,ft->n", self.spectrogram(stimuli), self.receptive_field)

    def _apply_form(self, x: np.ndarray) -> np.ndarray:
        """Q x for the quadratic form x'Qx = sum_ft H |X_ft|^2 (up to scipy's constant scale)."""
        w = self.cfg.window
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
        shift = 2 * np.abs(self.receptive_field).max() * self.cfg.window  # makes Q + shift positive definite
        for _ in range(300):
            y = self._apply_form(x) + shift * x
            x = y / np.linalg.norm(y)
        return x * self.contrast * np.sqrt(x.size) / np.linalg.norm(x)

    def drive(self, stimuli):
        return np.maximum(self._energy(stimuli), 0.0) / self._scale

    def optimum(self):
        return self._best


class DnnUnit(FrontEnd):
    """A deep-network unit as the front end: its activation (divided by `scale`) drives the cell."""

    def __init__(self, cfg: DnnFrontEndSettings, size: int, contrast: float, seed: int):
        from closedloop.registry import lookup

        try:
            cls = lookup("neuron", "dnn")
        except KeyError:
            raise ValueError("front_end: kind dnn needs the dnn neuron (closedloop/neurons/dnn.py), "
                             "which is not installed") from None
        self.unit = cls(cls.Config.model_validate(cfg.unit), seed)
        self.stimulus_shape = tuple(self.unit.stimulus_shape)
        self.modality = getattr(self.unit, "modality", "image")
        self.sample_rate = getattr(self.unit, "sample_rate", None)
        self.value_range = getattr(self.unit, "value_range", None)
        self.receptive_field = getattr(self.unit, "receptive_field", None)
        self.scale = cfg.scale

    def activation(self, stimuli) -> np.ndarray:
        """The unit's noise-free activation (its `activation` method, else the clean column of a present)."""
        stimuli = np.asarray(stimuli, dtype=np.float64)
        if hasattr(self.unit, "activation"):
            return np.asarray(self.unit.activation(stimuli), dtype=np.float64).reshape(len(stimuli))
        trials = self.unit.present(stimuli, 1)
        clean = np.asarray(trials.clean, dtype=np.float64)[:, 0]
        return np.where(np.isfinite(clean), clean, trials.responses[:, 0])

    def drive(self, stimuli):
        return np.maximum(self.activation(stimuli), 0.0) / self.scale

    def ground_truth(self):
        truth = super().ground_truth()
        truth.update(getattr(self.unit, "ground_truth", dict)())
        return truth


FRONT_ENDS = {"gabor": SimpleCell, "complex": ComplexCell, "dog": CentreSurround, "strf": AuditoryCell,
              "dnn": DnnUnit}


def build_front_end(cfg, size: int, contrast: float, seed: int) -> FrontEnd:
    return FRONT_ENDS[cfg.kind](cfg, size, contrast, seed)
