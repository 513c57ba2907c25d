"""The LNP cell: Poisson statistics, clean response = rectified cosine, fields, determinism."""

import numpy as np
import pytest

from closedloop.neurons.lnp import LNPCell
from closedloop.protocol import parse


def make(**fields):
    return LNPCell(LNPCell.Config(**fields), seed=3)


def at_cosine(rf, cos, rng):
    """A zero-mean image with the given cosine to rf."""
    w = rf.reshape(-1)
    e = rng.standard_normal(w.size)
    e -= e.mean()
    e -= (e @ w) * w
    e /= np.linalg.norm(e)
    return (cos * w + np.sqrt(1 - cos**2) * e).reshape(rf.shape) * 4.0


def test_poisson_mean_and_fano_match_the_analytic_values(rng):
    cell = make(window=200.0)
    stimuli = np.stack([at_cosine(cell.receptive_field, c, rng) for c in (1.0, 0.6, 0.3)])
    trials = cell.present(stimuli, 4000)
    expected = 50.0 * np.array([1.0, 0.6, 0.3]) * 0.2
    mean, var = trials.responses.mean(axis=1), trials.responses.var(axis=1)
    assert np.allclose(mean, expected, rtol=0.05)
    assert np.allclose(var / mean, 1.0, atol=0.1)
    assert np.allclose(trials.clean[:, 0], [1.0, 0.6, 0.3])
    assert np.all(trials.responses == np.round(trials.responses))


def test_clean_response_is_the_rectified_cosine(rng):
    cell = make()
    stimuli = rng.standard_normal((50, 16, 16))
    flat = stimuli.reshape(50, -1)
    w = cell.receptive_field.reshape(-1)
    cos = flat @ w / np.linalg.norm(flat, axis=1)
    trials = cell.present(stimuli, 2)
    assert np.allclose(trials.clean[:, 0], np.maximum(cos, 0))
    assert np.allclose(cell.clean_response(stimuli * 7.0), np.maximum(cos, 0))  # contrast-invariant
    assert abs(cell.receptive_field.mean()) < 1e-12 and np.isclose(np.linalg.norm(cell.receptive_field), 1)


def test_noise_free_counts_are_the_expected_count(rng):
    cell = make(noise="none", window=1000.0)
    stimuli = rng.standard_normal((5, 16, 16))
    trials = cell.present(stimuli, 3)
    assert np.allclose(trials.responses, 50.0 * trials.clean)
    assert np.all(trials.responses[:, 0] == trials.responses[:, 1])


def test_same_seed_same_counts_and_calls_differ(rng):
    stimuli = rng.standard_normal((20, 16, 16))
    a, b = make(), make()
    first = a.present(stimuli, 5).responses
    assert np.array_equal(first, b.present(stimuli, 5).responses)
    assert not np.array_equal(first, a.present(stimuli, 5).responses)


def test_other_cells():
    energy = make(model="energy")
    # the complex cell answers the Gabor at any phase alike
    for phase in (0.0, 45.0, 90.0):
        other = make(front_end={"phase": phase})
        assert np.isclose(energy.clean_response(other.receptive_field[None])[0], 1.0, atol=0.02)
    assert "quadrature_field" in energy.ground_truth()
    for cell in (make(field="dog"), make(field="random", field_seed=4)):
        rf = cell.receptive_field
        assert np.isclose(cell.clean_response(rf[None])[0], 1.0)
        assert np.isclose(cell.clean_response(-rf[None])[0], 0.0)
    assert not np.allclose(make(field="random", field_seed=1).receptive_field,
                           make(field="random", field_seed=2).receptive_field)
    with pytest.raises(ValueError, match="energy"):
        make(field="dog", model="energy")


def test_protocol_section_errors_name_the_field():
    with pytest.raises(Exception, match="noise"):
        parse("kind: evolve\nneuron: {kind: lnp, noise: gaussian}\nspace: {kind: pixels}\n"
              "optimizer: {kind: random}\n")


@pytest.mark.parametrize("fields", [{}, {"field": "dog"}, {"model": "energy"}, {"front_end": {"center": [4.0, 10.0], "orientation": 70}}])
def test_receptive_field_scaled_with_the_image(fields):
    """A 64x64 cell with reference_size 16 is the 16x16 cell's field at 4x the scale: block-averaged
    back to 16x16 it is the same field."""
    small = make(**fields)
    large = make(size=64, reference_size=16, **fields)
    for a, b in zip(small.filters, large.filters):
        shrunk = b.reshape(16, 4, 16, 4).mean(axis=(1, 3)).ravel()
        shrunk -= shrunk.mean()
        assert a @ shrunk / np.linalg.norm(shrunk) > 0.99
    assert np.isclose(large.clean_response(large.receptive_field[None])[0], 1.0)
    assert make(size=64, **fields).config.reference_size is None  # by default lengths are pixels of `size`
