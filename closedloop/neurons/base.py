"""The Neuron role: `present(stimuli, repeats) -> Trials`."""

from __future__ import annotations

import functools
import numbers
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from closedloop.component import Component, check_batch, check_in_subclasses


@dataclass
class Trials:
    """What one batch of presentations gave. Every array is indexed (stimulus, repeat).

    responses   the measured response (spike count, or a noisy unit activation)
    clean       the noise-free expected response where the neuron knows it, else NaN
    t_start     session time (s) at which each presentation began: order and drift follow it
    state       the neuron's state variables at each presentation (drift, adaptation, ...)
    spike_times one array of spike times (s after onset) per presentation, row-major, or None
    """

    responses: np.ndarray
    t_start: np.ndarray
    clean: np.ndarray | None = None
    state: dict[str, np.ndarray] = field(default_factory=dict)
    spike_times: list[np.ndarray] | None = None

    def __post_init__(self):
        self.responses = np.asarray(self.responses, dtype=np.float64)
        if self.clean is None:
            self.clean = np.full(self.responses.shape, np.nan)
        self.clean = np.broadcast_to(np.asarray(self.clean, dtype=np.float64), self.responses.shape)


class Neuron(Component):
    """A black box queried with repeated stimuli.

    Subclasses set `stimulus_shape`, may set `value_range` (the input range they accept),
    `modality` and `sample_rate`, `receptive_field` (ground truth, when known) and
    `state_columns` (the names of the per-trial state variables their Trials carry, fixed before
    the run starts so the log can hold them) with their `state_units`, and declare `has_gradient`.
    """

    stimulus_shape: tuple[int, ...] = ()
    value_range: tuple[float, float] | None = None
    modality: str = "image"  # "image" or "audio"
    sample_rate: int | None = None  # Hz, for audio
    has_gradient: ClassVar[bool] = False  # gradient() is implemented (white-box access)
    # its responses follow a receptive field, so evolve's default is the model-based search that
    # fits one; units of deep networks say False and get CMA-ES (docs/benchmarks.md, "Network units")
    model_based_search: ClassVar[bool] = True
    state_columns: ClassVar[tuple[str, ...]] = ()
    state_units: ClassVar[dict[str, str]] = {}  # unit of each state column ("1": dimensionless), for the log
    receptive_field: np.ndarray | None = None
    response_unit: str = "spikes"
    # what the unit is said to detect, for independent judges (closedloop/judges): ("face", None),
    # ("digit", 3), ("word", "yes"), ("pitch", 440.0); None for a cell that names no category
    claim: tuple | None = None
    # what a log is named after when its protocol has no file name (a network unit: its model)
    log_name: str | None = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        check_in_subclasses(cls, "present", checked_present)

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        """Show each stimulus `repeats` times (every kind's present checks its arguments first)."""
        raise NotImplementedError

    def gradient(self, stimuli: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """White-box access (when `has_gradient`): (clean responses (n,), d response / d stimulus (n, ...))."""
        raise NotImplementedError(f"neuron kind {self.kind!r} exposes no gradient")

    def ground_truth(self) -> dict[str, np.ndarray]:
        """Arrays the log keeps about the neuron itself (e.g. its receptive field)."""
        return {} if self.receptive_field is None else {"receptive_field": self.receptive_field}

    def get_state(self) -> dict[str, np.ndarray]:
        """State carried between calls to present (clock, drift, adaptation), as arrays."""
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if state:
            raise NotImplementedError(f"neuron kind {self.kind!r} keeps no state")


def checked_present(present):
    """present(stimuli, repeats), refusing what no neuron can be shown before it is shown."""

    @functools.wraps(present)
    def checked(self, stimuli, repeats):
        check_batch(self, stimuli)
        if not isinstance(repeats, numbers.Integral) or isinstance(repeats, bool) or repeats < 1:
            raise ValueError(f"repeats: a whole number of at least 1, got {repeats!r}")
        return present(self, stimuli, int(repeats))

    return checked


def interleaved_order(n: int, repeats: int, rng: np.random.Generator) -> np.ndarray:
    """Presentation slot of each (stimulus, repeat): repeat blocks, shuffled within each block,
    as an experimenter interleaves repeats so that slow drift does not alias onto stimuli."""
    order = np.empty((n, repeats), dtype=np.int64)
    for r in range(repeats):
        order[rng.permutation(n), r] = r * n + np.arange(n)
    return order
