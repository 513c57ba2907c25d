"""The rearing experiment: digits networks raised on other experience, their digit unit shown
static and searched black-box; real training (shortened where a test allows), real logs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from closedloop import protocol as protocol_module
from closedloop.cli import main
from closedloop.errors import ProtocolError
from closedloop.neurons.reared_digits import Rearing
from closedloop.recording import open_run
from closedloop.zoo import digits


def rearing_protocol(conditions, **fields):
    return {"kind": "rearing", "seed": 2, "conditions": conditions,
            "static": {"kinds": ["white", "brown"], "count": 150},
            "evolve": {"budget": 60, "seeds": 1}, **fields}


def run(data, out, name="rearing.yaml"):
    protocol = protocol_module.from_dict(data, name)
    experiment = protocol.experiment_cls(protocol)
    summary = experiment.run(out, progress=False)
    assert summary["status"] == "complete"
    return summary


def test_the_standard_rearing_is_the_zoo_network():
    assert digits.recipe_hash() == "f158889efb05"  # the cache key of every earlier digits run
    for same in (Rearing(), Rearing(seed=0, epochs=30), Rearing(static_share=0.3), Rearing(contrast=(0.2, 0.3))):
        assert digits.recipe(same.experience()) is digits.RECIPE
    hashes = {digits.recipe_hash(r.experience()) for r in (
        Rearing(), Rearing(static="white"), Rearing(static="pink"), Rearing(static="pink", static_share=0.2),
        Rearing(backgrounds="brown"), Rearing(seed=1), Rearing(epochs=2))}
    assert len(hashes) == 7
    assert digits.classes(digits.recipe({"static": "white"})) == 11
    assert digits.classes(digits.recipe({"backgrounds": "white"})) == 10


def test_experience_adds_static_as_none_of_these_and_draws_digits_over_backgrounds():
    x_train, y_train, _, _ = digits.dataset()
    batch, labels = torch.from_numpy(x_train[:40]), torch.from_numpy(y_train[:40])
    shown, named = digits.Experience({"static": "brown", "static_share": 0.25}, 0).add(batch, labels)
    assert shown.shape == (50, 1, 8, 8) and torch.equal(shown[:40], batch)
    assert named[40:].tolist() == [10] * 10 and torch.equal(named[:40], labels)
    static = shown[40:].numpy()
    assert 0 <= static.min() and static.max() <= 1 and abs(static.mean() - 0.5) < 0.05
    # brown static is smooth: neighbouring pixels correlate far more than in white static
    neighbours = np.corrcoef(static[..., :-1].ravel(), static[..., 1:].ravel())[0, 1]
    assert neighbours > 0.5

    over, same = digits.Experience({"backgrounds": "white", "background_share": 1.0}, 0).add(batch, labels)
    assert torch.equal(same, labels) and over.shape == batch.shape
    ink, paper = batch == 1, batch == 0
    assert torch.equal(over[ink], batch[ink])  # full ink stays white
    assert over[paper].std() > 0.05  # paper shows the static


def test_reared_training_is_deterministic_and_differs_from_the_standard():
    x_train, y_train, _, _ = digits.dataset()
    rearing = {"static": "pink", "backgrounds": "white", "epochs": 1}
    first, again = digits.train(x_train, y_train, rearing), digits.train(x_train, y_train, rearing)
    assert first.fc2.out_features == 11
    for name, value in first.state_dict().items():
        assert torch.equal(value, again.state_dict()[name]), name
    standard = digits.train(x_train, y_train, {"epochs": 1})
    assert not torch.equal(standard.conv1.weight, first.conv1.weight)


def test_bad_rearing_protocols_are_refused_with_the_field():
    cases = [
        ({"a b": {}}, "condition name 'a b'"),
        ({"summary.csv": {}}, "condition name 'summary.csv'"),  # would collide with the summary files
        ({"x" * 65: {}}, "condition name"),
        ({"x": {"statik": "white"}}, r"conditions\.x\.statik: unknown field; did you mean 'static'"),
        ({"x": {"static": "grey"}}, r"conditions\.x\.static: "),
        ({"x": {"contrast": [0.4, 0.1]}}, r"conditions\.x\.contrast"),
        ({}, "conditions: "),
    ]
    shipped = protocol_module.load(Path(__file__).resolve().parents[1] / "protocols" / "rearing.yaml")
    assert len(shipped.experiment_cls(shipped).runs) == 5 * (3 + 5)  # validated, nothing trained or run
    for conditions, message in cases:
        with pytest.raises(ProtocolError, match=message):
            protocol_module.from_dict(rearing_protocol(conditions), "r.yaml")
    with pytest.raises(ProtocolError, match=r"evolve\.seeds: "):
        protocol_module.from_dict(rearing_protocol({"s": {}}, evolve={"seeds": 0}), "r.yaml")
    with pytest.raises(ProtocolError, match=r"static\.threshold: "):
        protocol_module.from_dict(rearing_protocol({"s": {}}, static={"threshold": 1.5}), "r.yaml")


@pytest.mark.parametrize("evolve, message", [
    ({"budget": 8}, "budget: 8 presentations are fewer than one generation"),
    ({"space": {"kind": "color_pixels", "size": 48, "channels": 1, "contrast": 0.3}}, "space: color_pixels renders"),
])
def test_a_rearing_whose_search_cannot_run_is_refused_before_anything_is_written(tmp_path, capsys, evolve, message):
    data = rearing_protocol({"standard": {}}, evolve={"budget": 60, "seeds": 1, **evolve})
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(data))
    assert main(["run", str(tmp_path / "r.yaml"), "--out", str(tmp_path / "out"), "-q"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (tmp_path / "out").exists()


def test_a_standard_rearing_logs_every_trial_and_is_not_rerun(tmp_path):
    data = rearing_protocol({"standard": {}})
    summary = run(data, tmp_path / "out")
    assert summary["ran"] == 3
    logs = tmp_path / "out" / "standard"
    for kind in ("white", "brown"):
        with open_run(logs / f"static-{kind}.h5") as log:
            assert log.kind == "fooling" and log.status == "complete" and len(log.trials) == 150
            assert log.claim == ("digit", 3)
            assert log.config["neuron"]["network"]["classes"] == 10
    with open_run(logs / "evolve-seed0.h5") as log:
        popsize = int(log.stimulus_generation.tolist().count(0))  # the default search's population
        assert log.kind == "evolve" and len(log.trials) == 60 // popsize * popsize
        responses = log.trials["response"].to_numpy()
    assert (responses <= 0).all()  # log p
    table = summary["table"]
    assert Path(summary["figure"]).name == "rearing.png" and Path(summary["figure"]).is_file()
    assert table["condition"].tolist() == ["standard"]
    assert table.loc[0, "test_accuracy"] > 0.97
    assert table.loc[0, "white_n"] == 150 and table.loc[0, "white_low"] <= table.loc[0, "white_rate"]
    searches = pd.read_csv(tmp_path / "out" / "searches.csv")
    assert searches.loc[0, "presentations"] == 60 // popsize * popsize
    assert np.isclose(searches.loc[0, "best_p"], np.exp(responses.max()))

    again = run(data, tmp_path / "out")
    assert again["ran"] == 0
    pd.testing.assert_frame_equal(again["table"], table)
    fewer = run({**data, "static": {"kinds": ["white", "brown"], "count": 100}}, tmp_path / "out")
    assert fewer["ran"] == 2  # the changed static runs only; the search is kept
    assert fewer["table"].loc[0, "white_n"] == 100


def test_an_interrupted_search_is_resumed_to_the_same_trials(tmp_path):
    data = rearing_protocol({"standard": {}}, static={"kinds": ["white"], "count": 20})
    run(data, tmp_path / "whole")
    protocol = protocol_module.from_dict(data, "rearing.yaml")
    spec = next(spec for spec in protocol.experiment_cls(protocol).runs if spec["role"] == "evolve")
    search = protocol_module.parse(spec["text"], spec["source"])
    stopped = search.experiment_cls(search)
    stopped.stop_requested = True  # as Ctrl-C leaves it: the generation in flight is logged, then it stops
    log = tmp_path / "parts" / "standard" / "evolve-seed0.h5"
    log.parent.mkdir(parents=True)
    assert stopped.run(log, progress=False)["status"] == "interrupted"
    with open_run(log) as part:
        assert len(part.trials) == len(part.stimuli_of_generation(0)) and len(part.generations) == 1
    assert run(data, tmp_path / "parts")["ran"] == 2  # the static, and the search resumed
    with open_run(log) as resumed, open_run(tmp_path / "whole" / "standard" / "evolve-seed0.h5") as whole:
        assert resumed.status == "complete"
        pd.testing.assert_frame_equal(resumed.trials, whole.trials)


@pytest.mark.slow
def test_static_rearing_keeps_static_from_fooling_the_unit(tmp_path):
    data = rearing_protocol({"standard": {}, "white-static": {"static": "white"}},
                            static={"kinds": ["white"], "count": 600})
    table = run(data, tmp_path / "a")["table"].set_index("condition")
    assert table.loc["white-static", "classes"] == 11
    assert table.loc["white-static", "test_accuracy"] > 0.97
    # the standard unit calls a few percent of white static a 3; the reared one (nearly) never
    assert table.loc["standard", "white_low"] > table.loc["white-static", "white_high"]
    rerun = run(data, tmp_path / "b")["table"].set_index("condition")
    pd.testing.assert_frame_equal(rerun, table)
    for name in ("static-white", "evolve-seed0"):
        with open_run(tmp_path / "a" / "white-static" / f"{name}.h5") as a, \
                open_run(tmp_path / "b" / "white-static" / f"{name}.h5") as b:
            pd.testing.assert_frame_equal(a.trials, b.trials)
