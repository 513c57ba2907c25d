"""A formant synthesiser: sounds that can be speech, made from voicing, formants and timing alone.

Source-filter speech (Fant 1960; Klatt 1980) with parameters that move over time. At `points`
evenly spaced moments the latent sets seven numbers; between them they change linearly:

- f0: the voice's fundamental (log scale, f0_min..f0_max)
- voicing: how loud the voice is (0..1)
- noise: how loud the breath noise is (0..1)
- F1, F2, F3: the first three formants (log scale, 250-900, 800-2600, 1800-3500 Hz)
- frication: the centre of the noise's broad resonance (log scale, 1-7.5 kHz; "s" is near 6 kHz,
  "sh" near 3 kHz, "h" low and broad)

The voice is a sum of harmonics of f0 (up to 5 kHz) with the -6 dB/octave slope of a glottal source
radiated from the lips, each weighted by the vocal tract: a cascade of resonators at F1, F2, F3
and a fixed F4.
The noise is one fixed draw of white noise (from the space's seed, so rendering is deterministic),
shaped frame by frame in the STFT domain. Nothing here is built from a recording of any word.
Latent layout: seven blocks of `points` numbers in the order above; every number maps through the
normal CDF onto its range, so the standard-normal prior is uniform over every parameter.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.registry import register
from closedloop.spaces.audio import SAMPLE_RATE, AudioSettings, DifferentiableAudioSpace, _interp_matrix

RANGES = {  # Hz, mapped on a log scale
    "F1": (250.0, 900.0),
    "F2": (800.0, 2600.0),
    "F3": (1800.0, 3500.0),
    "frication": (1000.0, 7500.0),
}
BANDWIDTHS = (90.0, 110.0, 170.0)  # of F1, F2, F3, Hz
F4, B4 = 3700.0, 250.0
PARAMETERS = ("f0", "voicing", "noise", "F1", "F2", "F3", "frication")
FRAME = 80  # samples between parameter frames (5 ms)
N_FFT, NOISE_HOP = 256, 64
VOICE_MAX = 5000.0  # the voice's harmonics fade out towards this frequency; noise reaches higher
NOISE_GAIN = 4.0  # full noise about as loud as a full voice


class FormantSettings(AudioSettings):
    duration: float = Field(1.0, ge=0.064, le=10, description="length of every sound, s")
    f_max: float = Field(7800.0, gt=0, le=SAMPLE_RATE / 2, description="highest frequency in the sound, Hz")
    points: int = Field(8, ge=1, le=64, description="moments over the sound at which the latent sets the parameters")
    f0_min: float = Field(70.0, gt=20, le=8000, description="lowest fundamental, Hz")
    f0_max: float = Field(300.0, gt=20, le=8000, description="highest fundamental, Hz")
    harmonics: int = Field(64, ge=1, le=200, description="most harmonics of the voice")

    @model_validator(mode="after")
    def _f0_range(self):
        if self.f0_max <= self.f0_min:
            raise ValueError(f"f0_max ({self.f0_max} Hz) must be above f0_min ({self.f0_min} Hz)")
        return self


def resonance(frequency: torch.Tensor, centre: torch.Tensor, bandwidth) -> torch.Tensor:
    """Magnitude response of a two-pole resonator, 1 at 0 Hz (a formant of a cascade synthesiser)."""
    pole = centre ** 2 + (bandwidth / 2) ** 2
    return pole / torch.sqrt((pole - frequency ** 2) ** 2 + (frequency * bandwidth) ** 2)


@register("space", "formant")
class FormantSpace(DifferentiableAudioSpace):
    """Speech-like sounds from a source-filter model whose parameters move over time (see module)."""

    Config = FormantSettings
    modality = "audio"
    sample_rate = SAMPLE_RATE
    can_encode = False
    differentiable = True

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.dim = len(PARAMETERS) * config.points
        self.n_frames = -(-self.n_samples // FRAME) + 1
        moments = np.linspace(0, 1, config.points)
        self.frame_weights = _interp_matrix(moments, np.linspace(0, 1, self.n_frames)).T  # (points, frames)
        noise = self.rng(0).standard_normal(self.n_samples)
        self.noise_spectrum = torch.stft(torch.as_tensor(noise), N_FFT, NOISE_HOP, window=torch.hann_window(
            N_FFT, dtype=torch.float64), return_complex=True)  # (bins, noise frames)
        n_noise_frames = self.noise_spectrum.shape[1]
        self.noise_frame_weights = _interp_matrix(moments, np.linspace(0, 1, n_noise_frames)).T
        self.bins = torch.as_tensor(np.fft.rfftfreq(N_FFT, 1 / SAMPLE_RATE))

    def parameters_torch(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Each parameter at every control point: (n, points), in Hz or 0..1."""
        c = self.config
        blocks = dict(zip(PARAMETERS, z.reshape(len(z), len(PARAMETERS), c.points).unbind(1)))
        ranges = {"f0": (c.f0_min, c.f0_max), **RANGES}
        params = {}
        for name, value in blocks.items():
            unit = torch.special.ndtr(value)
            if name in ranges:
                low, high = np.log(ranges[name][0]), np.log(ranges[name][1])
                params[name] = torch.exp(low + (high - low) * unit)
            else:
                params[name] = unit
        return params

    def synthesize_torch(self, z):
        c = self.config
        params = self.parameters_torch(z)
        to_frames = torch.as_tensor(self.frame_weights, dtype=z.dtype)
        frames = {name: value @ to_frames for name, value in params.items()}  # (n, frames)
        f0 = self.to_samples(frames["f0"])
        phase = 2 * np.pi * torch.cumsum(f0, dim=1) / SAMPLE_RATE
        # sin(k phase) by the recurrence sin(k x) = 2 cos(x) sin((k-1) x) - sin((k-2) x): one
        # multiply-add per harmonic instead of a sine
        twice_cos, previous, current = 2 * torch.cos(phase), torch.zeros_like(phase), torch.sin(phase)
        voice = torch.zeros_like(f0)
        for k in range(1, c.harmonics + 1):
            frequency = k * frames["f0"]
            if not bool((frequency < VOICE_MAX).any()):
                break
            gain = torch.clamp((VOICE_MAX - frequency) / (0.1 * VOICE_MAX), 0, 1) / k  # source slope, band limit
            for formant, bandwidth in zip(("F1", "F2", "F3"), BANDWIDTHS):
                gain = gain * resonance(frequency, frames[formant], bandwidth)
            gain = gain * resonance(frequency, torch.tensor(F4, dtype=z.dtype), B4)
            voice = voice + self.to_samples(gain * frames["voicing"]) * current
            previous, current = current, twice_cos * current - previous
        return voice + NOISE_GAIN * self.noise_torch(params, z.dtype)

    def to_samples(self, frames: torch.Tensor) -> torch.Tensor:
        """(n, frames) values every FRAME samples -> (n, samples), linearly interpolated."""
        span = FRAME * (self.n_frames - 1) + 1
        upsampled = torch.nn.functional.interpolate(frames[:, None], size=span, mode="linear", align_corners=True)
        return upsampled[:, 0, :self.n_samples]

    def noise_torch(self, params: dict[str, torch.Tensor], dtype) -> torch.Tensor:
        """The breath noise: fixed white noise through a broad resonance at the frication
        frequency (peak gain 1), times the noise level, in the STFT domain."""
        to_frames = torch.as_tensor(self.noise_frame_weights, dtype=dtype)
        centre = (params["frication"] @ to_frames)[:, None, :]  # (n, 1, frames)
        level = (params["noise"] @ to_frames)[:, None, :]
        bins = self.bins.to(dtype)[None, :, None]
        shape = resonance(bins, centre, centre / 2) / 2.125  # 2.125: its gain at the centre
        spectrum = self.noise_spectrum.to(torch.complex128 if dtype == torch.float64 else torch.complex64)
        shaped = spectrum[None] * (shape * level)
        window = torch.hann_window(N_FFT, dtype=dtype)
        return torch.istft(shaped, N_FFT, NOISE_HOP, window=window, length=self.n_samples)
