"""What the optimizer-free protocols share (tuning, reverse correlation, fooling, repeatability).

Their stimuli are fixed before the run: each is described by a short parameter vector, logged
as its latent z, and the log's space section names those parameters. Stimuli are always
recorded as presented (the analyses and the NWB export need them) unless turned off.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from pydantic import Field
from tqdm.auto import tqdm

from closedloop.errors import ProtocolError
from closedloop.experiments.base import Experiment, ExperimentSettings, check_finite

MAX_STIMULUS_VALUES = 50_000_000  # 400 MB of float64 stimuli made at once


class FixedSetSettings(ExperimentSettings):
    batch: int = Field(4000, ge=1, le=1_000_000, description="most presentations per call to the neuron")


class ParameterSpace:
    """Stand-in for a stimulus space: z is the parameter vector of each stimulus."""

    kind = "parameters"

    def __init__(self, neuron, parameters: tuple[str, ...], **description):
        self.parameters = tuple(parameters)
        self.dim = len(self.parameters)
        self.stimulus_shape = tuple(neuron.stimulus_shape)
        self.modality = neuron.modality
        self.sample_rate = neuron.sample_rate
        self.description = description

    def describe(self) -> dict:
        return {"kind": self.kind, "parameters": list(self.parameters), "modality": self.modality,
                **self.description}


class FixedSetExperiment(Experiment):
    roles: ClassVar[tuple[str, ...]] = ("neuron",)
    Config = FixedSetSettings

    def __init__(self, protocol):
        super().__init__(protocol)
        if self.settings.record_rendered is None:
            self.settings = self.settings.model_copy(update={"record_rendered": True})
        self.presentations = 0
        self.session_end = 0.0  # latest presentation start on the log's clock

    def check_size(self, count: int, what: str) -> None:
        """Refuse, before anything is made, a set of stimuli too large to hold in memory at once."""
        values = count * int(np.prod(self.neuron.stimulus_shape))
        if values > MAX_STIMULUS_VALUES:
            raise ProtocolError(f"{self.protocol.source}: {what}: {count} stimuli of shape "
                                f"{tuple(self.neuron.stimulus_shape)} are {values:.3g} values; at most "
                                f"{MAX_STIMULUS_VALUES:.0e} are made at once")

    def use_space(self, parameters, **description) -> ParameterSpace:
        self.space = ParameterSpace(self.neuron, parameters, **description)
        return self.space

    def planned_presentations(self) -> int:
        return 0

    def session(self, writer) -> dict:
        """Generate, present and log the stimuli; returns extra summary numbers."""
        raise NotImplementedError

    def run(self, path, progress: bool = True) -> dict:
        writer = self.open_log(path)
        summary = {}
        self.bar = tqdm(total=self.planned_presentations() or None, desc=f"{self.kind} {self.neuron.kind}",
                        unit="trial", disable=not progress, leave=False)
        with self.logging_to(writer, self.bar):
            summary = self.session(writer)
        return self.summary(self.log_status, path, presentations=self.presentations, **summary)

    def present(self, writer, index: np.ndarray, stimuli: np.ndarray, repeats: int, generation: int,
                rng: np.random.Generator, neuron=None, time_offset: float = 0.0) -> int:
        """Show `stimuli` (logged earlier as `index`) `repeats` times each, in random order, in
        calls of at most `batch` presentations; log every trial. Returns the next generation."""
        neuron = neuron or self.neuron
        check_finite(stimuli, f"{self.kind}: stimuli")
        per_call = max(1, self.settings.batch // max(1, len(stimuli)))
        done = 0
        while done < repeats:
            count = min(per_call, repeats - done)
            order = rng.permutation(len(stimuli))
            trials = neuron.present(stimuli[order], count)
            check_finite(trials.responses, f"neuron {neuron.kind}: responses")
            if time_offset:
                trials.t_start = np.asarray(trials.t_start) + time_offset
            self.session_end = max(self.session_end, float(np.max(trials.t_start)))
            writer.add_trials(np.asarray(index)[order], generation, trials)
            self.presentations += trials.responses.size
            self.bar.update(trials.responses.size)
            # one /generations row per call, so a growing log shows progress as an evolve run does
            writer.add_generation({"generation": generation, "presentations": self.presentations,
                                   "mean": trials.responses.mean(), "max": trials.responses.max(),
                                   "best": np.nan, "best_stimulus": -1},
                                  np.full(self.space.dim, np.nan))
            writer.flush()
            done += count
            generation += 1
            if self.stop_requested:
                break
        return generation
