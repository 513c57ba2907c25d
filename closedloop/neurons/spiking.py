"""A Brian2 spiking cell behind a receptive-field front end.

stimulus -> front end (receptive_fields.py: gabor, complex, dog, strf, dnn) -> drive ->
input current bias + gain * drive -> cell (brian_models.py: lif, adex, custom equations) with an
OU noise current (and, for the LIF, stochastic escape-noise spiking) -> spike count in the window,
with slow state across presentations (brian_session.py: drift, carried adaptation, recording
quality) unless `reset_state` is set. One call to `present` is ONE batched Brian2 simulation
(brian_engine.py): n stimuli x repeats independent cells in one NeuronGroup.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator

from closedloop.component import Settings
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.brian_engine import Inputs, Layout, cache_dir, simulate
from closedloop.neurons.brian_models import (AdExSettings, CellSettings, CustomSettings, LIFSettings,
                                             cell_model)
from closedloop.neurons.brian_session import AdaptationSettings, DriftSettings, RecordingSettings, Session
from closedloop.neurons.receptive_fields import (FrontEndSettings, GaborSettings, build_front_end,
                                                front_end_settings)
from closedloop.registry import register

__all__ = ["SpikingCell", "SpikingSettings", "cache_dir"]

TAGGED = {"front_end": ("kind", "gabor", front_end_settings()),
          "cell": ("model", "lif", {"lif": LIFSettings, "adex": AdExSettings, "custom": CustomSettings})}
CURVE_POINTS = 32  # resolution of the rate curve kept in the state
CALIBRATION_CELLS = 64  # cells added to the first batch to measure it
AUTO_NUMPY_CALLS = 2  # resolution of the measured rate curve used by the adaptation carry


class SpikingSettings(Settings):
    size: int = Field(16, ge=2, le=256, description="image side in pixels (image front ends)")
    reference_contrast: float = Field(0.25, gt=0, description="RMS contrast at which the optimum gives drive 1")
    front_end: FrontEndSettings = Field(GaborSettings(), description="receptive field; kind: gabor (default), "
                                                                     "complex, dog, strf or dnn")
    cell: CellSettings = Field(LIFSettings(), description="model: lif (default), adex or custom")
    drift: DriftSettings = DriftSettings()
    adaptation: AdaptationSettings = AdaptationSettings()
    recording: RecordingSettings = RecordingSettings()
    reset_state: bool = Field(False, description="the same brain state at every presentation: no drift, no "
                                                 "carried adaptation, no loss of recording quality")
    window: float = Field(200.0, gt=0, description="presentation window, ms")
    interval: float = Field(100.0, ge=0, description="blank interval between presentations, ms")
    dt: float = Field(0.1, gt=0, description="simulation time step, ms")
    target: str = Field("auto", pattern="^(auto|standalone|numpy)$",
                        description="Brian2 mode: standalone (compiled once, cached), numpy, or auto "
                                    "(numpy for the first 2 calls, then standalone if a C++ compiler is found)")
    threads: int = Field(1, ge=1, le=64, description="OpenMP threads of the standalone binary")

    @field_validator("front_end", "cell", mode="wrap")
    @classmethod
    def _pick_by_tag(cls, value, handler, info):
        """A union chosen by its tag (`front_end.kind`, default gabor; `cell.model`, default lif),
        validated here so that errors name the field path without the tag."""
        if not isinstance(value, dict):
            return handler(value)
        tag, default, table = TAGGED[info.field_name]
        name = value.get(tag, default)
        if name not in table:
            raise ValueError(f"{tag}: unknown {tag} {name!r} (one of: {', '.join(table)})")
        return table[name].model_validate(value)


@register("neuron", "spiking")
class SpikingCell(Neuron):
    """A sensory neuron: receptive-field front end -> noisy Brian2 cell -> spike counts."""

    Config = SpikingSettings
    response_unit = "spikes"

    def __init__(self, config: SpikingSettings, seed: int):
        super().__init__(config, seed)
        self.front_end = build_front_end(config.front_end, config.size, config.reference_contrast, seed)
        self.stimulus_shape = tuple(self.front_end.stimulus_shape)
        self.modality, self.sample_rate = self.front_end.modality, self.front_end.sample_rate
        self.value_range = self.front_end.value_range
        self.receptive_field = self.front_end.receptive_field
        self.model = cell_model(config.cell)
        if isinstance(config.cell, CustomSettings):
            self._check_custom_model()
        self.session = Session(config.drift, config.adaptation, config.recording, config.reset_state)
        self.state_columns = ("drive", *self.session.columns)
        self.clock = 0.0
        self.calls = 0
        self.rate_curve: np.ndarray | None = None  # (2, k): input current (nA), mean spike count

    def ground_truth(self):
        return self.front_end.ground_truth()

    def drive(self, stimuli: np.ndarray) -> np.ndarray:
        return self.front_end.drive(stimuli)

    def layout(self, n: int) -> Layout:
        cfg = self.config
        return Layout(self.model, n, cfg.dt, cfg.window, cfg.cell.noise_tau, cfg.threads)

    def target(self) -> str:
        """`auto`: Brian2 runtime (numpy) for the first AUTO_NUMPY_CALLS calls, so that a short use
        never waits for a build, then the cached standalone binary; fixed by the call count, so
        a resumed run makes the same choice."""
        if self.config.target != "auto":
            return self.config.target
        return "numpy" if self.calls <= AUTO_NUMPY_CALLS else "auto"

    def _simulate(self, currents_nA, theta_mV, seed: int):
        cfg = self.config
        rng = np.random.default_rng(seed)
        sigma = cfg.cell.noise_sigma * 1e-9
        inputs = Inputs(I_stim=np.asarray(currents_nA, dtype=np.float64) * 1e-9,
                        theta=np.asarray(theta_mV, dtype=np.float64) * 1e-3,
                        I_noise=rng.standard_normal(len(currents_nA)) * sigma,  # stationary start
                        noise_sigma=sigma, seed=int(rng.integers(2**31 - 1)))
        return simulate(self.layout(len(currents_nA)), inputs, self.target())

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        stimuli = np.asarray(stimuli, dtype=np.float64)
        if stimuli.shape[1:] != self.stimulus_shape:
            raise ValueError(f"stimuli of shape {stimuli.shape[1:]}, expected {self.stimulus_shape}")
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

    def _check_custom_model(self) -> None:
        """Build the user's equations once (tiny runtime group) so mistakes surface at load time."""
        import brian2 as b2

        from closedloop.neurons.brian_engine import _network

        b2.prefs.codegen.target = "numpy"
        group, monitor, namespace = _network(self.layout(1), b2)
        try:
            b2.Network(group, monitor).run(self.config.dt * b2.ms, namespace=namespace)
        except Exception as exc:
            raise ValueError(f"cell: Brian2 cannot run the model: {str(exc).splitlines()[0]}") from None

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
