"""An instrument-like tone: a harmonic source through a smooth spectral envelope (source-filter).

Real pitched sounds (voices, strings, winds) are a harmonic series whose amplitudes follow a smooth
envelope over frequency: an overall slope and a few broad resonances (formants, body modes). Here
harmonic k of f0 has amplitude

    k^(tilt / 6.02) * prod_r (1 + (gain_r - 1) / (1 + ((k f0 - centre_r) / (bandwidth_r / 2))^2))

(tilt in dB per octave; each resonance a Lorentzian bump of peak gain gain_r), so neighbouring
harmonics never differ by more than the envelope allows, unlike the harmonic space, whose
harmonic amplitudes are free. By default a resonance is at least 250 Hz wide and at most 20 dB
high: narrower and higher, one harmonic of a 260 Hz tone can stand 25 dB above its neighbours
and hold 80 % of the power, and YIN then hears a pitch in that harmonic alone. Partials above
0.8 f_max fade out as in the harmonic space. An optional fixed vibrato (`vibrato` cents at
`vibrato_rate` Hz, not a latent) swings the pitch as players and singers do; the amplitudes of a
steady tone are those at its mean f0.

Latent layout: [f0 contour | tilt | resonance centres | bandwidths | gains | amplitude envelope];
every number maps through the normal CDF onto its range (f0, centres and bandwidths on a log
scale), so the standard-normal prior is uniform over every parameter.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.registry import register
from closedloop.spaces.audio import (SAMPLE_RATE, AudioSettings, DifferentiableAudioSpace, contour_weights,
                                     log_range, partial_gain)

DB_PER_OCTAVE = 20 * np.log10(2)  # 6.02: a slope of -6.02 dB/octave is amplitude 1/k


class InstrumentSettings(AudioSettings):
    f_min: float = Field(60.0, gt=0, lt=SAMPLE_RATE / 2, description="lowest fundamental, Hz")
    f0_max: float = Field(1000.0, gt=0, lt=SAMPLE_RATE / 2, description="highest fundamental, Hz")
    harmonics: int = Field(64, ge=1, le=200, description="most harmonics (those above f_max are silent anyway)")
    tilt_min: float = Field(-18.0, ge=-60, le=20, description="steepest spectral slope, dB per octave")
    tilt_max: float = Field(0.0, ge=-60, le=20, description="flattest spectral slope, dB per octave")
    resonances: int = Field(2, ge=0, le=8, description="resonances (formants) shaping the spectral envelope")
    centre_min: float = Field(150.0, gt=0, lt=SAMPLE_RATE / 2, description="lowest resonance centre, Hz")
    centre_max: float = Field(4000.0, gt=0, lt=SAMPLE_RATE / 2, description="highest resonance centre, Hz")
    bandwidth_min: float = Field(250.0, gt=0, le=SAMPLE_RATE / 2, description="narrowest resonance, Hz")
    bandwidth_max: float = Field(1000.0, gt=0, le=SAMPLE_RATE / 2, description="broadest resonance, Hz")
    gain_max: float = Field(20.0, ge=0, le=60, description="largest peak gain of a resonance, dB (the least is 0 dB)")
    pitch_points: int = Field(1, ge=1, le=16, description="f0 contour points over the sound (1 = steady pitch)")
    envelope_points: int = Field(4, ge=1, le=32, description="amplitude envelope points over the sound")
    vibrato: float = Field(0.0, ge=0, le=200,
                           description="depth of a fixed vibrato: f0 swings this far either side, cents")
    vibrato_rate: float = Field(5.5, gt=0, le=50, description="vibrato rate, Hz")

    @model_validator(mode="after")
    def _ranges(self):
        for low, high in (("f_min", "f0_max"), ("tilt_min", "tilt_max"), ("centre_min", "centre_max"),
                          ("bandwidth_min", "bandwidth_max")):
            if getattr(self, low) > getattr(self, high):
                raise ValueError(f"{low} ({getattr(self, low)}) must not be above {high} ({getattr(self, high)})")
        if self.f_min == self.f0_max:
            raise ValueError(f"f0_max ({self.f0_max} Hz) must be above f_min ({self.f_min} Hz)")
        return self


@register("space", "instrument")
class InstrumentSpace(DifferentiableAudioSpace):
    """A harmonic tone under a smooth spectral envelope: latent = [f0 | slope | resonance centres,
    bandwidths, gains | amplitude envelope], each through the normal CDF onto its range; an
    optional fixed vibrato."""

    Config = InstrumentSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        c = config
        self.blocks = {"f0": c.pitch_points, "tilt": 1, "centre": c.resonances, "bandwidth": c.resonances,
                       "gain": c.resonances, "envelope": c.envelope_points}
        self.dim = sum(self.blocks.values())
        self.pitch_weights = contour_weights(c.pitch_points, self.n_samples)
        self.envelope_weights = contour_weights(c.envelope_points, self.n_samples)
        self.vibrato = 2 ** (c.vibrato / 1200 * np.sin(2 * np.pi * c.vibrato_rate * self.time))

    def parameters_torch(self, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """f0 (Hz), tilt (dB/octave), centre and bandwidth (Hz), gain (dB), envelope (0..1), and the
        resulting amplitude of every harmonic at the contour's mean f0."""
        c = self.config
        unit = dict(zip(self.blocks, torch.special.ndtr(z).split(list(self.blocks.values()), dim=1)))
        params = {
            "f0": log_range(unit["f0"], c.f_min, c.f0_max),
            "tilt": c.tilt_min + (c.tilt_max - c.tilt_min) * unit["tilt"],
            "centre": log_range(unit["centre"], c.centre_min, c.centre_max),
            "bandwidth": log_range(unit["bandwidth"], c.bandwidth_min, c.bandwidth_max),
            "gain": c.gain_max * unit["gain"],
            "envelope": unit["envelope"],
        }
        params["amplitudes"] = self.amplitudes(params, params["f0"].mean(dim=1, keepdim=True))[:, :, 0]
        return params

    def amplitudes(self, params: dict[str, torch.Tensor], f0: torch.Tensor) -> torch.Tensor:
        """(n, harmonics, T) amplitudes for fundamentals f0 of shape (n, T) (T = 1 or one per sample)."""
        c = self.config
        order = torch.arange(1, c.harmonics + 1, dtype=f0.dtype)[None, :, None]
        frequency = order * f0[:, None, :]
        level = order ** (params["tilt"][:, :, None] / DB_PER_OCTAVE)
        for r in range(c.resonances):
            centre, bandwidth, gain = (params[name][:, r, None, None] for name in ("centre", "bandwidth", "gain"))
            level = level * (1 + (10 ** (gain / 20) - 1) / (1 + ((frequency - centre) / (bandwidth / 2)) ** 2))
        return level * partial_gain(frequency, c.f_max)

    def synthesize_torch(self, z):
        c = self.config
        params = self.parameters_torch(z)
        f0 = params["f0"] @ torch.as_tensor(self.pitch_weights, dtype=z.dtype)
        f0 = f0 * torch.as_tensor(self.vibrato, dtype=z.dtype)
        # a steady pitch needs one set of amplitudes; a contour, one per sample
        amplitudes = params["amplitudes"][:, :, None] if c.pitch_points == 1 else self.amplitudes(params, f0)
        phase = 2 * np.pi * torch.cumsum(f0, dim=1) / SAMPLE_RATE
        # sin(k x) = 2 cos(x) sin((k-1) x) - sin((k-2) x): one multiply-add per harmonic
        twice_cos, previous, current = 2 * torch.cos(phase), torch.zeros_like(phase), torch.sin(phase)
        waves = torch.zeros_like(f0)
        for k in range(c.harmonics):
            if not bool((amplitudes[:, k] > 0).any()):
                break
            waves = waves + amplitudes[:, k] * current
            previous, current = current, twice_cos * current - previous
        return waves * (params["envelope"] @ torch.as_tensor(self.envelope_weights, dtype=z.dtype))
