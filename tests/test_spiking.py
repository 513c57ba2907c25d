"""The spiking cell against expectations that do not come from its code: the analytic LIF f-I
curve, tuning, phase invariance, centre-surround preference, adaptation, drift, variability,
determinism. Real Brian2 (runtime numpy mode; one slow test builds the standalone binary)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from closedloop.errors import ProtocolError
from closedloop.neurons.brian_engine import Engine, Inputs, compiler_works, standalone_size
from closedloop.neurons.brian_noise import noise_normal_numpy
from closedloop.neurons.cells.base import parse_quantity
from closedloop.neurons.cells.lif import LIF, LIFSettings
from closedloop.neurons.spiking import SpikingCell, SpikingSettings

SIZE, CONTRAST = 16, 0.25


def make_cell(seed=1, **config):
    return SpikingCell(SpikingSettings.model_validate({"target": "numpy", **config}), seed)


def grating(orientation, frequency=0.15, phase=0.0, size=SIZE, contrast=CONTRAST):
    """A full-field grating at a given RMS contrast, written independently of the front ends."""
    y, x = np.mgrid[0:size, 0:size] - (size - 1) / 2
    theta = np.deg2rad(orientation)
    image = np.cos(2 * np.pi * frequency * (x * np.cos(theta) + y * np.sin(theta)) + np.deg2rad(phase))
    image -= image.mean()
    return image * contrast / image.std()


def test_lif_matches_the_analytic_f_i_curve():
    cell = LIFSettings(escape_rate=0, noise_sigma=0, tau_m=20, v_reset=-65, refractory=2)
    currents = np.linspace(0.16, 0.6, 12)  # nA, above the rheobase (v_threshold - v_rest) / R = 0.15 nA
    engine = Engine(LIF(cell, 0).model, 0.1, 200.0, cell.noise_tau, target="numpy")
    counts, _ = engine.simulate(Inputs(currents * 1e-9, np.zeros(12), np.zeros(12), 0.0, 1), call=1)
    tau, v_inf = cell.tau_m, cell.v_rest + cell.resistance * currents  # ms, mV
    to_threshold = tau * np.log((v_inf - cell.v_reset) / (v_inf - cell.v_threshold))
    first = tau * np.log((v_inf - cell.v_rest) / (v_inf - cell.v_threshold))  # starts at rest
    expected = 1 + np.floor((200.0 - first) / (cell.refractory + to_threshold))
    assert np.all(np.abs(counts - expected) <= 1), (counts, expected)
    assert abs(counts.sum() / expected.sum() - 1) < 0.03


def test_noise_generator_is_unit_gaussian_like():
    z = noise_normal_numpy(np.arange(200_000) % 1000, np.arange(200_000) // 1000, 7)
    assert abs(z.mean()) < 0.01 and abs(z.std() - 1) < 0.01
    assert abs(np.corrcoef(z[:-1], z[1:])[0, 1]) < 0.01


def test_simple_cell_tuning_peaks_at_preferred_orientation():
    cell = make_cell(reset_state=True, window=200.0, front_end={"orientation": 60})
    orientations = np.arange(0, 180, 15)
    stimuli = np.array([grating(o, phase=p, contrast=0.5) for o in orientations for p in (0, 90, 180, 270)])
    counts = cell.present(stimuli, 4).responses.mean(axis=1).reshape(len(orientations), 4).mean(axis=1)
    assert orientations[np.argmax(counts)] == 60
    assert counts.max() > 2 * counts[np.argmin(np.abs(orientations - 150))]


def test_complex_cell_is_phase_invariant_and_simple_cell_is_not():
    phases = np.arange(0, 360, 45)
    stimuli = np.array([grating(30, phase=p, contrast=0.5) for p in phases])
    complex_cell = make_cell(reset_state=True, front_end={"kind": "complex"})
    drive = complex_cell.drive(stimuli)
    assert drive.std() < 0.05 * drive.mean()
    complex_counts = complex_cell.present(stimuli, 12).responses.mean(axis=1)
    simple_counts = make_cell(reset_state=True).present(stimuli, 12).responses.mean(axis=1)
    assert complex_counts.max() < 1.6 * complex_counts.min()
    assert simple_counts.max() > 3 * simple_counts.min()


def test_centre_surround_cell_prefers_a_spot_in_a_ring():
    y, x = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
    r = np.hypot(x, y)
    spot = np.where(r < 2.0, 1.0, np.where(r < 5.0, -0.35, 0.0))
    spot = (spot - spot.mean()) * CONTRAST / (spot - spot.mean()).std()
    others = [grating(o, f, p) for o in (0, 45, 90) for f in (0.05, 0.15, 0.3) for p in (0, 180)]
    cell = make_cell(reset_state=True, window=100.0, front_end={"kind": "dog"})
    counts = cell.present(np.array([spot, -spot, *others]), 6).responses.mean(axis=1)
    assert counts[0] > counts[2:].max() and counts[0] > 2 * counts[1]


def test_adaptation_lowers_the_response_after_a_strong_stimulus():
    config = dict(window=100.0, drift={"gain": {"size": 0}}, adaptation={"strength": 0.01, "tau": 0.5})
    adapted, fresh = make_cell(**config), make_cell(**config)
    strong = adapted.front_end.optimum()[None] * 1.5
    adapted.present(strong, 16)
    fresh.present(np.zeros_like(strong), 16)
    test = 0.6 * strong / 1.5
    a, b = adapted.present(test, 16), fresh.present(test, 16)  # same noise: only the carried state differs
    first = np.argsort(a.t_start[0])[:3]
    assert np.all(a.state["adaptation"][0, first] > b.state["adaptation"][0, first])
    assert a.responses[0, first].sum() < b.responses[0, first].sum()


def test_slow_response_component_follows_the_logged_gain_drift():
    cell = make_cell(window=100.0, interval=100.0, adaptation={"strength": 0},
                     drift={"gain": {"size": 0.4, "tau": 15.0}})
    stimulus = cell.front_end.optimum()[None] * 0.6
    trials = cell.present(stimulus, 400)
    order = np.argsort(trials.t_start[0])
    response, gain = trials.responses[0, order], trials.state["gain"][0, order]
    kernel = np.ones(25) / 25
    slow = np.convolve(response, kernel, mode="valid")
    assert np.corrcoef(slow, np.convolve(gain, kernel, mode="valid"))[0, 1] > 0.7
    held = make_cell(reset_state=True, window=50.0, drift={"gain": {"size": 0.4, "tau": 15.0}})
    assert "gain" in held.state_columns
    assert np.all(held.present(stimulus, 20).state["gain"] == 1.0)  # logged, but held still


def test_default_cell_has_cortical_fano_factors():
    cell = make_cell(reset_state=True)
    best = cell.front_end.optimum()
    counts = cell.present(np.array([0.25 * best, 0.5 * best, 0.75 * best]), 60).responses
    fano = counts.var(axis=1, ddof=1) / counts.mean(axis=1)
    assert 0.7 < fano.mean() < 1.5, fano


def test_same_seed_same_trials_and_state_round_trip():
    stimuli = np.array([grating(30), grating(90), grating(150)])
    config = dict(window=50.0, drift={"threshold": {"size": 1.0, "tau": 2.0}}, recording={"decay": 5.0})
    first, twin = make_cell(seed=5, **config), make_cell(seed=5, **config)
    a0, b0 = first.present(stimuli, 6), twin.present(stimuli, 6)
    np.testing.assert_array_equal(a0.responses, b0.responses)
    saved = first.get_state()
    assert all(isinstance(v, np.ndarray) and v.ndim == 1 for v in saved.values())
    assert {k: v.shape for k, v in saved.items()} == {k: v.shape for k, v in make_cell(**config).get_state().items()}
    expected = first.present(stimuli, 6)
    resumed = make_cell(seed=5, **config)
    resumed.set_state(saved)
    again = resumed.present(stimuli, 6)
    np.testing.assert_array_equal(expected.responses, again.responses)
    np.testing.assert_array_equal(expected.t_start, again.t_start)
    for name in first.state_columns:
        np.testing.assert_array_equal(expected.state[name], again.state[name])
    assert {"threshold", "adaptation", "detection"} <= set(first.state_columns)


def test_adex_adapts_within_a_presentation():
    cell = make_cell(reset_state=True, cell={"model": "adex", "noise_sigma": 0.0})
    spikes = cell.present(cell.front_end.optimum()[None], 1).spike_times[0]
    isi = np.diff(spikes)
    assert len(isi) >= 4 and isi[-1] > 1.5 * isi[0]


def test_custom_equations_reproduce_the_builtin_lif():
    lif = {"model": "lif", "escape_rate": 0, "tau_m": 10, "v_reset": -65}
    custom = {"model": "custom", "equations": "dv/dt = (v_rest - v + R * (I_stim + I_noise)) / tau_m : volt (unless refractory)",
              "threshold": "v > -50*mV + theta", "reset": "v = v_rest", "refractory": "1*ms",
              "parameters": {"v_rest": "-65*mV", "R": "100 Mohm", "tau_m": "10*ms"}, "initial": {"v": "-65*mV"}}
    stimuli = np.array([grating(30), grating(30, phase=90)])
    a = make_cell(reset_state=True, window=50.0, cell=lif).present(stimuli, 4)
    b = make_cell(reset_state=True, window=50.0, cell=custom).present(stimuli, 4)
    np.testing.assert_array_equal(a.responses, b.responses)
    with pytest.raises(ValueError, match="tau_m"):
        make_cell(cell={**custom, "parameters": {**custom["parameters"], "tau_m": "10*lightyears"}})
    with pytest.raises(ValueError, match="I_stim"):
        make_cell(cell={**custom, "equations": "dv/dt = -v / (10*ms) : volt"})
    assert float(parse_quantity("-65 mV", "v")) == pytest.approx(-0.065)


def test_auditory_cell_prefers_its_optimum_over_tones():
    cell = make_cell(reset_state=True, window=100.0, front_end={"kind": "strf", "duration": 0.128})
    assert cell.modality == "audio" and cell.stimulus_shape == (2048,)
    t = np.arange(2048) / 16000
    tones = np.array([np.sin(2 * np.pi * f * t) for f in (250, 500, 1000, 2000, 4000)])
    tones *= CONTRAST / tones.std(axis=1, keepdims=True)
    drives = cell.drive(np.vstack([cell.front_end.optimum()[None], tones]))
    assert drives[0] == pytest.approx(1.0) and drives[0] >= drives[1:].max()
    assert np.argmax(drives[1:]) == 2  # the best frequency, 1000 Hz
    counts = cell.present(np.vstack([cell.front_end.optimum()[None], tones[[0, 4]]]), 6).responses.mean(axis=1)
    assert counts[0] > counts[1:].max()


def test_protocol_errors_name_the_field():
    from closedloop.protocol import parse

    text = "kind: evolve\nneuron: {kind: spiking, front_end: {kind: %s}}\nspace: {kind: fourier}\noptimizer: {kind: cmaes}\n"
    assert parse(text % "complex").sections["neuron"].config.front_end.kind == "complex"
    with pytest.raises(ProtocolError, match="front_end"):
        parse(text % "zebra")


def lif_engine(target, window=100.0):
    cell = LIFSettings()
    return Engine(LIF(cell, 0).model, 0.1, window, cell.noise_tau, target=target)


def batch_inputs(n=50):
    rng = np.random.default_rng(3)
    return Inputs(np.linspace(0.05, 0.4, n) * 1e-9, rng.normal(0, 1e-3, n), rng.normal(0, 3e-11, n), 3.5e-11, 9)


def test_a_simulation_leaves_brian2_preferences_as_it_found_them():
    import brian2 as b2

    b2.prefs["devices.cpp_standalone.openmp_threads"] = 3  # not the default, which the old code reset to
    try:
        before = dict(b2.prefs)
        custom = {"model": "custom", "equations": "dv/dt = (-v + 100*Mohm * (I_stim + I_noise)) / (10*ms) : volt",
                  "threshold": "v > 15*mV + theta", "reset": "v = 0*mV"}
        make_cell(reset_state=True, window=20.0, cell=custom).present(np.array([grating(30)]), 2)  # checks, then runs
        assert dict(b2.prefs) == before
    finally:
        b2.prefs["devices.cpp_standalone.openmp_threads"] = 0


def test_auto_target_runs_numpy_only_while_the_binary_is_not_built(tmp_path, monkeypatch):
    monkeypatch.setenv("CLOSEDLOOP_CACHE", str(tmp_path))  # nothing built
    engine = lif_engine("auto")
    later = "standalone" if compiler_works() else "numpy"
    assert [engine.resolve_target(80, call) for call in (1, 2, 3)] == ["numpy", "numpy", later]
    engine.broken = "the compiler crashed"
    assert engine.resolve_target(80, 3) == "numpy"
    assert lif_engine("standalone").resolve_target(80, 1) == "standalone"
    assert lif_engine("numpy").resolve_target(80, 5) == "numpy"


@pytest.mark.slow
def test_standalone_binary_gives_the_same_spikes_as_runtime_mode(tmp_path, monkeypatch):
    """Bit for bit, so that `auto` may skip the numpy warm-up once a binary is cached without
    changing any log; and the build leaves Brian2's preferences as they were."""
    import brian2 as b2

    monkeypatch.setenv("CLOSEDLOOP_CACHE", str(tmp_path))  # a real build, whatever the usual cache holds
    before = dict(b2.prefs)
    compiled = lif_engine("standalone")
    inputs = batch_inputs(50)  # the binary has 64 cells: padding is exercised
    (counts, spikes), (counts_np, spikes_np) = compiled.simulate(inputs, 1), lif_engine("numpy").simulate(inputs, 1)
    assert dict(b2.prefs) == before
    assert counts.sum() > 80
    np.testing.assert_array_equal(counts, counts_np)
    for a, b in zip(spikes, spikes_np):
        np.testing.assert_array_equal(a, b)
    # the thresholder's loop was split for vectorisation (a Brian2 upgrade could silently skip it)
    project = compiled.simulator(standalone_size(50), "standalone").project
    sources = [path.read_text() for path in (project / "code_objects").glob("cells_spike_thresholder_codeobject*.cpp")]
    assert sources and all("_closedloop_fire[_idx] = _cond;" in text for text in sources)
    fresh = lif_engine("auto")  # another cell finds the binary: no warm-up in numpy mode for that size
    assert fresh.resolve_target(50, 1) == "standalone" and fresh.resolve_target(100, 1) == "numpy"
    # a new process runs the cached binary without importing Brian2 (about 1.5 s of CPU)
    script = ("import sys; sys.path.insert(0, sys.argv[1]); from test_spiking import lif_engine, batch_inputs; "
              "counts, _ = lif_engine('auto').simulate(batch_inputs(50), 1); "
              "print(int(counts.sum()), 'brian2' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", script, str(Path(__file__).parent)], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split() == [str(counts.sum()), "False"]


def test_dnn_unit_front_end_drives_the_cell():
    pytest.importorskip("closedloop.neurons.dnn")
    cell = make_cell(reset_state=True, window=100.0,
                     front_end={"kind": "dnn", "unit": {"model": "digits"}, "scale": 5.0})
    stimuli = np.random.default_rng(0).uniform(0, 1, (6, *cell.stimulus_shape))
    activation = cell.front_end.activation(stimuli)
    np.testing.assert_allclose(cell.drive(stimuli), np.maximum(activation, 0) / 5.0)
    counts = cell.present(stimuli[np.argsort(activation)[[0, -1]]], 16).responses.mean(axis=1)
    assert counts[1] > counts[0] or activation.max() <= 0


def test_decaying_recording_misses_spikes_as_logged():
    config = dict(window=100.0, adaptation={"strength": 0}, drift={"gain": {"size": 0}})
    stimulus = make_cell(**config).front_end.optimum()[None]
    stable = make_cell(**config).present(stimulus, 120)
    decaying_cell = make_cell(**config, recording={"decay": 10.0, "floor": 0.2})
    decaying = decaying_cell.present(stimulus, 120)
    order = np.argsort(decaying.t_start[0])
    detection = decaying.state["detection"][0, order]
    assert detection[0] > 0.95 and detection[-1] < 0.5 and np.all(np.diff(detection) < 0)
    late = order[-40:]
    ratio = decaying.responses[0, late].sum() / stable.responses[0, late].sum()
    assert abs(ratio - detection[-40:].mean()) < 0.1  # the same spikes, thinned as logged
    assert np.all(decaying.responses <= stable.responses)
