"""The model-based default optimizer: finds preferred stimuli of cells it was not tuned on."""

import numpy as np
import pytest

from closedloop.neurons.lnp import LNPCell
from closedloop.optimizers.linear_model import LinearModel
from closedloop.protocol import parse
from closedloop.recording.reader import open_run
from closedloop.spaces.images import FourierSpace, PixelSpace

SMOOTH = {"size": 16, "alpha": 1.0, "max_frequency": 0.3}


def search(cell, space, budget, seed=0, **settings):
    optimizer = LinearModel(LinearModel.Config(**settings), seed, space)
    best = 0.0
    for _ in range(budget // optimizer.popsize):
        z = optimizer.ask()
        stimuli = space.render(z)
        optimizer.tell(z, cell.present(stimuli, 1).responses[:, 0])
        best = max(best, cell.clean_response(stimuli).max())
    return best, cell.clean_response(space.render(optimizer.recommend()[None]))[0], optimizer


@pytest.mark.parametrize("field", [{"field": "random", "field_seed": 11}, {"field": "dog"}])
def test_noise_free_reaches_the_optimum_of_an_untuned_field(field):
    cell = LNPCell(LNPCell.Config(noise="none", window=1000.0, **field), seed=1)
    space = FourierSpace(FourierSpace.Config(**SMOOTH), seed=0)
    ceiling = cell.clean_response(space.render(space.encode(cell.receptive_field[None])))[0]
    best, recommended, _ = search(cell, space, 300)
    assert recommended > 0.95 * ceiling and best > 0.95 * ceiling


def test_poisson_noise_random_field_and_status():
    cell = LNPCell(LNPCell.Config(window=1000.0, field="random", field_seed=12), seed=2)
    space = FourierSpace(FourierSpace.Config(**SMOOTH), seed=0)
    best, recommended, optimizer = search(cell, space, 600)
    assert recommended > 0.85 and best > 0.85
    status = optimizer.status()
    assert set(status) == set(LinearModel.status_columns)
    assert 0 < status["angle"] <= optimizer.config.angle_max


def test_pixel_space_and_determinism():
    cell = LNPCell(LNPCell.Config(window=1000.0), seed=3)
    space = PixelSpace(PixelSpace.Config(size=16), seed=0)
    runs = [search(LNPCell(LNPCell.Config(window=1000.0), seed=3), space, 200, seed=5) for _ in range(2)]
    assert runs[0][1] == runs[1][1]
    assert np.array_equal(runs[0][2].ask(), runs[1][2].ask())
    other = search(cell, space, 200, seed=6)
    assert other[1] != runs[0][1]
    assert runs[0][1] > 0.3  # far above a random stimulus (~0.05) after 200 presentations in 255 dimensions


def test_bad_settings_are_one_line_errors():
    space = PixelSpace(PixelSpace.Config(size=8), seed=0)
    with pytest.raises(ValueError, match="angle_min"):
        LinearModel(LinearModel.Config(angle_min=60, angle_max=30), 0, space)
    with pytest.raises(ValueError, match="exploit"):
        LinearModel(LinearModel.Config(popsize=4, exploit=4), 0, space)


@pytest.mark.slow
def test_evolve_run_logs_the_status(tmp_path):
    text = """
kind: evolve
seed: 4
neuron: {kind: lnp, window: 1000}
space: {kind: fourier, size: 16, max_frequency: 0.3}
optimizer: {kind: linear_model}
budget: 200
generations: null
"""
    protocol = parse(text, "test.yaml")
    result = protocol.experiment_cls(protocol).run(tmp_path / "run.h5", progress=False)
    assert result["status"] == "complete" and result["presentations"] == 200
    run = open_run(tmp_path / "run.h5")
    assert {"angle", "uncertainty", "noise_sd"} <= set(run.generations.columns)
    assert run.generations["uncertainty"].iloc[-1] < run.generations["uncertainty"].iloc[1]


def test_default_section_for_spaces_that_encode():
    from closedloop.optimizers.linear_model import default_section

    assert default_section(FourierSpace(FourierSpace.Config(**SMOOTH), seed=0)) == {"kind": "linear_model"}
    assert default_section(PixelSpace(PixelSpace.Config(size=8), seed=0)) == {"kind": "linear_model"}
