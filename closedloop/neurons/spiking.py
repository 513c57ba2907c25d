"""A Brian2 spiking cell behind a receptive-field front end.

stimulus -> front end (front_ends/: gabor, complex, dog, strf, dnn) -> drive -> input current
bias + gain * drive -> cell model (cells/: lif, adex, custom equations) with an OU noise current
(and, for the LIF, stochastic escape-noise spiking) -> spike count in the window, with slow state
across presentations (brian_session.py: drift, carried adaptation, recording quality) unless
`reset_state` is set. One call to `present` is ONE batched Brian2 simulation (brian_engine.py):
n stimuli x repeats independent cells in one NeuronGroup.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings, kind_of
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.brian_engine import AUTO_NUMPY_CALLS, Engine, Inputs, cache_dir
from closedloop.neurons.brian_session import AdaptationSettings, DriftSettings, RecordingSettings, Session
from closedloop.registry import lookup, register

__all__ = ["SpikingCell", "SpikingSettings", "cache_dir"]

CURVE_POINTS = 32  # resolution of the rate curve kept in the state
CALIBRATION_CELLS = 64  # cells added to the first batch to measure it


class SpikingSettings(Settings):
    size: int = Field(16, ge=2, le=256, description="image side in pixels (image front ends)")
    reference_contrast: float = Field(0.25, gt=0, le=10, description="RMS contrast at which the optimum gives drive 1")
    front_end: kind_of("front_end", "gabor") = Field(
        default_factory=dict, validate_default=True,
        description="receptive field; kind: one of closedloop/neurons/front_ends/ (default gabor)")
    cell: kind_of("cell", "lif", tag="model") = Field(
        default_factory=dict, validate_default=True,
        description="cell model; model: one of closedloop/neurons/cells/ (default lif)")
    drift: DriftSettings = DriftSettings()
    adaptation: AdaptationSettings = AdaptationSettings()
    recording: RecordingSettings = RecordingSettings()
    reset_state: bool = Field(False, description="the same brain state at every presentation: no drift, no "
                                                 "carried adaptation, no loss of recording quality")
    window: float = Field(200.0, gt=0, le=100_000, description="presentation window, ms")
    interval: float = Field(100.0, ge=0, le=100_000, description="blank interval between presentations, ms")
    dt: float = Field(0.1, gt=0, le=10, description="simulation time step, ms")
    target: str = Field("auto", pattern="^(auto|standalone|numpy)$",
                        description="Brian2 mode: standalone (compiled once, cached), numpy, or auto "
                                    f"(standalone if a C++ compiler is found; numpy for the first "
                                    f"{AUTO_NUMPY_CALLS} calls while the binary is not built yet)")
    threads: int = Field(1, ge=1, le=64, description="OpenMP threads of the standalone binary")


@register("neuron", "spiking")
class SpikingCell(Neuron):
    """A sensory neuron: receptive-field front end -> noisy Brian2 cell -> spike counts."""

    Config = SpikingSettings
    state_units = {"drive": "1", "gain": "1", "threshold": "mV", "baseline": "nA", "adaptation": "nA",
                   "detection": "1"}
    response_unit = "spikes"

    def __init__(self, config: SpikingSettings, seed: int):
        super().__init__(config, seed)
        self.front_end = lookup("front_end", config.front_end.kind)(
            config.front_end, seed, size=config.size, reference_contrast=config.reference_contrast)
        self.stimulus_shape = tuple(self.front_end.stimulus_shape)
        self.modality, self.sample_rate = self.front_end.modality, self.front_end.sample_rate
        self.value_range = self.front_end.value_range
        self.receptive_field = self.front_end.receptive_field
        self.cell = lookup("cell", config.cell.model)(config.cell, seed)
        self.engine = Engine(self.cell.model, config.dt, config.window, config.cell.noise_tau, config.threads,
                             config.target)
        if config.drift.threshold.size > 0 and "theta" not in self.cell.model.threshold + self.cell.model.equations:
            raise ValueError("cell.threshold: drift.threshold is on but the model never uses theta (volt)")
        if self.cell.user_equations:
            self.engine.check()
        self.session = Session(config.drift, config.adaptation, config.recording, config.reset_state)
        self.state_columns = ("drive", *self.session.columns)
        self.clock = 0.0
        self.calls = 0
        self.rate_curve: np.ndarray | None = None  # (2, k): input current (nA), mean spike count

    def ground_truth(self):
        return self.front_end.ground_truth()

    def drive(self, stimuli: np.ndarray) -> np.ndarray:
        return self.front_end.drive(stimuli)

    def _simulate(self, currents_nA, theta_mV, seed: int):
        cfg = self.config
        rng = np.random.default_rng(seed)
        sigma = cfg.cell.noise_sigma * 1e-9
        inputs = Inputs(I_stim=np.asarray(currents_nA, dtype=np.float64) * 1e-9,
                        theta=np.asarray(theta_mV, dtype=np.float64) * 1e-3,
                        I_noise=rng.standard_normal(len(currents_nA)) * sigma,  # stationary start
                        noise_sigma=sigma, seed=int(rng.integers(2**31 - 1)))
        return self.engine.simulate(inputs, self.calls)

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        stimuli = np.asarray(stimuli, dtype=np.float64)
        n, cfg = len(stimuli), self.config
        rng = self.rng(self.calls)
        self.calls += 1
        slot = interleaved_order(n, repeats, rng)
        period = (cfg.window + cfg.interval) / 1000.0
        t_start = self.clock + slot * period
        self.clock += n * repeats * period
        drive = np.repeat(self.drive(stimuli)[:, None], repeats, axis=1)

        order = np.argsort(t_start.ravel(), kind="stable")  # flat (stimulus, repeat) index in time order
        times = t_start.ravel()[order]
        drift = self.session.sample_drift(times, rng)
        gain = np.exp(drift["gain"])
        currents = cfg.cell.bias + drift["baseline"] + cfg.cell.gain * gain * drive.ravel()[order]
        calibrate = self.session.adapting and self.rate_curve is None
        # the first batch measures the rate curve alongside (extra cells, same run) and carries
        # no adaptation between its own presentations
        adaptation = self.session.carried_adaptation(times, currents, (lambda _: 0.0) if calibrate else self.expected_count)
        inputs, thresholds = currents - adaptation, drift["threshold"]
        if calibrate:
            inputs = np.concatenate([inputs, self.calibration_currents()])
            thresholds = np.concatenate([thresholds, np.zeros(CALIBRATION_CELLS)])
        counts, spikes = self._simulate(inputs, thresholds, int(rng.integers(2**63 - 1)))
        if calibrate:
            self.rate_curve = self.rate_curve_from(counts[len(currents):])
            counts, spikes = counts[: len(currents)], spikes[: len(currents)]

        detection = self.session.detection(times)
        if self.session.decaying:
            spikes = [s[rng.random(len(s)) < p] for s, p in zip(spikes, detection)]
            counts = np.array([len(s) for s in spikes])
        self.session.settle(float(counts[-1]))

        unsort = np.empty_like(order)
        unsort[order] = np.arange(len(order))
        per_trial = {"gain": gain, "threshold": drift["threshold"], "baseline": drift["baseline"],
                     "adaptation": adaptation, "detection": detection}
        state = {"drive": drive}
        for name in self.session.columns:
            state[name] = per_trial[name][unsort].reshape(n, repeats)
        return Trials(responses=counts[unsort].reshape(n, repeats), t_start=t_start, state=state,
                      spike_times=[spikes[k] for k in unsort])

    def expected_count(self, current_nA: float) -> float:
        """Mean spike count at a constant input current, from the measured rate curve."""
        return float(np.interp(current_nA, self.rate_curve[0], self.rate_curve[1]))

    def calibration_currents(self) -> np.ndarray:
        """Constant input currents (nA) spanning the cell's working range."""
        cell = self.config.cell
        low, high = cell.bias - cell.gain - 3 * cell.noise_sigma, cell.bias + 3 * cell.gain + 3 * cell.noise_sigma
        return np.linspace(low, high, CALIBRATION_CELLS)

    def rate_curve_from(self, counts: np.ndarray) -> np.ndarray:
        """Mean count vs current from one noisy presentation per calibration current: smoothed,
        made monotone, resampled to CURVE_POINTS (a fixed size, so the state has a fixed size)."""
        currents, width = self.calibration_currents(), 5
        smooth = np.convolve(np.pad(counts.astype(float), width // 2, mode="edge"), np.ones(width) / width, "valid")
        grid = np.linspace(currents[0], currents[-1], CURVE_POINTS)
        return np.stack([grid, np.interp(grid, currents, np.maximum.accumulate(smooth))])

    def get_state(self):
        """Fixed-size 1-D arrays (the log keeps one row per generation)."""
        curve = self.rate_curve.ravel() if self.rate_curve is not None else np.full(2 * CURVE_POINTS, np.nan)
        return {"clock": np.array([self.clock]), "calls": np.array([self.calls]), **self.session.get_state(),
                "rate_curve": curve}

    def set_state(self, state):
        self.clock = float(np.asarray(state["clock"]).ravel()[0])
        self.calls = int(np.asarray(state["calls"]).ravel()[0])
        if "drift" in state:
            self.session.set_state(state)
        curve = np.asarray(state.get("rate_curve", np.full(2 * CURVE_POINTS, np.nan)), dtype=np.float64)
        self.rate_curve = curve.reshape(2, -1).copy() if np.isfinite(curve).all() and curve.size else None
