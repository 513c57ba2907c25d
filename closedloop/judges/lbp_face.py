"""scikit-image's LBP frontal-face cascade (`skimage.data.lbp_frontal_face_cascade_filename()`,
multi-block local binary patterns): a second face detector that shares nothing with MTCNN, nor
with OpenCV's Haar cascade.

Framing: closedloop/judges/framing.py. Detection as scikit-image's own example (scale factor
1.2, step ratio 1) with its default of 4 neighbouring detections. Of `lfw_subset` it accepts
0.96 of the 100 faces and 0.00 of the 100 non-faces as the face unit sees them (48 x 48 RGB),
0.94 and 0.00 at their own 25 x 25 (tests/test_judges.py).
"""

from __future__ import annotations

import functools

from closedloop.judges.base import Judge, Verdict
from closedloop.judges.framing import SIDE, framed, grey, smallest_face
from closedloop.registry import register


@functools.cache
def cascade():
    from skimage.data import lbp_frontal_face_cascade_filename
    from skimage.feature import Cascade

    return Cascade(lbp_frontal_face_cascade_filename())


@register("judge", "lbp_face")
class LBPFace(Judge):
    category = "face"
    modality = "image"

    def judge(self, stimuli, expected=None, sample_rate=None):
        detector, smallest = cascade(), smallest_face()
        verdicts = []
        for image in grey(stimuli):
            picture = framed(image) / 255.0
            found = detector.detect_multi_scale(img=picture, scale_factor=1.2, step_ratio=1,
                                                min_size=(smallest, smallest), max_size=picture.shape,
                                                min_neighbor_number=4)
            side = max((int(face["width"]) for face in found), default=0)
            verdicts.append(Verdict(side > 0, "face" if side else "no face", side / SIDE))
        return verdicts
