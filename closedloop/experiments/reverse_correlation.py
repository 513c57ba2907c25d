"""reverse_correlation: a fresh noise stimulus on every presentation, for spike-triggered averages.

z is the draw number; the stimuli themselves are in the log (stimuli/rendered), which the
analysis correlates with the responses.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.errors import ProtocolError
from closedloop.experiments._fixed import FixedSetExperiment, FixedSetSettings
from closedloop.registry import register
from closedloop.stimuli import noise, to_neuron_range


class ReverseCorrelationSettings(FixedSetSettings):
    presentations: int = Field(6000, ge=10, le=10_000_000, description="noise stimuli, each new")
    repeats: int = Field(1, ge=1, le=10_000, description="presentations of each noise stimulus")
    noise: str = Field("white", pattern="^(white|pink|tv)$", description="white, pink (1/f) or tv (binary static)")
    alpha: float | None = Field(None, ge=0, le=4, description="pink: amplitude spectrum 1/f^alpha (default 1 image, 0.5 sound)")
    contrast: float = Field(1.0, gt=0, le=10, description="RMS of the noise (of the neuron's range, when it has one)")


@register("experiment", "reverse_correlation")
class ReverseCorrelation(FixedSetExperiment):
    Config = ReverseCorrelationSettings
    streams = {"noise": 2}

    def __init__(self, protocol):
        super().__init__(protocol)
        if self.settings.record_rendered is False:
            raise ProtocolError(f"{protocol.source}: record_rendered: reverse correlation needs the stimuli logged")
        cfg = self.settings
        self.check_size(min(max(1, cfg.batch // cfg.repeats), cfg.presentations), "batch")
        self.use_space(("draw",), family="noise", units=["1"], noise=cfg.noise, alpha=cfg.alpha, contrast=cfg.contrast)

    def planned_presentations(self) -> int:
        return self.settings.presentations * self.settings.repeats

    def session(self, writer) -> dict:
        cfg = self.settings
        per_chunk = max(1, cfg.batch // cfg.repeats)
        generation, drawn, chunk = 0, 0, 0
        while drawn < cfg.presentations and not self.stop_requested:
            count = min(per_chunk, cfg.presentations - drawn)
            rng = self.rng("noise", chunk)
            patterns = noise(rng, count, self.neuron.stimulus_shape, cfg.noise, cfg.alpha)
            stimuli = to_neuron_range(patterns, self.neuron, cfg.contrast)
            index = writer.add_stimuli(np.arange(drawn, drawn + count)[:, None], generation, stimuli)
            generation = self.present(writer, index, stimuli, cfg.repeats, generation, rng)
            drawn += count
            chunk += 1
        return {"noise_stimuli": drawn}
