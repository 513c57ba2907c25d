"""fooling: how often does a random image of static drive the neuron past a threshold?

N random static stimuli of each kind (white, pink, binary "TV static"), each shown `repeats`
times. The threshold is absolute, or a fraction of the optimum an evolve run reached (read from
its log); with such a reference run, its last generation of evolved stimuli is shown too, for
contrast. z = (source, draw): the source's position in the logged `sources` list and the draw
number (for evolved stimuli, their index in the reference log).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from closedloop.component import ProtocolPath
from closedloop.errors import ClosedLoopError, ProtocolError
from closedloop.experiments._fixed import FixedSetExperiment, FixedSetSettings
from closedloop.recording import open_run
from closedloop.registry import register
from closedloop.stimuli import noise, to_neuron_range


class FoolingSettings(FixedSetSettings):
    count: int = Field(1000, ge=1, le=1_000_000, description="random stimuli of each noise kind")
    noise: list[Literal["white", "pink", "tv"]] = Field(["white", "pink", "tv"], min_length=1,
                                                       description="white, pink and/or tv")
    alpha: float | None = Field(None, ge=0, le=4, description="pink: amplitude spectrum 1/f^alpha")
    contrast: float = Field(0.25, gt=0, le=10, description="RMS of the noise (of the neuron's range, when it has one)")
    repeats: int = Field(1, ge=1, le=10_000, description="presentations of each stimulus; its response is their mean")
    threshold: float | None = Field(None, ge=-1e6, le=1e6, description="absolute response threshold")
    threshold_fraction: float | None = Field(None, gt=0, le=100, description="threshold as a fraction of the reference optimum")
    reference_run: ProtocolPath | None = Field(None, description="an evolve run log: its optimum and its evolved "
                                               "stimuli (beside the protocol)")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the Clopper-Pearson intervals")

    @model_validator(mode="after")
    def _one_threshold(self):
        if (self.threshold is None) == (self.threshold_fraction is None):
            raise ValueError("give exactly one of threshold (absolute) or threshold_fraction (with reference_run)")
        if self.threshold_fraction is not None and self.reference_run is None:
            raise ValueError("threshold_fraction needs reference_run, the evolve log whose optimum it scales")
        return self


def reference_optimum(run) -> float:
    """The evolved optimum: the best re-tested mean when the run re-tested, else its best score."""
    optimum = run.optimum()
    if optimum is None:
        raise ClosedLoopError(f"{run.path}: no generation logged; cannot read an optimum")
    return optimum["response"]


def evolved_stimuli(run, shape) -> tuple[np.ndarray, np.ndarray]:
    """Stimulus indices and renderings of the reference run's last generation."""
    generation = run.stimulus_generation
    if not len(generation):
        raise ClosedLoopError(f"{run.path}: no stimulus logged")
    index = run.stimuli_of_generation(generation.max())
    rendered = run.rendered(index)
    if rendered is None:
        raise ClosedLoopError(f"{run.path}: stimuli were not recorded (record_rendered); cannot re-show them")
    if rendered.shape[1:] != tuple(shape):
        raise ClosedLoopError(f"{run.path}: stimuli of shape {rendered.shape[1:]}, the neuron takes {tuple(shape)}")
    return index, rendered.astype(np.float64)


@register("experiment", "fooling")
class Fooling(FixedSetExperiment):
    Config = FoolingSettings
    streams = {"noise": 3}

    def __init__(self, protocol):
        super().__init__(protocol)
        cfg = self.settings
        self.check_size(cfg.count, "count")
        self.sources = list(dict.fromkeys(cfg.noise))
        self.threshold, self.optimum = cfg.threshold, None
        self.evolved = None
        if cfg.reference_run is not None:
            try:
                with open_run(cfg.reference_run) as run:
                    self.optimum = reference_optimum(run)
                    self.evolved = evolved_stimuli(run, self.neuron.stimulus_shape)
            except ClosedLoopError as exc:
                raise ProtocolError(f"{protocol.source}: reference_run: {exc}") from None
            self.sources.append("evolved")
            if cfg.threshold_fraction is not None:
                self.threshold = cfg.threshold_fraction * self.optimum
        self.use_space(("source", "draw"), family="static", sources=self.sources, threshold=self.threshold,
                       reference_optimum=self.optimum, contrast=cfg.contrast, alpha=cfg.alpha,
                       confidence=cfg.confidence)

    def planned_presentations(self) -> int:
        evolved = 0 if self.evolved is None else len(self.evolved[0])
        return (len(self.settings.noise) * self.settings.count + evolved) * self.settings.repeats

    def session(self, writer) -> dict:
        cfg = self.settings
        generation = 0
        for source, kind in enumerate(self.sources):
            rng = self.rng("noise", source)
            if kind == "evolved":
                draws, stimuli = self.evolved
            else:
                draws = np.arange(cfg.count)
                stimuli = to_neuron_range(noise(rng, cfg.count, self.neuron.stimulus_shape, kind, cfg.alpha),
                                          self.neuron, cfg.contrast)
            z = np.column_stack([np.full(len(draws), source), draws])
            index = writer.add_stimuli(z, generation, stimuli)
            generation = self.present(writer, index, stimuli, cfg.repeats, generation, rng)
            if self.stop_requested:
                break
        return {"threshold": self.threshold}
