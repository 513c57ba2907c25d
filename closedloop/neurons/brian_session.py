"""The slow state of a recorded cell across presentations (never inside one).

- drift: gain (log-normal factor), threshold (mV) and baseline current (nA), each an
  Ornstein-Uhlenbeck process in session time, sampled exactly at each presentation's start
  and held for the presentation.
- adaptation: a slow hyperpolarising current carried from one presentation into the next, so
  the order of presentations matters: a_k = (a_{k-1} + strength * count_{k-1}) * exp(-gap / tau).
- recording: the probability that a spike is detected decays over the session
  (floor + (1 - floor) * exp(-t / decay)); missed spikes vanish from the response.

Approximation. One `present` call simulates all its presentations at once, in one batched Brian2
run, so the spike count of presentation k-1 is not known when presentation k starts. The carry
uses instead the count *expected* at k-1's input current, read from the cell's own rate curve
(mean count vs current, noise included, measured by extra cells riding along in the first
batch's simulation, so that batch carries no adaptation between its own presentations). Between
calls the carry uses the real count of the last presentation. The adaptation current is held
constant within a presentation (its value at onset).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings


class OUDrift(Settings):
    size: float = Field(0.0, ge=0, le=10, description="stationary standard deviation (0: off)")
    tau: float = Field(300.0, gt=0, le=1e6, description="correlation time in session time, s")


class DriftSettings(Settings):
    gain: OUDrift = Field(OUDrift(size=0.1), description="drift of log gain (size 0.1: +-10%)")
    threshold: OUDrift = Field(OUDrift(), description="threshold shift, mV")
    baseline: OUDrift = Field(OUDrift(), description="baseline current shift, nA")


class AdaptationSettings(Settings):
    strength: float = Field(0.002, ge=0, le=100, description="nA of slow adaptation current per spike (0: off)")
    tau: float = Field(0.5, gt=0, le=10_000, description="decay time of the slow adaptation current, s")


class RecordingSettings(Settings):
    decay: float | None = Field(None, gt=0, le=1e6, description="time constant of the loss of detected spikes, s (none: stable)")
    floor: float = Field(0.5, ge=0, le=1, description="fraction of spikes still detected in the long run")


DRIFTS = ("gain", "threshold", "baseline")


class Session:
    """Drift, carried adaptation and recording quality, advanced presentation by presentation."""

    def __init__(self, drift: DriftSettings, adaptation: AdaptationSettings, recording: RecordingSettings,
                 reset_state: bool):
        self.drift, self.adaptation, self.recording = drift, adaptation, recording
        self.reset_state = reset_state
        # what is configured is logged, so a session with reset_state has the same columns (held still)
        self.configured = (*(name for name in DRIFTS if getattr(drift, name).size > 0),
                           *(("adaptation",) if adaptation.strength > 0 else ()),
                           *(("detection",) if recording.decay is not None and recording.floor < 1 else ()))
        self.drifting = () if reset_state else tuple(name for name in DRIFTS if name in self.configured)
        self.adapting = "adaptation" in self.configured and not reset_state
        self.decaying = "detection" in self.configured and not reset_state
        self.x = np.zeros(len(DRIFTS))  # drift values at time t_last (threshold mV, baseline nA, log gain)
        self.t_last = -np.inf
        self.carry = np.array([0.0, 0.0, -np.inf])  # adaptation (nA) at the last start, its count, its start

    @property
    def columns(self) -> tuple[str, ...]:
        return self.configured

    def sample_drift(self, times: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Drift values at the given (sorted) session times; advances the state."""
        values = {name: np.zeros(len(times)) for name in DRIFTS}
        if not self.drifting:
            return values
        z = rng.standard_normal((len(times), len(DRIFTS)))
        sizes = np.array([getattr(self.drift, name).size for name in DRIFTS])
        taus = np.array([getattr(self.drift, name).tau for name in DRIFTS])
        x, t_last = self.x, self.t_last
        out = np.empty((len(times), len(DRIFTS)))
        for k, t in enumerate(times):
            keep = np.exp(-(t - t_last) / taus)  # 0 at the first sample: start in the stationary state
            x = x * keep + sizes * np.sqrt(1 - keep**2) * z[k]
            out[k], t_last = x, t
        self.x, self.t_last = x, t_last
        for j, name in enumerate(DRIFTS):
            values[name] = out[:, j]
        return values

    def carried_adaptation(self, times: np.ndarray, currents: np.ndarray, expected_count) -> np.ndarray:
        """Adaptation current (nA) at each (sorted) start; `currents` are the inputs without it."""
        a = np.zeros(len(times))
        if not self.adapting:
            return a
        strength, tau = self.adaptation.strength, self.adaptation.tau
        previous, count, t_prev = self.carry
        for k, t in enumerate(times):
            a[k] = (previous + strength * count) * np.exp(-(t - t_prev) / tau) if np.isfinite(t_prev) else 0.0
            previous, t_prev = a[k], t
            count = float(expected_count(currents[k] - a[k]))
        self.carry = np.array([previous, count, t_prev])
        return a

    def settle(self, last_count: float) -> None:
        """Replace the expected count of the last presentation by the real one."""
        if self.adapting:
            self.carry[1] = last_count

    def detection(self, times: np.ndarray) -> np.ndarray:
        if not self.decaying:
            return np.ones(len(times))
        floor = self.recording.floor
        return floor + (1 - floor) * np.exp(-np.asarray(times) / self.recording.decay)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"drift": self.x.copy(), "drift_time": np.array([self.t_last]), "carry": self.carry.copy()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.x = np.asarray(state["drift"], dtype=np.float64).ravel().copy()
        self.t_last = float(np.asarray(state["drift_time"]).ravel()[0])
        self.carry = np.asarray(state["carry"], dtype=np.float64).ravel().copy()
