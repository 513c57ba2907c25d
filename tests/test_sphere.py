"""CMA-ES searching directions only, for spaces whose rendering ignores the latent's scale."""

import numpy as np
import pytest

from closedloop import registry
from closedloop.optimizers.cmaes import CMAES
from closedloop.spaces.images import FourierSpace


def space(kind, **settings):
    cls = registry.lookup("space", kind)
    return cls(cls.Config(**settings), 0)


@pytest.mark.parametrize("kind", ["pixels", "fourier", "color_pixels", "color_fourier"])
def test_image_spaces_are_scale_invariant_as_declared(kind):
    s = space(kind, size=8)
    z = s.sample(np.random.default_rng(1), 3)
    assert s.scale_invariant
    np.testing.assert_allclose(s.render(7.5 * z), s.render(z), atol=1e-12)


def test_sphere_search_finds_a_direction_and_keeps_its_mean_on_the_sphere():
    s = FourierSpace(FourierSpace.Config(size=8, max_frequency=0.3), 0)
    target = s.render(np.random.default_rng(5).standard_normal((1, s.dim)))[0].ravel()

    def cosine(z):
        images = s.render(np.atleast_2d(z)).reshape(len(np.atleast_2d(z)), -1)
        return images @ target / (np.linalg.norm(images, axis=1) * np.linalg.norm(target))

    optimizer = CMAES(CMAES.Config(sphere=True, sigma0=0.3), 3, s)
    start = cosine(optimizer.recommend())[0]
    for _ in range(80):
        z = optimizer.ask()
        optimizer.tell(z, cosine(z))
        assert np.linalg.norm(optimizer.recommend()) == pytest.approx(np.sqrt(s.dim))
    assert cosine(optimizer.recommend())[0] > max(0.9, start)


def test_sphere_needs_a_scale_invariant_space():
    with pytest.raises(ValueError, match="sphere: the 'waveform' space's rendering depends on the latent's scale"):
        CMAES(CMAES.Config(sphere=True), 0, space("waveform"))
