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
from pydantic import Field, model_validator

from closedloop.component import Settings
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.brian_engine import Inputs, Layout, cache_dir, simulate
from closedloop.neurons.brian_models import CellSettings, CustomSettings, LIFSettings, cell_model
from closedloop.neurons.brian_session import AdaptationSettings, DriftSettings, RecordingSettings, Session
from closedloop.neurons.receptive_fields import FrontEndSettings, GaborSettings, build_front_end
from closedloop.registry import register

__all__ = ["SpikingCell", "SpikingSettings", "cache_dir"]

CURVE_POINTS = 32  # resolution of the measured rate curve used by the adaptation carry


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
                                    "(standalone when a C++ compiler is found)")
    threads: int = Field(1, ge=1, le=64, description="OpenMP threads of the standalone binary")

    @model_validator(mode="before")
    @classmethod
    def _default_kinds(cls, data):
        """`front_end` without `kind` is a Gabor and `cell` without `model` a LIF."""
        if isinstance(data, dict):
            data = dict(data)
            for key, tag, default in (("front_end", "kind", "gabor"), ("cell", "model", "lif")):
                if isinstance(data.get(key), dict) and tag not in data[key]:
                    data[key] = {tag: default, **data[key]}
        return data


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

    def _simulate(self, currents_nA, theta_mV, seed: int):
        cfg = self.config
        rng = np.random.default_rng(seed)
        sigma = cfg.cell.noise_sigma * 1e-9
        inputs = Inputs(I_stim=np.asarray(currents_nA, dtype=np.float64) * 1e-9,
                        theta=np.asarray(theta_mV, dtype=np.float64) * 1e-3,
                        I_noise=rng.standard_normal(len(currents_nA)) * sigma,  # stationary start
                        noise_sigma=sigma, seed=int(rng.integers(2**31 - 1)))
        return simulate(self.layout(len(currents_nA)), inputs, cfg.target)

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
        if self.session.adapting and self.rate_curve is None:
            self.rate_curve = self.measure_rate_curve(len(currents))
        adaptation = self.session.carried_adaptation(times, currents, self.expected_count)
        counts, spikes = self._simulate(currents - adaptation, drift["threshold"], int(rng.integers(2**63 - 1)))

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

    def measure_rate_curve(self, batch: int, points: int = CURVE_POINTS) -> np.ndarray:
        """Mean count vs current over the cell's working range, by the same simulator and batch size
        (no new build; noise included); smoothed and made monotone, since each current is one
        noisy presentation."""
        cell = self.config.cell
        low, high = cell.bias - cell.gain - 3 * cell.noise_sigma, cell.bias + 3 * cell.gain + 3 * cell.noise_sigma
        runs = -(-max(points, batch) // batch)
        currents = np.linspace(low, high, runs * batch)
        rng = self.rng(2**31)
        counts = np.concatenate([
            self._simulate(currents[k::runs], np.zeros(batch), int(rng.integers(2**63 - 1)))[0] for k in range(runs)])
        counts = counts.reshape(runs, batch).T.ravel().astype(float)  # back to increasing current
        width = max(3, len(counts) // 16)
        smooth = np.convolve(np.pad(counts, width // 2, mode="edge"), np.ones(width) / width, mode="valid")
        monotone = np.maximum.accumulate(smooth[: len(currents)])
        grid = np.linspace(low, high, points)  # a fixed size, so the state has a fixed size
        return np.stack([grid, np.interp(grid, currents, monotone)])

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
