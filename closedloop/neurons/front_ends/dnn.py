"""A unit of a deep network (closedloop/neurons/dnn.py) read out through the spiking cell: its
noise-free activation divided by `scale` is the drive."""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.front_ends.base import FrontEnd
from closedloop.registry import lookup, register


class DnnFrontEndSettings(Settings):
    kind: Literal["dnn"] = "dnn"
    unit: dict[str, Any] = Field(description="the `neuron:` section of a `kind: dnn` neuron (without kind)")
    scale: float = Field(gt=0, le=1e6, description="the unit activation that gives drive 1 (input current bias + gain)")


@register("front_end", "dnn")
class DnnUnit(FrontEnd):
    Config = DnnFrontEndSettings

    def __init__(self, config: DnnFrontEndSettings, seed: int, *, size: int, reference_contrast: float):
        super().__init__(config, seed, size=size, reference_contrast=reference_contrast)
        try:
            cls = lookup("neuron", "dnn")
        except KeyError:
            raise ValueError("front_end: kind dnn needs the dnn neuron (closedloop/neurons/dnn.py), "
                             "which is not installed") from None
        self.unit = cls(cls.Config.model_validate(config.unit), seed)
        self.stimulus_shape = tuple(self.unit.stimulus_shape)
        self.modality, self.sample_rate = self.unit.modality, self.unit.sample_rate
        self.value_range, self.receptive_field = self.unit.value_range, self.unit.receptive_field
        self.scale = config.scale

    def activation(self, stimuli) -> np.ndarray:
        """The unit's noise-free activation."""
        stimuli = np.asarray(stimuli, dtype=np.float64)
        return np.asarray(self.unit.activation(stimuli), dtype=np.float64).reshape(len(stimuli))

    def drive(self, stimuli):
        return np.maximum(self.activation(stimuli), 0.0) / self.scale

    def ground_truth(self):
        return {**super().ground_truth(), **self.unit.ground_truth()}
