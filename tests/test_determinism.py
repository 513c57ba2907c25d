"""Every neuron kind: the same protocol and seed give the same log, and a run stopped part-way
and resumed from its log gives the very trials of an uninterrupted one."""

import numpy as np
import pytest
import yaml

from closedloop import protocol
from closedloop.commands.resume import execute as resume
from closedloop.recording import open_run

IMAGE_SPACE = {"kind": "fourier", "size": 10, "max_frequency": 0.3}
NEURONS = {
    "spiking-gabor": ({"kind": "spiking", "size": 10, "window": 60, "target": "numpy"}, IMAGE_SPACE),
    "spiking-complex-adex": ({"kind": "spiking", "size": 10, "window": 60, "target": "numpy",
                              "front_end": {"kind": "complex"}, "cell": {"model": "adex"}}, IMAGE_SPACE),
    "spiking-dog-drift": ({"kind": "spiking", "size": 10, "window": 60, "target": "numpy",
                           "front_end": {"kind": "dog"}, "drift": {"gain": {"size": 0.3, "tau": 5}}}, IMAGE_SPACE),
    "lnp": ({"kind": "lnp", "size": 10}, IMAGE_SPACE),
    "dnn-digits-poisson": ({"kind": "dnn", "model": "digits", "unit": "class3",
                            "noise": {"kind": "poisson", "rate_scale": 2}},
                           {"kind": "color_fourier", "size": 8, "channels": 1}),
}


def make(neuron, space, generations=4):
    text = yaml.safe_dump({"kind": "evolve", "seed": 5, "neuron": neuron, "space": space,
                           "optimizer": {"kind": "cmaes", "popsize": 6}, "generations": generations,
                           "repeats": 2, "reference": {"count": 1}})
    p = protocol.parse(text, "determinism.yaml")
    return p.experiment_cls(p)


def same(a, b):
    with open_run(a) as x, open_run(b) as y:
        assert x.trials.equals(y.trials)
        np.testing.assert_array_equal(x.z, y.z)
        np.testing.assert_array_equal(x.file["spikes/times"][()], y.file["spikes/times"][()])
        assert x.saved_state.keys() == y.saved_state.keys()
        for name, values in x.saved_state.items():
            np.testing.assert_array_equal(values, y.saved_state[name])


@pytest.mark.parametrize("name", NEURONS)
def test_same_seed_same_log_and_resume(tmp_path, name):
    neuron, space = NEURONS[name]
    make(neuron, space).run(tmp_path / "a.h5", progress=False)
    make(neuron, space).run(tmp_path / "b.h5", progress=False)
    same(tmp_path / "a.h5", tmp_path / "b.h5")

    stopped = make(neuron, space)
    present = stopped.neuron.present
    calls = []

    def present_then_stop(stimuli, repeats):  # as if Ctrl-C arrived during the second generation
        calls.append(1)
        if len(calls) == 2:
            stopped.stop_requested = True
        return present(stimuli, repeats)

    stopped.neuron.present = present_then_stop
    assert stopped.run(tmp_path / "c.h5", progress=False)["status"] == "interrupted"
    with open_run(tmp_path / "c.h5") as run:
        assert len(run.generations) == 2
    resume(type("Args", (), {"log": str(tmp_path / "c.h5"), "quiet": True})())
    same(tmp_path / "a.h5", tmp_path / "c.h5")


def test_evolve_without_optimizer_uses_the_model_based_default(tmp_path):
    text = yaml.safe_dump({"kind": "evolve", "neuron": {"kind": "lnp", "size": 10}, "space": IMAGE_SPACE,
                           "generations": 2})
    p = protocol.parse(text, "default.yaml")
    experiment = p.experiment_cls(p)
    assert experiment.optimizer.kind == "linear_model"
    experiment.run(tmp_path / "d.h5", progress=False)
    with open_run(tmp_path / "d.h5") as run:
        assert run.config["optimizer"]["kind"] == "linear_model"
