"""CMA-ES with a diagonal covariance (sep-CMA-ES), for searches over many latents."""

import numpy as np

from closedloop import registry
from closedloop.optimizers.cmaes import CMAES


def test_a_diagonal_covariance_learns_the_scales_of_many_latents():
    """hear-note.yaml's 196 waveform latents, on an ellipsoid whose axes differ 100-fold in scale
    (a few lines of a sound to raise, most to silence). In 120 generations of 24 the diagonal
    covariance made its steps 1.5 times longer along the 20 flattest axes than along the 20
    steepest; full CMA-ES, whose covariance learns about dim/3 times slower, 1.01 times (and took
    100 times the CPU doing it)."""
    cls = registry.lookup("space", "waveform")
    space = cls(cls.Config(duration=0.064, resolution=20, f_min=60, f_max=2000, fade=0.005), 0)
    assert space.dim == 196
    weights = np.logspace(0, 2, space.dim)

    def search():
        optimizer = CMAES(CMAES.Config(popsize=24, diagonal=True), 0, space)
        for _ in range(120):
            z = optimizer.ask()
            optimizer.tell(z, -(z**2 @ weights))
        return optimizer

    optimizer = search()
    steps = optimizer.es.stds
    assert steps[:20].mean() / steps[-20:].mean() > 1.3
    np.testing.assert_array_equal(search().recommend(), optimizer.recommend())  # seeded: the same search again
