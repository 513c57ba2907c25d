"""tuning: a grid over a parametric stimulus family, every point repeated, in random order.

Image neurons see gratings (orientation x spatial frequency x phase); audio neurons see tones
(frequency x level). Each stimulus's latent z is its parameter vector.
"""

from __future__ import annotations

import itertools

import numpy as np
from pydantic import Field

from closedloop.component import Count, CyclesPerPixel, Decibels, Degrees, Hertz
from closedloop.errors import ProtocolError
from closedloop.experiments._fixed import FixedSetExperiment, FixedSetSettings
from closedloop.registry import register
from closedloop.stimuli import grating, to_neuron_range, tone, tones_to_range


class TuningSettings(FixedSetSettings):
    repeats: int = Field(8, ge=1, le=10_000, description="presentations of every grid point")
    contrast: float = Field(0.25, gt=0, le=10, description="images: RMS contrast of the gratings")
    orientations: Count | list[Degrees] = Field(12, description="images: a count spanning [0, 180) or degrees",
                                                json_schema_extra={"unit": "deg"})
    spatial_frequencies: list[CyclesPerPixel] = Field([0.05, 0.1, 0.15, 0.2, 0.3], min_length=1,
                                                      description="images: cycles per pixel")
    phases: Count | list[Degrees] = Field(4, description="images: a count spanning [0, 360) or degrees",
                                          json_schema_extra={"unit": "deg"})
    envelope_sigma: float | None = Field(None, gt=0, le=10_000, description="images: Gaussian window; none = full field",
                                         json_schema_extra={"unit": "pixels"})
    frequencies: Count | list[Hertz] = Field(12, description="audio: a log-spaced count over frequency_range, or Hz",
                                             json_schema_extra={"unit": "Hz"})
    frequency_range: tuple[Hertz, Hertz] = Field((200.0, 4000.0), description="audio: Hz")
    levels: list[Decibels] = Field([-40.0, -25.0, -10.0], min_length=1, description="audio: dB re full scale")
    ramp_ms: float = Field(10.0, ge=0, le=10_000, description="audio: on/off ramp, ms")


def _values(setting, span: float, name: str) -> np.ndarray:
    if isinstance(setting, int):
        if setting < 1:
            raise ValueError(f"{name}: give a count >= 1 or a list of values")
        return np.arange(setting) * span / setting
    if not setting:
        raise ValueError(f"{name}: empty list")
    return np.asarray(setting, dtype=np.float64)


@register("experiment", "tuning")
class Tuning(FixedSetExperiment):
    Config = TuningSettings
    streams = {"order": 1}

    def __init__(self, protocol):
        super().__init__(protocol)
        cfg = self.settings
        try:
            if self.neuron.modality == "audio":
                self.grid, self.stimuli = self._tones(cfg)
                self.use_space(("frequency", "level"), family="tone", units=["Hz", "dB FS"],
                               log_scale=["frequency"], periods={})
            else:
                self.grid, self.stimuli = self._gratings(cfg)
                self.use_space(("orientation", "spatial_frequency", "phase"), family="grating",
                               units=["deg", "cycles/pixel", "deg"], log_scale=["spatial_frequency"],
                               periods={"orientation": 180.0, "phase": 360.0}, contrast=cfg.contrast,
                               envelope_sigma=cfg.envelope_sigma)
        except ValueError as exc:
            raise ProtocolError(f"{protocol.source}: {exc}") from None

    def _gratings(self, cfg):
        counts = [len(v) if isinstance(v, list) else v for v in (cfg.orientations, cfg.phases)]
        self.check_size(counts[0] * counts[1] * len(cfg.spatial_frequencies), "orientations x spatial_frequencies x phases")
        grid = np.array(list(itertools.product(
            _values(cfg.orientations, 180.0, "orientations"), np.asarray(cfg.spatial_frequencies, dtype=np.float64),
            _values(cfg.phases, 360.0, "phases"))))
        shape = self.neuron.stimulus_shape
        patterns = np.stack([grating(shape, o, f, p, cfg.envelope_sigma) for o, f, p in grid])
        return grid, to_neuron_range(patterns, self.neuron, cfg.contrast)

    def _tones(self, cfg):
        if isinstance(cfg.frequencies, int):
            lo, hi = cfg.frequency_range
            if not 0 < lo < hi:
                raise ValueError(f"frequency_range: expected 0 < low < high, got {cfg.frequency_range}")
            frequencies = np.geomspace(lo, hi, cfg.frequencies)
        else:
            frequencies = _values(cfg.frequencies, 0, "frequencies")
        self.check_size(len(frequencies) * len(cfg.levels), "frequencies x levels")
        grid = np.array(list(itertools.product(frequencies, np.asarray(cfg.levels, dtype=np.float64))))
        rate = self.neuron.sample_rate
        if grid[:, 0].max() >= rate / 2:
            raise ValueError(f"frequencies: {grid[:, 0].max():g} Hz is above the Nyquist frequency {rate / 2:g} Hz")
        n_samples = self.neuron.stimulus_shape[0]
        waves = np.stack([tone(n_samples, rate, f, level, cfg.ramp_ms) for f, level in grid])
        return grid, tones_to_range(waves, self.neuron)

    def planned_presentations(self) -> int:
        return len(self.grid) * self.settings.repeats

    def session(self, writer) -> dict:
        index = writer.add_stimuli(self.grid, 0, self.stimuli)
        self.present(writer, index, self.stimuli, self.settings.repeats, 0, self.rng("order"))
        return {"grid_points": len(self.grid)}
