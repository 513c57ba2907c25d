"""The dnn neuron, the colour image spaces and the white-box optimizer, on small real torch models
defined here and reached through the `import:` path, as a user's own model would be."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from closedloop import protocol as protocol_module
from closedloop.errors import ProtocolError
from closedloop.neurons.dnn import DNNSettings, DNNUnit
from closedloop.recording import open_run
from closedloop.spaces.color import ColorFourierSettings, ColorFourierSpace, ColorPixelSpace, ColorSettings

HERE = __name__  # the module path protocols use to import the factories below


def tiny_net(seed: int = 0) -> torch.nn.Module:
    """8x8 gray images -> 10 logits, with in-place ReLUs right after the convolutions."""
    torch.manual_seed(seed)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.ReLU(inplace=True),
        torch.nn.Conv2d(4, 6, 3), torch.nn.ReLU(inplace=True),
        torch.nn.Flatten(), torch.nn.Linear(6 * 6 * 6, 10))


def other_seed_net() -> torch.nn.Module:
    return tiny_net(seed=1)


def smooth_net() -> torch.nn.Module:
    """Differentiable everywhere, so finite differences are exact to second order."""
    torch.manual_seed(2)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 5, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(5, 2, 3), torch.nn.Softplus())


def not_a_module():
    return 42


def unit(seed=0, **fields) -> DNNUnit:
    fields.setdefault("import", f"{HERE}:tiny_net")
    fields.setdefault("input_shape", [1, 8, 8])
    return DNNUnit(DNNSettings.model_validate(fields), seed)


def images(n, shape=(1, 8, 8), seed=0):
    return np.random.default_rng(seed).random((n, *shape))


def test_hook_clones_the_output_before_an_inplace_relu():
    neuron = unit(layer="0", channel=1, position=[2, 3])
    x = images(16)
    reference = tiny_net()[0](torch.as_tensor(x, dtype=torch.float32))[:, 1, 2, 3].detach().numpy()
    assert (reference < 0).any(), "the check needs negative pre-ReLU values"
    np.testing.assert_allclose(neuron.activation(x), reference, rtol=1e-5, atol=1e-6)


def test_layer_channel_and_position_selection():
    net, x = tiny_net(), images(5)
    with torch.no_grad():
        conv2 = net[2](net[1](net[0](torch.as_tensor(x, dtype=torch.float32)))).numpy()
        logits = net(torch.as_tensor(x, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(unit(layer="2", channel=4).activation(x), conv2[:, 4].mean(axis=(1, 2)), rtol=1e-5)
    np.testing.assert_allclose(unit(layer="2", channel=4, position=[5, 0]).activation(x), conv2[:, 4, 5, 0], rtol=1e-5)
    np.testing.assert_allclose(unit(channel=7).activation(x), logits[:, 7], rtol=1e-5)
    with pytest.raises(ValueError, match="channel: 10 out of range"):
        unit(channel=10)
    with pytest.raises(ValueError, match="position"):
        unit(layer="2", channel=0, position=[6, 0])
    with pytest.raises(ValueError, match="layer: no module '9'"):
        unit(layer="9")


def test_batches_match_one_pass_and_shape_is_checked():
    x = images(23)
    np.testing.assert_allclose(unit(batch_size=4).activation(x), unit().activation(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="expected"):
        unit().present(images(2, (1, 9, 9)), 1)


def test_device_cpu_computes_the_same_and_a_missing_gpu_is_refused_in_one_line():
    x = images(6)
    cpu = unit(device="cpu", layer="2", channel=3)
    assert cpu.device == torch.device("cpu") and next(cpu.module.parameters()).device == torch.device("cpu")
    np.testing.assert_array_equal(cpu.activation(x), unit(layer="2", channel=3).activation(x))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"^device: 'cuda:1' is not here: .*; use cpu$"):
            unit(device="cuda:1")
    with pytest.raises(ValueError, match="device"):
        DNNSettings.model_validate({"model": "digits", "device": "gpu"})


def test_poisson_noise_logs_the_clean_rate_and_matches_its_mean():
    neuron = unit(layer="0", channel=2, noise={"kind": "poisson", "rate_scale": 30})
    x = images(6)
    trials = neuron.present(x, 4000)
    expected = 30 * np.maximum(neuron.activation(x), 0)
    assert expected.min() > 5
    assert neuron.response_unit == "counts"
    np.testing.assert_allclose(trials.clean[:, 0], expected, rtol=1e-6)
    assert np.all(trials.responses == np.round(trials.responses))
    np.testing.assert_allclose(trials.responses.mean(axis=1), expected, atol=4 * np.sqrt(expected.max() / 4000) + 1e-9)
    np.testing.assert_allclose(trials.responses.var(axis=1), expected, rtol=0.15, atol=1e-9)


def test_gaussian_noise_is_multiplicative_around_the_clean_response():
    neuron = unit(channel=2, noise={"kind": "gaussian", "sigma": 0.2})
    x = images(4)
    trials = neuron.present(x, 4000)
    clean = neuron.activation(x)
    np.testing.assert_allclose(trials.clean[:, 0], clean)
    np.testing.assert_allclose(trials.responses.std(axis=1), 0.2 * np.abs(clean), rtol=0.08)
    np.testing.assert_allclose(trials.responses.mean(axis=1), clean, atol=0.02 * np.abs(clean).max())


def test_noise_is_deterministic_given_the_seed():
    x = images(5)
    noisy = {"layer": "0", "channel": 2, "noise": {"kind": "poisson"}}
    a, b, c = (unit(seed=seed, **noisy).present(x, 7) for seed in (3, 3, 4))
    assert a.responses.sum() > 0
    np.testing.assert_array_equal(a.responses, b.responses)
    np.testing.assert_array_equal(a.t_start, b.t_start)
    assert not np.array_equal(a.responses, c.responses)


def test_gradient_matches_finite_differences():
    neuron = unit(**{"import": f"{HERE}:smooth_net", "input_shape": [3, 6, 6]}, channel=1)
    x = images(3, (3, 6, 6))
    values, grads = neuron.gradient(x)
    np.testing.assert_allclose(values, neuron.activation(x), rtol=1e-6)
    direction = np.random.default_rng(1).standard_normal(x.shape)
    eps = 1e-2
    numeric = (neuron.activation(x + eps * direction) - neuron.activation(x - eps * direction)) / (2 * eps)
    analytic = (grads * direction).reshape(len(x), -1).sum(axis=1)
    np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=1e-5)
    assert np.abs(analytic).min() > 1e-4


def test_weights_are_loaded_from_a_state_dict(tmp_path):
    path = tmp_path / "net.pt"
    torch.save(other_seed_net().state_dict(), path)
    x = images(4)
    loaded = unit(weights=str(path), channel=5).activation(x)
    with torch.no_grad():
        expected = other_seed_net()(torch.as_tensor(x, dtype=torch.float32))[:, 5].numpy()
    np.testing.assert_allclose(loaded, expected, rtol=1e-5)
    assert not np.allclose(unit(channel=5).activation(x), expected)


def _protocol(neuron: dict, optimizer=None, space=None, **top):
    data = {"kind": "evolve", "seed": 0, "generations": 3,
            "neuron": {"kind": "dnn", "input_shape": [1, 8, 8], **neuron},
            "space": space or {"kind": "color_pixels", "size": 8, "channels": 1},
            "optimizer": optimizer or {"kind": "cmaes", "popsize": 8}, **top}
    return protocol_module.parse(yaml.safe_dump(data), "test.yaml")


@pytest.mark.parametrize("fields, message", [
    ({"import": "no_such_package_xyz.models:net"}, "neuron: import: cannot import module 'no_such_package_xyz.models'"),
    ({"import": f"{HERE}:missing_factory"}, "neuron: import: module .* has no attribute 'missing_factory'"),
    ({"import": "tiny_net"}, "neuron: import: expected 'module:factory'"),
    ({"import": f"{HERE}:not_a_module"}, "neuron: import: .* gave a int, not a torch.nn.Module"),
    ({"import": f"{HERE}:tiny_net", "weights": "/nonexistent/net.pt"}, "neuron: weights: no such file"),
])
def test_bad_import_or_weights_is_one_line_naming_the_field(fields, message):
    with pytest.raises(ProtocolError, match=message) as error:
        protocol = _protocol(fields)
        protocol.experiment_cls(protocol)
    assert "\n" not in str(error.value)


def test_mismatched_weights_name_the_field(tmp_path):
    path = tmp_path / "wrong.pt"
    torch.save(smooth_net().state_dict(), path)
    with pytest.raises(ValueError, match="weights: cannot load"):
        unit(weights=str(path))


def test_color_spaces_respect_shape_range_and_contrast():
    for squash in ("clip", "tanh"):
        pixels = ColorPixelSpace(ColorSettings(size=12, channels=3, value_range=(-1, 1), squash=squash), 0)
        fourier = ColorFourierSpace(ColorFourierSettings(size=12, channels=3, value_range=(-1, 1), squash=squash), 0)
        for space in (pixels, fourier):
            z = space.sample(np.random.default_rng(0), 4)
            x = space.render(z)
            assert x.shape == (4, 3, 12, 12) and x.min() >= -1 and x.max() <= 1
            assert abs(x.mean()) < 0.1 and 0.3 < x.std() < 0.55  # mid-gray, contrast 0.25 of a width of 2
            if squash == "tanh":  # clipping loses what it clips
                np.testing.assert_allclose(space.render(space.encode(x)), x, atol=1e-5)
            np.testing.assert_allclose(space.render_torch(torch.as_tensor(z)).detach().numpy(), x)
    gray = ColorFourierSpace(ColorFourierSettings(size=8, channels=1), 0)
    assert gray.stimulus_shape == (1, 8, 8) and gray.dim == len(gray.basis)


def test_space_range_must_fit_the_unit():
    with pytest.raises(ProtocolError, match="space: renders values in"):
        protocol = _protocol({"import": f"{HERE}:tiny_net"},
                             space={"kind": "color_pixels", "size": 8, "channels": 1, "value_range": [-1, 1]})
        protocol.experiment_cls(protocol)


def test_gradient_ascent_refuses_a_neuron_without_gradient():
    data = {"kind": "evolve", "neuron": {"kind": "spiking", "size": 8},
            "space": {"kind": "fourier", "size": 8}, "optimizer": {"kind": "gradient_ascent"}}
    protocol = protocol_module.parse(yaml.safe_dump(data), "test.yaml")
    with pytest.raises(ProtocolError, match="optimizer: gradient_ascent needs a neuron that exposes its gradient"):
        protocol.experiment_cls(protocol)


def _run(protocol, path):
    experiment = protocol.experiment_cls(protocol)
    summary = experiment.run(path, progress=False)
    with open_run(path) as run:
        return {**summary, "best_response": run.optimum()["response"]}, run.generations.copy(), run.trials.copy()


def test_black_box_and_white_box_runs_raise_the_unit(tmp_path):
    neuron = {"import": f"{HERE}:tiny_net", "channel": 3}
    summary, generations, trials = _run(_protocol(neuron, generations=12), tmp_path / "black.h5")
    assert summary["status"] == "complete" and len(trials) == 12 * 8
    first = trials.loc[trials.generation == 0, "response"]
    assert summary["best_response"] > first.max() + 2 * first.std()  # beyond the luck of the first draw
    np.testing.assert_allclose(trials["clean"], trials["response"])

    white = {"kind": "gradient_ascent", "popsize": 2, "steps": 5, "learning_rate": 0.1,
             "jitter": 1, "tv_weight": 0.01, "fourier_weight": 0.01, "blur_every": 4, "l2_decay": 0.01}
    summary_w, generations_w, _ = _run(_protocol(neuron, optimizer=white, generations=12), tmp_path / "white.h5")
    assert generations_w["max"].iloc[-1] > summary["best_response"]  # the white box beats the black box
    assert {"gradient_norm", "ascent_value"} <= set(generations_w.columns)
    again, _, _ = _run(_protocol(neuron, optimizer=white, generations=12), tmp_path / "white2.h5")
    assert again["best_response"] == summary_w["best_response"]


def test_run_log_keeps_the_clean_rate_beside_poisson_counts(tmp_path):
    neuron = {"import": f"{HERE}:tiny_net", "layer": "0", "channel": 2, "noise": {"kind": "poisson", "rate_scale": 10}}
    summary, _, trials = _run(_protocol(neuron, repeats=3), tmp_path / "noisy.h5")
    assert summary["status"] == "complete" and len(trials) == 3 * 8 * 3
    assert np.all(trials["response"] == np.round(trials["response"]))
    assert trials["clean"].min() > 0 and not np.allclose(trials["response"], trials["clean"])
    per_stimulus = trials.groupby("stimulus")["clean"].agg(["min", "max"])
    np.testing.assert_array_equal(per_stimulus["min"], per_stimulus["max"])


def test_zoo_names_are_checked_with_the_field_named():
    with pytest.raises(ValueError, match="^model: "):
        DNNUnit(DNNSettings(model="no_such_model"), 0)
    with pytest.raises(ValueError, match="^unit: "):
        DNNUnit(DNNSettings(model="digits", unit="class42"), 0)
    with pytest.raises(ValueError, match="value_range: only for an imported model"):
        DNNSettings.model_validate({"model": "digits", "value_range": [-1, 1]})


@pytest.mark.slow
def test_face_protocol_evolves_a_face_black_box(tmp_path):
    """protocols/face-cell.yaml, shortened: from random static to face probability >= 0.99."""
    protocol = protocol_module.load(Path(__file__).parents[1] / "protocols" / "face-cell.yaml", {"generations": 20})
    summary, generations, trials = _run(protocol, tmp_path / "face.h5")
    assert trials.loc[trials.generation == 0, "clean"].max() < 0.5
    assert summary["best_response"] >= 0.99
    from closedloop.analysis import analyze

    numbers = analyze(tmp_path / "face.h5")
    assert numbers["best_clean_response"] >= 0.99
    assert (tmp_path / "face" / "evolve.png").stat().st_size > 10_000
    with open_run(tmp_path / "face.h5") as run:  # colour images too large to log: rendered again
        assert "rendered" not in run.file["stimuli"]
        images = run.rendered([0, 5])
        assert images.shape == (2, 3, 48, 48) and 0 <= images.min() and images.max() <= 1


def test_shipped_dnn_protocols_validate():
    for name in ("digit-cell", "digit-cell-whitebox", "face-cell", "face-cell-whitebox"):
        protocol = protocol_module.load(Path(__file__).parents[1] / "protocols" / f"{name}.yaml")
        experiment = protocol.experiment_cls(protocol)
        assert experiment.neuron.has_gradient and experiment.space.stimulus_shape == experiment.neuron.stimulus_shape


def test_white_box_run_resumes_to_the_same_log(tmp_path):
    from closedloop.cli import main

    neuron = {"import": f"{HERE}:tiny_net", "channel": 3, "noise": {"kind": "gaussian", "sigma": 0.1}}
    white = {"kind": "gradient_ascent", "popsize": 2, "steps": 2, "jitter": 1, "blur_every": 3}
    _run(_protocol(neuron, optimizer=white, generations=8), tmp_path / "full.h5")
    protocol = _protocol(neuron, optimizer=white, generations=8)
    experiment = protocol.experiment_cls(protocol)
    tell = experiment.optimizer.tell

    def tell_then_stop(z, scores):  # as a Ctrl-C after the fourth generation would
        tell(z, scores)
        experiment.stop_requested = experiment.optimizer.step_count >= 4 * 2

    experiment.optimizer.tell = tell_then_stop
    assert experiment.run(tmp_path / "cut.h5", progress=False)["status"] == "interrupted"
    # the log's protocol imports this module: a log never runs code unless the user names it
    assert main(["resume", str(tmp_path / "cut.h5"), "-q", "--allow-import", HERE.rpartition(".")[0] or HERE]) == 0
    with open_run(tmp_path / "full.h5") as full, open_run(tmp_path / "cut.h5") as resumed:
        assert resumed.status == "complete" and len(resumed.generations) == 8
        assert full.trials.equals(resumed.trials)
        np.testing.assert_array_equal(full.z, resumed.z)
