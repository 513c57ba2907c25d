"""The optimizer-free protocols (tuning, reverse correlation, fooling, repeatability) and their
analyses, on neurons whose answer is known: the Brian2 Gabor cell and small test neurons."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydantic import Field
from scipy import stats

from closedloop import protocol as protocol_module
from closedloop.analysis import analyze
from closedloop.component import Settings
from closedloop.errors import ProtocolError
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.front_ends.base import gabor
from closedloop.recording import open_run
from closedloop.registry import register
from closedloop.stimuli import noise, noise_amplitude

PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"
CELL = {"kind": "spiking", "size": 16, "front_end": {"orientation": 30, "spatial_frequency": 0.15, "sigma": 3}}


class ProjectionSettings(Settings):
    size: int = 16
    period: float = Field(0.3, gt=0)


@register("neuron", "test_projection")
class ProjectionNeuron(Neuron):
    """Deterministic: the response is the projection of the stimulus on a unit-norm Gabor."""

    Config = ProjectionSettings
    response_unit = "a.u."

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)
        self.receptive_field = gabor(config.size)
        self.clock, self.calls = 0.0, 0

    def present(self, stimuli, repeats):
        projection = np.asarray(stimuli).reshape(len(stimuli), -1) @ self.receptive_field.ravel()
        slot = interleaved_order(len(stimuli), repeats, self.rng(self.calls))
        self.calls += 1
        t_start = self.clock + slot * self.config.period
        self.clock += slot.size * self.config.period
        responses = np.repeat(projection[:, None], repeats, axis=1)
        return Trials(responses=responses, t_start=t_start, clean=responses)


class DriftSettings(Settings):
    size: int = 16
    period: float = Field(0.3, gt=0, description="s per presentation")
    drift_sd: float = Field(0.4, ge=0, description="stationary s.d. of the log gain")
    drift_tau: float = Field(30.0, gt=0, description="s")
    reset_state: bool = False


@register("neuron", "test_drift")
class DriftingNeuron(Neuron):
    """Poisson counts of a Gabor cell whose gain drifts (an OU process of the log gain in
    session time) unless reset_state holds it at its resting value."""

    Config = DriftSettings
    state_columns = ("log_gain",)

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)
        self.receptive_field = gabor(config.size)
        self.clock, self.calls, self.log_gain = 0.0, 0, 0.0

    def present(self, stimuli, repeats):
        cfg = self.config
        rng = self.rng(self.calls)
        self.calls += 1
        n = len(stimuli)
        slot = interleaved_order(n, repeats, rng)
        decay = np.exp(-cfg.period / cfg.drift_tau)
        by_slot = np.zeros(n * repeats)
        for k in range(n * repeats):
            if not cfg.reset_state:
                self.log_gain = self.log_gain * decay + cfg.drift_sd * np.sqrt(1 - decay**2) * rng.standard_normal()
            by_slot[k] = self.log_gain
        log_gain = by_slot[slot]
        drive = np.maximum(np.asarray(stimuli).reshape(n, -1) @ self.receptive_field.ravel(), 0)
        rate = (2.0 + 4.0 * drive)[:, None] * np.exp(log_gain)
        t_start = self.clock + slot * cfg.period
        self.clock += n * repeats * cfg.period
        return Trials(responses=rng.poisson(rate), t_start=t_start, clean=rate, state={"log_gain": log_gain})


def run(tmp_path, data, name="run"):
    protocol = protocol_module.from_dict(data, f"{name}.yaml")
    experiment = protocol.experiment_cls(protocol)
    path = tmp_path / f"{name}.h5"
    summary = experiment.run(path, progress=False)
    assert summary["status"] == "complete"
    return path, analyze(path)


def test_shipped_protocols_validate():
    for name in ("tuning", "reverse-correlation", "fooling", "repeatability"):
        protocol = protocol_module.load(PROTOCOLS / f"{name}.yaml")
        protocol.experiment_cls(protocol)  # builds the neuron and the stimulus set


def test_pink_noise_has_unit_variance_and_a_1_over_f_spectrum(rng):
    images = noise(rng, 400, (16, 16), "pink")
    assert images.var() == pytest.approx(1.0, rel=0.05)
    power = (np.abs(np.fft.rfft2(images)) ** 2).mean(axis=0)
    amplitude = noise_amplitude((16, 16), "pink")
    ratio = power[amplitude > 0] / amplitude[amplitude > 0] ** 2
    assert ratio.std() / ratio.mean() < 0.15  # the measured spectrum follows the requested one


def test_tuning_finds_the_gabor_orientation(tmp_path):
    cell = {**CELL, "front_end": {"orientation": 120, "spatial_frequency": 0.15, "sigma": 3}}
    path, numbers = run(tmp_path, {"kind": "tuning", "seed": 2, "neuron": cell, "orientations": 12,
                                   "spatial_frequencies": [0.1, 0.15, 0.2], "phases": 4, "repeats": 3})
    assert abs(numbers["preferred_orientation"] - 120) < 7.5
    assert 0.1 <= numbers["preferred_spatial_frequency"] <= 0.2
    assert 5 < numbers["bandwidth_orientation"] < 60
    with open_run(path) as log:
        trials = log.trials
    assert len(trials) == 12 * 3 * 4 * 3
    assert trials.attrs["units"]["orientation"] == "deg" and trials.attrs["units"]["t_start"] == "s"
    assert "grating_phase" in trials and trials["phase"].eq("search").all()  # no collision with the trial phase
    assert set(trials["orientation"].round(6)) == set(np.arange(12) * 15.0)
    assert (np.diff(trials["t_start"]) > 0).all()
    # repeats interleaved: every grid point's first presentation comes before any second one
    first, second = trials[trials["repeat"] == 0]["t_start"], trials[trials["repeat"] == 1]["t_start"]
    assert first.max() < second.min()


def test_a_centre_surround_cell_has_no_preferred_orientation(tmp_path):
    path, numbers = run(tmp_path, {"kind": "tuning", "seed": 3, "neuron": {"kind": "lnp", "size": 16, "field": "dog"},
                                   "orientations": 8, "spatial_frequencies": [0.05, 0.1, 0.2, 0.3], "phases": 4,
                                   "repeats": 4})
    assert np.isnan(numbers["preferred_orientation"]) and numbers["tuning_p_orientation"] > 0.05
    assert "orientation: untuned, no preferred value" in numbers["lines"][1]
    assert 0.05 <= numbers["preferred_spatial_frequency"] <= 0.3 and numbers["tuning_p_spatial_frequency"] < 1e-3


@pytest.mark.slow
def test_reverse_correlation_recovers_the_gabor(tmp_path):
    path, numbers = run(tmp_path, {"kind": "reverse_correlation", "seed": 3, "neuron": CELL,
                                   "presentations": 3000, "contrast": 1.5})
    assert numbers["sta_correlation"] >= 0.9
    by_count = numbers["correlation_by_presentations"]
    counts = sorted(by_count)
    assert by_count[counts[-1]] > by_count[counts[0]] + 0.2  # more presentations, better estimate
    with open_run(path) as log:
        assert log.rendered().shape == (3000, 16, 16)


def test_fooling_rate_matches_the_analytic_probability(tmp_path):
    threshold, contrast = 1.0, 1.0
    path, numbers = run(tmp_path, {"kind": "fooling", "seed": 4, "neuron": {"kind": "test_projection"},
                                   "noise": ["white"], "count": 2000, "contrast": contrast,
                                   "threshold": threshold})
    # white noise is i.i.d. N(0, contrast^2) per pixel and the unit's weights have unit norm,
    # so its response is N(0, contrast^2)
    analytic = stats.norm.sf(threshold / contrast)
    white = numbers["rates"]["white"]
    assert white["n"] == 2000
    assert white["low"] <= analytic <= white["high"]
    assert white["high"] - white["low"] < 0.04


def test_fooling_against_an_evolved_optimum(tmp_path):
    evolved, _ = run(tmp_path, {"kind": "evolve", "seed": 1, "neuron": {"kind": "test_projection"},
                                "space": {"kind": "pixels", "size": 16, "contrast": 0.25},
                                "optimizer": {"kind": "random", "popsize": 10}, "generations": 3},
                     name="evolved")
    _, numbers = run(tmp_path, {"kind": "fooling", "seed": 4, "neuron": {"kind": "test_projection"},
                                "noise": ["white", "tv"], "count": 200, "threshold_fraction": 0.5,
                                "reference_run": str(evolved)})
    with open_run(evolved) as log:
        optimum = float(log.generations["best"].iloc[-1])
    assert numbers["threshold"] == pytest.approx(0.5 * optimum)
    assert numbers["rates"]["evolved"]["n"] == 10
    assert set(numbers["rates"]) == {"white", "tv", "evolved"}


def test_fooling_needs_one_threshold():
    with pytest.raises(ProtocolError, match="exactly one of threshold"):
        protocol_module.from_dict({"kind": "fooling", "neuron": CELL}, "f.yaml")
    with pytest.raises(ProtocolError, match="needs reference_run"):
        protocol_module.from_dict({"kind": "fooling", "neuron": CELL, "threshold_fraction": 0.5}, "f.yaml")


@pytest.mark.slow
def test_repeatability_of_a_cell_without_drift(tmp_path):
    _, numbers = run(tmp_path, {"kind": "repeatability", "seed": 5, "neuron": CELL, "items": 6, "blocks": 6})
    assert numbers["reliability"] > 0.9
    assert 0.1 < numbers["fano_factor"] < 1.5


def test_repeatability_separates_drift_from_tuning(tmp_path):
    _, numbers = run(tmp_path, {"kind": "repeatability", "seed": 6, "neuron": {"kind": "test_drift"},
                                "items": 8, "blocks": 30, "repeats": 2, "compare_reset_state": True})
    drifting, reset = numbers["sessions"]["reset_state off"], numbers["sessions"]["reset_state on"]
    assert drifting["drift_correlation"]["log_gain"] > 0.8
    assert reset["drift_correlation"] == {}  # the state holds still, nothing to follow
    assert reset["relative_response_sd"] < drifting["relative_response_sd"]
    assert reset["reliability"] > 0.95
    assert reset["fano_factor"] == pytest.approx(1.0, abs=0.25)  # Poisson counts
    assert drifting["fano_factor"] > reset["fano_factor"]


def test_repeatability_compare_needs_a_reset_switch():
    with pytest.raises(ProtocolError, match="no reset_state switch"):
        protocol = protocol_module.from_dict({"kind": "repeatability", "neuron": {"kind": "dnn", "model": "digits"},
                                              "compare_reset_state": True}, "r.yaml")
        protocol.experiment_cls(protocol)


def test_same_seed_same_log(tmp_path):
    data = {"kind": "repeatability", "seed": 7, "neuron": {"kind": "test_drift"}, "items": 4, "blocks": 3,
            "repeats": 2, "family": "noise"}
    first, _ = run(tmp_path, data, "first")
    second, _ = run(tmp_path, data, "second")
    with open_run(first) as a, open_run(second) as b:
        columns = ["stimulus", "t_start", "response", "log_gain"]
        assert a.trials[columns].equals(b.trials[columns])
        np.testing.assert_array_equal(a.rendered(), b.rendered())


@register("neuron", "test_energy")
class EnergyNeuron(Neuron):
    """A complex cell: Poisson counts at the energy of a quadrature pair of Gabors, so phase-
    invariant, with a spike-triggered average near zero."""

    Config = ProjectionSettings

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)
        self.receptive_field = gabor(config.size, phase=0.0)
        self.quadrature = gabor(config.size, phase=90.0)
        self.clock, self.calls = 0.0, 0

    def present(self, stimuli, repeats):
        flat = np.asarray(stimuli).reshape(len(stimuli), -1)
        energy = (flat @ self.receptive_field.ravel()) ** 2 + (flat @ self.quadrature.ravel()) ** 2
        rng = self.rng(self.calls)
        self.calls += 1
        slot = interleaved_order(len(stimuli), repeats, rng)
        t_start = self.clock + slot * self.config.period
        self.clock += slot.size * self.config.period
        rate = np.repeat(2.0 * energy[:, None], repeats, axis=1)
        return Trials(responses=rng.poisson(rate), t_start=t_start, clean=rate)


def test_spike_triggered_covariance_finds_a_complex_cell(tmp_path):
    _, numbers = run(tmp_path, {"kind": "reverse_correlation", "seed": 8,
                                "neuron": {"kind": "test_energy", "size": 12}, "presentations": 4000})
    assert abs(numbers["sta_correlation"]) < 0.5  # the average misses a phase-invariant cell
    assert numbers["stc_filters"] == 2
    assert numbers["stc_subspace_correlation"] > 0.9


def test_pink_noise_average_is_whitened(tmp_path):
    from closedloop.analysis.plots import correlation
    from closedloop.analysis.reverse_correlation import spike_triggered_average, stimulus_response

    path, numbers = run(tmp_path, {"kind": "reverse_correlation", "seed": 9, "noise": "pink", "presentations": 3000,
                                   "neuron": {"kind": "test_drift", "reset_state": True}})
    with open_run(path) as log:
        raw = correlation(spike_triggered_average(*stimulus_response(log)), log.receptive_field)
    assert numbers["sta_correlation"] >= 0.9
    assert numbers["sta_correlation"] > raw + 0.1  # pink noise blurs the plain average towards low frequencies
