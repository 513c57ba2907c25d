"""Independent judges, calibrated: real faces and digits accepted, non-faces and static refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
import yaml

from closedloop.judges import judges_for


def accepted(judge, stimuli, expected=None) -> np.ndarray:
    return np.array([verdict.accepted for verdict in judge.judge(stimuli, expected)])


@pytest.mark.parametrize("kind, faces, non_faces", [("haar_face", 0.95, 0.02), ("lbp_face", 0.93, 0.02)])
def test_face_judges_on_lfw_as_the_face_unit_sees_it(kind, faces, non_faces):
    from closedloop.zoo.face import lfw_images

    images, is_face = lfw_images()  # 100 faces then 100 non-faces, 48x48 RGB in [0, 1]
    judge = next(j for j in judges_for("face") if j.kind == kind)
    verdict = accepted(judge, images.numpy())
    assert verdict[is_face == 1].mean() >= faces
    assert verdict[is_face == 0].mean() <= non_faces
    grey = accepted(judge, images.numpy()[:8, :1])  # one channel: the same luminance, the same verdicts
    assert np.array_equal(grey, verdict[:8])


def test_face_judges_refuse_static_and_blank(rng):
    static = np.clip(0.5 + 0.25 * rng.standard_normal((10, 3, 48, 48)), 0, 1)
    blank = np.full((2, 3, 48, 48), 0.5)
    for judge in judges_for("face"):
        assert not accepted(judge, np.concatenate([static, blank])).any(), judge.kind
    with pytest.raises(ValueError, match="shape"):
        judges_for("face")[0].judge(np.zeros((2, 2, 8, 8)))


def test_digit_judge_held_out_accuracy_and_refusal_of_static():
    from closedloop.judges.digit_svm import calibration, digits_split
    from closedloop.zoo.digits import dataset

    numbers = calibration()
    assert numbers["held_out_accuracy"] >= 0.98
    assert numbers["held_out_accepted"] >= 0.95
    assert numbers["white_static_passes"] == 0.0 and numbers["pink_static_passes"] <= 0.01
    # held out of both the judge and the CNN: the very digits the CNN's accuracy is measured on
    _, _, x_test, y_test = digits_split()
    _, _, cnn_x_test, cnn_y_test = dataset()
    assert np.allclose(x_test, cnn_x_test[:, 0]) and np.array_equal(y_test, cnn_y_test)


def test_digit_judge_reads_grey_ground_and_names_the_wrong_digit():
    from closedloop.judges.digit_svm import DigitSVM, digits_split

    _, _, x_test, y_test = digits_split()
    threes, sevens = x_test[y_test == 3][:5], x_test[y_test == 7][:5]
    on_grey = 0.5 + 0.5 * threes[:, None]  # bright strokes on mid-grey, as a unit's space renders them
    judge = DigitSVM()
    assert accepted(judge, on_grey, 3).all()
    verdicts = judge.judge(sevens, 3)
    assert not any(v.accepted for v in verdicts) and [v.heard for v in verdicts] == ["7"] * 5
    inverted = 1.0 - threes  # dark ink on white: not how the digits were drawn
    assert [v.heard for v in judge.judge(inverted, 3)].count("3") <= 1


def run_and_analyze(tmp_path, data, name="run"):
    from closedloop import protocol as protocol_module
    from closedloop.analysis import analyze

    protocol = protocol_module.parse(yaml.safe_dump(data), f"{name}.yaml")
    path = tmp_path / f"{name}.h5"
    protocol.experiment_cls(protocol).run(path, progress=False)
    return analyze(path)


def test_evolve_analysis_prints_what_every_judge_says(tmp_path):
    numbers = run_and_analyze(tmp_path, {
        "kind": "evolve", "seed": 1, "generations": 2, "neuron": {"kind": "dnn", "model": "face"},
        "space": {"kind": "natural_pca", "components": 16}, "optimizer": {"kind": "cmaes", "popsize": 6}})
    text = "\n".join(numbers["lines"])
    for kind in ("haar_face", "lbp_face"):
        assert f"judge {kind} (shares nothing with the unit): " in text
        judged = numbers["judges"][kind]
        assert judged["of"] == 8 and judged["accepted"] == sum(judged["verdicts"])
    both = numbers["judges"]["all"]
    assert re.search(rf"every face judge accepts {both['accepted']} of 8 best stimuli .*\(the best: (accepted|refused)\)",
                     text)


def test_fooling_draws_grey_static_and_judges_what_fooled_the_unit(tmp_path):
    from closedloop.recording import open_run

    numbers = run_and_analyze(tmp_path, {
        "kind": "fooling", "seed": 2, "neuron": {"kind": "dnn", "model": "face"}, "noise": ["white", "pink"],
        "count": 40, "grey": True, "threshold": 0.01}, name="fooling")
    with open_run(tmp_path / "fooling.h5") as run:
        static = run.rendered()
    assert np.array_equal(static[:, 0], static[:, 1]) and np.array_equal(static[:, 0], static[:, 2])
    assert numbers["lines"][0].startswith("run: fooling (complete), grey static")
    hits = sum(rate["hits"] for rate in numbers["rates"].values())
    assert hits > 0  # a threshold this low is passed by some static ...
    assert numbers["judges"]["haar_face"]["of"] == min(hits, 64)  # ... and the judges are asked about it
    assert (tmp_path / "fooling" / "fooling.png").is_file()
