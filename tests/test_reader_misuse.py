"""Misusing a Run in a notebook gives one clear line naming what is wrong, never a silent wrong
result or a library-internal error; tables handed out are the caller's to edit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import closedloop
from closedloop.errors import ClosedLoopError, LogError

SMALL_LNP = {"kind": "evolve", "neuron": {"kind": "lnp", "size": 8}, "space": {"kind": "fourier", "size": 8},
             "budget": 40, "generations": None}  # 40 presentations in 2 generations


@pytest.fixture(scope="module")
def log(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("misuse") / "x.h5"
    with closedloop.run(SMALL_LNP, out=path, progress=False) as analysed:
        assert "best_response" in analysed.numbers
    return path


@pytest.fixture
def run(log):
    with closedloop.open_run(log) as opened:
        yield opened


def one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message and len(message) < 250, message
    return message


def test_editing_a_table_leaves_the_run_and_its_analyses_as_they_were(run):
    means = run.stimulus_means()["mean"].copy()
    trials = run.trials
    trials["response"] = 0
    trials.attrs["units"]["response"] = "edited"
    assert run.trials["response"].sum() > 0
    assert run.trials.attrs["units"]["response"] == run.response_unit != "edited"
    assert run.trials.attrs["descriptions"]["response"]
    assert run.stimulus_means()["mean"].equals(means)
    generations = run.generations
    generations["best"] = -1.0
    assert (run.generations["best"] > -1).all() and run.optimum()["response"] > -1
    assert run.generations.attrs["units"] == generations.attrs["units"]


def test_an_unknown_phase_is_refused_naming_the_phases(run):
    with pytest.raises(ClosedLoopError) as error:
        run.stimulus_means("serch")
    assert one_line(error).endswith("unknown phase 'serch'; did you mean 'search'? (one of: search, reference, retest)")
    with pytest.raises(ClosedLoopError, match=r"unknown phase 3 \(one of: search, reference, retest\)"):
        run.stimulus_means(3)
    assert run.stimulus_means("retest").empty  # a valid phase the run did not use: empty, not refused


def test_a_generation_outside_the_log_or_not_an_integer_is_refused_naming_the_range(run):
    for wrong, shown in ((999, "999"), (-1, "-1"), (2, "2"), ("3", "'3'"), (True, "True"), (1.5, "1.5")):
        with pytest.raises(IndexError) as error:
            run.stimuli_of_generation(wrong)
        assert one_line(error).endswith(f": generations run from 0 to 1; got {shown}")
    last = run.generations.iloc[-1]["generation"]  # a float in a row of mixed columns
    both = np.concatenate([run.stimuli_of_generation(0), run.stimuli_of_generation(last)])
    np.testing.assert_array_equal(both, np.arange(len(run.z)))


def test_a_trial_outside_the_log_or_not_an_integer_is_refused_naming_the_trial_numbers(run):
    for wrong, shown in ((10**7, "10000000"), (40, "40"), (-1, "-1"), (0.5, "0.5"), (False, "False")):
        with pytest.raises(IndexError) as error:
            run.spike_times(wrong)
        assert one_line(error).endswith(f": trial numbers run from 0 to 39; got {shown}")
    counts = run.trials["spike_count"].to_numpy()
    assert [len(run.spike_times(np.int64(k))) for k in range(40)] == list(counts)


def test_an_unknown_role_is_refused_naming_the_roles(run):
    with pytest.raises(ClosedLoopError) as error:
        run.build("nueron")
    assert one_line(error).endswith("unknown role 'nueron'; did you mean 'neuron'? (one of: neuron, space, optimizer)")
    with pytest.raises(ClosedLoopError, match=r"unknown role 'experiment' \(one of: neuron, space, optimizer\)"):
        run.build("experiment")
    assert run.build("space") is not None


def test_numbers_of_a_run_not_analysed_say_how_to_analyse(log, run):
    with pytest.raises(ClosedLoopError) as error:
        run.numbers["best_response"]
    assert "not analysed" in one_line(error) and "closedloop.open_run(path, analyse=True)" in str(error.value)
    run.numbers = {"best_response": 1.0}
    assert run.numbers["best_response"] == 1.0
    run.numbers = None
    with pytest.raises(ClosedLoopError, match="not analysed"):
        run.numbers


def test_open_run_refuses_what_is_not_a_path(log):
    for wrong in (5, None, [str(log)]):
        with pytest.raises(LogError) as error:
            closedloop.open_run(wrong)
        assert one_line(error).startswith("open_run: expected the path of a run log (a str or Path), got ")
    with closedloop.open_run(str(log)) as by_text:
        assert len(by_text.trials) == 40
