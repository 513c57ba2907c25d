"""A Brian2 spiking cell behind a receptive-field front end.

stimulus -> front end (linear Gabor receptive field, rectified) -> input current ->
leaky integrate-and-fire cell with an Ornstein-Uhlenbeck noise current -> spike count in the
presentation window. One call to `present` is ONE Brian2 simulation: n stimuli x repeats
independent neurons in one NeuronGroup.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.receptive_fields import GaborSettings, gabor, linear_drive
from closedloop.registry import register


def cache_dir() -> Path:
    """Compiled-code cache, outside the repository and shared by every run."""
    root = os.environ.get("CLOSEDLOOP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "closedloop"
    )
    path = Path(root) / "brian2"
    path.mkdir(parents=True, exist_ok=True)
    return path


class LIFSettings(Settings):
    tau_m: float = Field(20.0, gt=0, description="membrane time constant, ms")
    v_rest: float = Field(-65.0, description="mV")
    v_threshold: float = Field(-50.0, description="mV")
    v_reset: float = Field(-65.0, description="mV")
    refractory: float = Field(2.0, ge=0, description="ms")
    resistance: float = Field(100.0, gt=0, description="membrane resistance, megaohm")
    bias: float = Field(0.13, description="constant input current, nA (rheobase is 0.15 nA by default)")
    gain: float = Field(0.25, ge=0, description="input current at the optimum stimulus, nA")
    noise_sigma: float = Field(0.05, ge=0, description="standard deviation of the OU noise current, nA")
    noise_tau: float = Field(5.0, gt=0, description="correlation time of the OU noise current, ms")


class SpikingSettings(Settings):
    size: int = Field(16, ge=2, le=256, description="image side in pixels")
    reference_contrast: float = Field(0.25, gt=0, description="RMS contrast at which the optimum gives the full gain")
    front_end: GaborSettings = GaborSettings()
    cell: LIFSettings = LIFSettings()
    window: float = Field(200.0, gt=0, description="presentation window, ms")
    interval: float = Field(100.0, ge=0, description="blank interval between presentations, ms")
    dt: float = Field(0.1, gt=0, description="simulation time step, ms")
    target: str = Field("numpy", pattern="^(numpy|cython)$", description="Brian2 code generation target")


LIF_EQUATIONS = """
dv/dt = (v_rest - v + R * (I_stim + I_noise)) / tau_m : volt (unless refractory)
dI_noise/dt = -I_noise / tau_noise + sigma_noise * sqrt(2 / tau_noise) * xi : amp
I_stim : amp
"""


def simulate_lif(currents_nA: np.ndarray, cell: LIFSettings, window_ms: float, dt_ms: float, seed: int,
                 target: str = "numpy") -> tuple[np.ndarray, list[np.ndarray]]:
    """One Brian2 run with one LIF neuron per entry of `currents_nA`.

    Returns the spike count of each neuron and its spike times (s from onset)."""
    import brian2 as b2

    b2.prefs.codegen.target = target
    if target == "cython":
        b2.prefs.codegen.runtime.cython.cache_dir = str(cache_dir())
    b2.prefs.logging.std_redirection = False
    n = len(currents_nA)
    namespace = {
        "v_rest": cell.v_rest * b2.mV,
        "R": cell.resistance * b2.Mohm,
        "tau_m": cell.tau_m * b2.ms,
        "tau_noise": cell.noise_tau * b2.ms,
        "sigma_noise": cell.noise_sigma * b2.nA,
    }
    group = b2.NeuronGroup(
        n, LIF_EQUATIONS, threshold=f"v > {cell.v_threshold}*mV", reset=f"v = {cell.v_reset}*mV",
        refractory=cell.refractory * b2.ms, method="euler", namespace=namespace, dt=dt_ms * b2.ms,
    )
    rng = np.random.default_rng(seed)
    group.v = cell.v_rest * b2.mV
    group.I_stim = np.asarray(currents_nA, dtype=np.float64) * b2.nA
    group.I_noise = rng.standard_normal(n) * cell.noise_sigma * b2.nA  # start in the stationary state
    monitor = b2.SpikeMonitor(group)
    network = b2.Network(group, monitor)
    b2.seed(int(rng.integers(2**31 - 1)))
    network.run(window_ms * b2.ms, namespace={})
    index = np.asarray(monitor.i[:], dtype=np.int64)
    times = np.asarray(monitor.t[:] / b2.second, dtype=np.float64)
    counts = np.bincount(index, minlength=n)
    order = np.argsort(index, kind="stable")
    spikes = np.split(times[order], np.cumsum(counts)[:-1])
    return counts, spikes


@register("neuron", "spiking")
class SpikingCell(Neuron):
    """A V1 simple cell: Gabor receptive field -> rectified current -> noisy LIF (Brian2)."""

    Config = SpikingSettings
    state_columns = ("drive",)
    response_unit = "spikes"

    def __init__(self, config: SpikingSettings, seed: int):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)
        fe = config.front_end
        self.receptive_field = gabor(config.size, fe.orientation, fe.spatial_frequency, fe.sigma, fe.phase, fe.center)
        self.clock = 0.0
        self.calls = 0

    def drive(self, stimuli: np.ndarray) -> np.ndarray:
        return linear_drive(stimuli, self.receptive_field, self.config.reference_contrast)

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        stimuli = np.asarray(stimuli, dtype=np.float64)
        if stimuli.shape[1:] != self.stimulus_shape:
            raise ValueError(f"stimuli of shape {stimuli.shape[1:]}, expected {self.stimulus_shape}")
        n, cfg = len(stimuli), self.config
        rng = self.rng(self.calls)
        self.calls += 1
        drive = np.repeat(self.drive(stimuli)[:, None], repeats, axis=1)
        currents = cfg.cell.bias + cfg.cell.gain * drive
        counts, spikes = simulate_lif(currents.ravel(), cfg.cell, cfg.window, cfg.dt,
                                      int(rng.integers(2**63 - 1)), cfg.target)
        slot = interleaved_order(n, repeats, rng)
        period = (cfg.window + cfg.interval) / 1000.0
        t_start = self.clock + slot * period
        self.clock += n * repeats * period
        return Trials(responses=counts.reshape(n, repeats), t_start=t_start, state={"drive": drive},
                      spike_times=spikes)

    def get_state(self):
        return {"clock": np.array([self.clock]), "calls": np.array([self.calls])}

    def set_state(self, state):
        self.clock = float(state["clock"][0])
        self.calls = int(state["calls"][0])
