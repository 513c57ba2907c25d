"""repeatability: one fixed stimulus set shown in many blocks through a session.

Every block shows each item `repeats` times in random order. With `compare_reset_state`, the
session runs a second time on a fresh neuron whose `reset_state` switch is flipped, so one log
holds both the drifting and the "same brain state every time" experiment; the second session
is logged after the first on the session clock. z = (item, reset_state, parameter): the item
number, the neuron's reset_state (-1 when it has no such switch) and the item's orientation
(deg), tone frequency (Hz) or noise draw.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, model_validator

from closedloop.component import Hertz
from closedloop.errors import ProtocolError
from closedloop.experiments._fixed import FixedSetExperiment, FixedSetSettings
from closedloop.registry import register
from closedloop.stimuli import (grating, noise, to_neuron_range, tone,
                                tones_to_range)


class RepeatabilitySettings(FixedSetSettings):
    blocks: int = Field(30, ge=2, le=100_000, description="times the whole set is shown")
    repeats: int = Field(1, ge=1, le=10_000, description="presentations of each item within a block")
    items: int = Field(8, ge=3, le=10_000, description="stimuli in the set")
    family: str = Field("auto", pattern="^(auto|grating|noise|tone)$",
                        description="gratings at evenly spaced orientations, noise images or tones; auto: "
                                    "gratings for image neurons, tones for audio ones")
    contrast: float = Field(0.25, gt=0, le=10, description="images: RMS contrast")
    spatial_frequency: float = Field(0.15, gt=0, le=0.5, description="gratings: cycles per pixel")
    frequency_range: tuple[Hertz, Hertz] = Field((250.0, 4000.0), description="tones: log-spaced over this range, Hz")
    level: float = Field(-20.0, ge=-120, le=0, description="tones: dB re full scale")
    compare_reset_state: bool = Field(False, description="run the session again with the neuron's reset_state flipped")

    @model_validator(mode="after")
    def _block_in_one_call(self):
        if self.items * self.repeats > self.batch:
            raise ValueError(f"batch: a block ({self.items} items x {self.repeats} repeats) must fit in one call")
        return self


@register("experiment", "repeatability")
class Repeatability(FixedSetExperiment):
    Config = RepeatabilitySettings
    streams = {"stimuli": 4, "order": 5}

    def __init__(self, protocol):
        super().__init__(protocol)
        cfg = self.settings
        self.family = cfg.family if cfg.family != "auto" else ("tone" if self.neuron.modality == "audio" else "grating")
        if (self.family == "tone") != (self.neuron.modality == "audio"):
            raise ProtocolError(f"{protocol.source}: family: {self.family} does not suit a "
                                f"{self.neuron.modality} neuron")
        self.parameter, self.stimuli = self._items(cfg)
        section = protocol.sections["neuron"]
        self.neurons = [self.neuron]
        if cfg.compare_reset_state:
            if "reset_state" not in type(section.config).model_fields:
                raise ProtocolError(f"{protocol.source}: compare_reset_state: neuron kind {self.neuron.kind!r} "
                                    "has no reset_state switch")
            flipped = section.config.model_copy(update={"reset_state": not section.config.reset_state})
            self.neurons.append(section.cls(flipped, protocol.role_seed("neuron")))
        parameter_name = {"grating": "orientation", "tone": "frequency", "noise": "draw"}[self.family]
        units = ["1", "1", {"grating": "deg", "tone": "Hz", "noise": "1"}[self.family]]
        self.use_space(("item", "reset_state", "parameter"), family=self.family, parameter=parameter_name, units=units,
                       contrast=cfg.contrast, spatial_frequency=cfg.spatial_frequency, level=cfg.level)

    def _items(self, cfg):
        shape, n = self.neuron.stimulus_shape, cfg.items
        if self.family == "grating":
            orientation = np.arange(n) * 180.0 / n
            patterns = np.stack([grating(shape, o, cfg.spatial_frequency, 0.0) for o in orientation])
            return orientation, to_neuron_range(patterns, self.neuron, cfg.contrast)
        if self.family == "noise":
            rng = self.rng("stimuli")
            return np.arange(n, dtype=np.float64), to_neuron_range(noise(rng, n, shape, "white"), self.neuron,
                                                                   cfg.contrast)
        frequency = np.geomspace(*cfg.frequency_range, n)
        rate = self.neuron.sample_rate
        if frequency.max() >= rate / 2:
            raise ProtocolError(f"{self.protocol.source}: frequency_range: above the Nyquist frequency {rate / 2:g} Hz")
        waves = np.stack([tone(shape[0], rate, f, cfg.level) for f in frequency])
        return frequency, tones_to_range(waves, self.neuron)

    def planned_presentations(self) -> int:
        cfg = self.settings
        return len(self.neurons) * cfg.blocks * cfg.items * cfg.repeats

    def session(self, writer) -> dict:
        cfg = self.settings
        generation, offset = 0, 0.0
        for condition, neuron in enumerate(self.neurons):
            reset = getattr(neuron.config, "reset_state", None)
            z = np.column_stack([np.arange(cfg.items), np.full(cfg.items, -1.0 if reset is None else float(reset)),
                                 self.parameter])
            index = writer.add_stimuli(z, generation, self.stimuli)
            rng = self.rng("order", condition)
            self.session_end = offset
            for _ in range(cfg.blocks):
                generation = self.present(writer, index, self.stimuli, cfg.repeats, generation, rng,
                                          neuron=neuron, time_offset=offset)
                if self.stop_requested:
                    return {}
            offset = self.session_end + 1.0  # the second session starts after the first on the log's clock
        return {"blocks": cfg.blocks, "sessions": len(self.neurons)}
