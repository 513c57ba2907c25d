"""The closed loop end to end: the Brian2 cell, the optimizers, the log, the protocol."""

import numpy as np
import yaml
import pytest

from closedloop import protocol, registry
from closedloop.cli import main
from closedloop.errors import ProtocolError
from closedloop.neurons.spiking import SpikingCell
from closedloop.recording import open_run
from closedloop.spaces.images import FourierSpace, PixelSpace

QUICK = """
kind: evolve
seed: 4
neuron: {kind: spiking, size: 12, window: 100}
space: {kind: fourier, size: 12, max_frequency: 0.3}
optimizer: {kind: cmaes, popsize: 8}
generations: 4
repeats: 2
"""


def cell(seed=0, **fields):
    return SpikingCell(SpikingCell.Config(**fields), seed)


def test_cell_prefers_its_receptive_field():
    neuron = cell()
    space = PixelSpace(PixelSpace.Config(), 0)
    rf = neuron.receptive_field.reshape(1, -1)
    noise = np.random.default_rng(1).standard_normal((20, space.dim))
    stimuli = space.render(np.concatenate([rf, -rf, noise]))
    counts = neuron.present(stimuli, repeats=10).responses.mean(axis=1)
    assert counts[0] > 4 * counts[1]
    assert counts[0] > 4 * counts[2:].mean()


def test_noise_varies_across_repeats_and_seed_fixes_it():
    space = PixelSpace(PixelSpace.Config(), 0)
    stimuli = space.render(cell().receptive_field.reshape(1, -1) * 0.7 + 0.3)
    first = cell(seed=3).present(stimuli, repeats=30)
    again = cell(seed=3).present(stimuli, repeats=30)
    other = cell(seed=4).present(stimuli, repeats=30)
    assert first.responses.std() > 0
    np.testing.assert_array_equal(first.responses, again.responses)
    for a, b in zip(first.spike_times, again.spike_times):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.responses, other.responses)


def test_one_generation_is_one_simulation(monkeypatch):
    import brian2

    runs = []
    original = brian2.Network.run
    monkeypatch.setattr(brian2.Network, "run", lambda self, *a, **k: (runs.append(1), original(self, *a, **k))[1])
    cell(target="numpy").present(np.zeros((5, 16, 16)), repeats=3)  # auto may run a cached binary instead
    assert len(runs) == 1


@pytest.mark.parametrize("name", ["cmaes", "genetic", "finite_difference", "random", "nevergrad"])
def test_optimizer_improves_noisy_quadratic(name):
    space = FourierSpace(FourierSpace.Config(size=8, max_frequency=0.3), 0)
    target = np.random.default_rng(5).standard_normal(space.dim)
    cls = registry.lookup("optimizer", name)
    optimizer = cls(cls.Config(), 3, space)
    optimizer.plan(60 * optimizer.popsize)
    noise = np.random.default_rng(0)

    def loss(z):
        return np.sum((np.atleast_2d(z) - target) ** 2, axis=1)

    start = loss(optimizer.recommend())[0]
    for _ in range(60):
        z = optimizer.ask()
        optimizer.tell(z, -loss(z) + noise.standard_normal(len(z)))
    assert loss(optimizer.recommend())[0] < 0.7 * start


def test_optimizers_are_deterministic():
    space = FourierSpace(FourierSpace.Config(size=8), 0)
    for name in registry.names("optimizer"):
        cls = registry.lookup("optimizer", name)
        if name == "gradient_ascent":
            continue
        runs = []
        for _ in range(2):
            optimizer = cls(cls.Config(), 7, space)
            optimizer.plan(100)
            z = optimizer.ask()
            optimizer.tell(z, -np.sum(z**2, axis=1))
            runs.append(optimizer.ask())
        np.testing.assert_array_equal(*runs, err_msg=name)


def test_log_round_trips_every_trial(tmp_path):
    p = protocol.parse(QUICK, "quick.yaml")
    experiment = p.experiment_cls(p)
    shown = []
    present = experiment.neuron.present

    def spy(stimuli, repeats):
        trials = present(stimuli, repeats)
        shown.append((stimuli, trials))
        return trials

    experiment.neuron.present = spy
    summary = experiment.run(tmp_path / "run.h5", progress=False)
    with open_run(tmp_path / "run.h5") as run:
        assert run.status == "complete" and summary["presentations"] == 4 * 8 * 2
        trials = run.trials
        assert len(trials) == summary["presentations"]
        assert run.protocol == QUICK and run.seed == 4
        np.testing.assert_allclose(run.rendered(), np.concatenate([s for s, _ in shown]), atol=1e-6)
        for generation, (stimuli, batch) in enumerate(shown):
            rows = trials[trials["generation"] == generation]
            local = rows["stimulus"].to_numpy() - generation * 8
            np.testing.assert_array_equal(rows["response"], batch.responses[local, rows["repeat"]])
            np.testing.assert_array_equal(rows["t_start"], batch.t_start[local, rows["repeat"]])
            np.testing.assert_array_equal(rows["drive"], batch.state["drive"][local, rows["repeat"]])
            for k, (s, r) in enumerate(zip(local, rows["repeat"])):
                np.testing.assert_array_equal(run.spike_times(rows.index[k]), batch.spike_times[s * 2 + r])
        assert np.all(np.diff(trials["t_start"]) > 0)  # presentation order
        assert run.config["optimizer"]["kind"] == "cmaes"
        np.testing.assert_array_equal(run.receptive_field, experiment.neuron.receptive_field)


def test_same_seed_same_log(tmp_path):
    tables = []
    for name in ("a.h5", "b.h5"):
        p = protocol.parse(QUICK, "quick.yaml")
        p.experiment_cls(p).run(tmp_path / name, progress=False)
        with open_run(tmp_path / name) as run:
            tables.append((run.trials.drop(columns=[]), run.z))
    assert tables[0][0].equals(tables[1][0])
    np.testing.assert_array_equal(tables[0][1], tables[1][1])


@pytest.mark.parametrize("mutation, message", [
    ({"neuron": {"kind": "spiking", "windwo": 100}}, "neuron.windwo: unknown field; did you mean 'window'?"),
    ({"optimizer": {"kind": "cmaez"}}, "optimizer.kind: unknown kind 'cmaez'; did you mean 'cmaes'?"),
    ({"repeats": 0}, "repeats: Input should be greater than or equal to 1"),
    ({"generations": "many"}, "generations: Input should be a valid integer"),
])
def test_bad_protocol_is_refused_with_one_line(tmp_path, capsys, mutation, message):
    import yaml

    data = yaml.safe_load(QUICK)
    data.update(mutation)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    out = tmp_path / "never.h5"
    code = main(["run", str(path), "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0 and str(path) in err and message in err
    assert not out.exists()


@pytest.mark.slow
def test_quickstart_recovers_the_receptive_field(tmp_path, capsys):
    assert main(["run", "protocols/quickstart.yaml", "--out", str(tmp_path / "q.h5"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "correlation of the best stimulus with the true receptive field" in out
    from closedloop.analysis import analyze

    numbers = analyze(tmp_path / "q.h5")
    assert numbers["rf_correlation"] >= 0.8
    assert (tmp_path / "q" / "evolve.png").stat().st_size > 10_000


def test_declared_capabilities_match_what_each_kind_implements():
    """Spaces and neurons declare what they can do; the declaration must be true of the class."""
    from closedloop.neurons.base import Neuron
    from closedloop.spaces.base import StimulusSpace

    for name in registry.names("space"):
        cls = registry.lookup("space", name)
        assert cls.can_encode == (cls.encode is not StimulusSpace.encode), name
        assert cls.differentiable == (cls.render_torch is not StimulusSpace.render_torch), name
    for name in registry.names("neuron"):
        cls = registry.lookup("neuron", name)
        assert cls.has_gradient == (cls.gradient is not Neuron.gradient), name


def test_nevergrad_optimizer_names_are_checked_in_one_line():
    data = yaml.safe_load(QUICK)
    data["optimizer"] = {"kind": "nevergrad", "name": "NGopt"}
    with pytest.raises(ProtocolError, match="optimizer: name: no nevergrad optimizer 'NGopt'; did you mean 'NGOpt'"):
        p = protocol.from_dict(data, "q.yaml")
        p.experiment_cls(p)


def test_nevergrad_is_told_a_stimulus_put_in_place_of_its_own_as_that_stimulus():
    pixels = registry.lookup("space", "pixels")
    space = pixels(pixels.Config(size=4), 0)
    cls = registry.lookup("optimizer", "nevergrad")
    optimizer = cls(cls.Config(name="OnePlusOne", popsize=4), 0, space)
    z = optimizer.ask()
    z[0] = 3.0  # a seed or a dream's source, in place of nevergrad's first candidate
    optimizer.tell(z, np.array([100.0, 0.0, 0.0, 0.0]))
    assert optimizer._optimizer.num_tell_not_asked == 1
    np.testing.assert_array_equal(optimizer.recommend(), np.full(16, 3.0))
