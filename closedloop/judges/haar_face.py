"""OpenCV's Haar frontal-face cascade (Viola & Jones; `haarcascade_frontalface_default.xml`,
shipped inside opencv-python-headless < 5): a face detector that shares nothing with MTCNN.

Framing: closedloop/judges/framing.py. Detection with OpenCV's defaults (scale factor 1.1,
3 neighbours). Of scikit-image's `lfw_subset` it accepts 0.98 of the 100 faces and 0.00 of the
100 non-faces as the face unit sees them (48 x 48 RGB), 0.97 and 0.00 at their own 25 x 25
(tests/test_judges.py).
"""

from __future__ import annotations

import functools

from closedloop.judges.base import Judge, Verdict
from closedloop.judges.framing import SIDE, framed, grey, smallest_face
from closedloop.registry import register


@functools.cache
def cascade():
    try:
        import cv2
    except ImportError:
        raise ValueError("judge haar_face needs OpenCV: pip install 'opencv-python-headless<5'") from None
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cv2.setNumThreads(1)  # small images: threads only contend with the cores' other work
    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():  # OpenCV 5 dropped the old cascade format
        raise ValueError(f"OpenCV {cv2.__version__} cannot load {path}; install 'opencv-python-headless<5'")
    return classifier


@register("judge", "haar_face")
class HaarFace(Judge):
    category = "face"
    modality = "image"

    def judge(self, stimuli, expected=None, sample_rate=None):
        classifier, smallest = cascade(), smallest_face()
        verdicts = []
        for image in grey(stimuli):
            found = classifier.detectMultiScale(framed(image), scaleFactor=1.1, minNeighbors=3,
                                                minSize=(smallest, smallest))
            side = max((int(w) for _, _, w, _ in found), default=0)
            verdicts.append(Verdict(side > 0, "face" if side else "no face", side / SIDE))
        return verdicts
