"""Independent judges, calibrated: real faces and digits accepted, non-faces and static refused."""

from __future__ import annotations

import numpy as np
import pytest

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
