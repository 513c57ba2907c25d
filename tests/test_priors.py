"""Natural-image priors as stimulus spaces, and Yosinski's regularisers between generations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import yaml

from closedloop import protocol as protocol_module
from closedloop.errors import ProtocolError
from closedloop.registry import lookup


def space(**settings):
    cls = lookup("space", "natural_pca")
    return cls(cls.Config(**settings), 0)


def roughness(images: np.ndarray) -> float:
    """Mean squared difference of neighbouring pixels over the images' variance."""
    dy, dx = np.diff(images, axis=-2), np.diff(images, axis=-1)
    return float((np.mean(dy**2) + np.mean(dx**2)) / images.var())


@pytest.mark.parametrize("settings", [{"size": 48, "channels": 3, "resolution": 16, "components": 32},
                                      {"size": 8, "channels": 1, "resolution": 8, "components": 20}])
def test_natural_pca_encodes_what_it_renders(settings, rng):
    prior = space(**settings)
    assert prior.can_encode and prior.differentiable and not prior.scale_invariant
    z = prior.sample(rng, 5)
    images = prior.render(z)
    assert images.shape == (5, settings["channels"], settings["size"], settings["size"])
    assert images.min() > 0 and images.max() < 1  # the tanh keeps every value inside the unit's range
    assert np.allclose(prior.encode(images), z, atol=1e-6)
    latent = torch.tensor(z, requires_grad=True)
    prior.render_torch(latent).sum().backward()
    assert torch.isfinite(latent.grad).all() and latent.grad.abs().sum() > 0


def test_natural_pca_prior_strength_is_the_number_of_components(rng):
    """Fewer components: smoother draws; and its draws look like the pictures, not like white static."""
    smooth = roughness(space(components=8).render(space(components=8).sample(rng, 20)))
    rough = roughness(space(components=256).render(space(components=256).sample(rng, 20)))
    white = roughness(rng.random((20, 3, 48, 48)))
    assert smooth < rough < white
    with pytest.raises(ValueError, match="components"):
        space(components=10_000)


def regularized(**settings):
    prior = space(components=64)
    cls = lookup("optimizer", "regularized")
    return cls(cls.Config(**settings), 7, prior), prior


def test_regularisers_act_on_each_generation_before_it_is_shown():
    plain, prior = regularized(search={"kind": "cmaes", "sigma0": 1})
    blurred, _ = regularized(search={"kind": "cmaes", "sigma0": 1}, blur_sigma=1.5)
    decayed, _ = regularized(search={"kind": "cmaes", "sigma0": 1}, decay=0.2)
    z = plain.ask()
    assert roughness(prior.render(blurred.ask())) < 0.8 * roughness(prior.render(z))
    assert np.allclose(decayed.ask(), 0.8 * z)  # the same search underneath: the same proposals, shrunk
    assert plain.popsize == plain.search.popsize and plain.status_columns == ("sigma",)
    jittered, _ = regularized(search={"kind": "cmaes", "sigma0": 1}, jitter=3)
    again, _ = regularized(search={"kind": "cmaes", "sigma0": 1}, jitter=3)
    assert np.array_equal(jittered.ask(), again.ask())  # deterministic: resume replays the same shifts


def test_regularized_search_in_a_protocol(tmp_path):
    from closedloop.recording import open_run

    data = {"kind": "evolve", "seed": 2, "generations": 3,
            "neuron": {"kind": "dnn", "model": "digits", "unit": "class3"},
            "space": {"kind": "natural_pca", "size": 8, "channels": 1, "resolution": 8, "components": 16},
            "optimizer": {"kind": "regularized", "search": {"kind": "genetic", "popsize": 8}, "blur_sigma": 0.5}}
    protocol = protocol_module.parse(yaml.safe_dump(data), "prior.yaml")
    protocol.experiment_cls(protocol).run(tmp_path / "run.h5", progress=False)
    with open_run(tmp_path / "run.h5") as run:
        assert len(run.generations) == 3 and run.config["optimizer"]["search"]["kind"] == "genetic"
        assert run.config["optimizer"]["search"]["popsize"] == 8
    bad = dict(data, optimizer={"kind": "regularized", "search": {"kind": "cmaess"}})
    with pytest.raises(ProtocolError, match=r"prior.yaml: optimizer.*search: unknown kind 'cmaess'.*'cmaes'"):
        protocol_module.parse(yaml.safe_dump(bad), "prior.yaml")
