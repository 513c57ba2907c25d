"""How a face judge sees a stimulus: the framing both face cascades share (and `grey`, for any image judge).

The unit's stimulus is a tight crop that, by its claim, *is* a face (MTCNN's O-Net scores 48x48
crops), while the cascades look for faces inside larger pictures. So every stimulus is

1. made grey: one channel as it is; RGB by ITU-R BT.601 luma (0.299 R + 0.587 G + 0.114 B);
   values in [0, 1] (the range of the zoo's face unit);
2. resized to 100 x 100 pixels (bicubic), the size of scikit-image's 25 x 25 `lfw_subset`
   faces upsampled 4x;
3. padded on every side by 0.3 of that side with its own edge pixels, so a face that fills the
   crop has the margin the cascades were trained with;

and a detection counts only if its side is at least half the stimulus side (50 pixels): the
judge is asked whether the crop is a face, not whether a small face hides in its texture.
tests/test_judges.py calibrates this framing on `lfw_subset` (faces accepted, non-faces refused).
"""

from __future__ import annotations

import numpy as np

SIDE = 100  # pixels of the resized stimulus
PAD = 0.3  # margin on each side, as a fraction of SIDE
SMALLEST = 0.5  # smallest accepted detection, as a fraction of SIDE
LUMA = np.array([0.299, 0.587, 0.114])


def grey(stimuli: np.ndarray) -> np.ndarray:
    """(n, H, W), (n, 1, H, W) or (n, 3, H, W) in [0, 1] -> (n, H, W) luminance in [0, 1]."""
    stimuli = np.asarray(stimuli, dtype=np.float64)
    if stimuli.ndim == 3:
        return np.clip(stimuli, 0, 1)
    if stimuli.ndim == 4 and stimuli.shape[1] == 1:
        return np.clip(stimuli[:, 0], 0, 1)
    if stimuli.ndim == 4 and stimuli.shape[1] == 3:
        return np.clip(np.einsum("nchw,c->nhw", stimuli, LUMA), 0, 1)
    raise ValueError(f"a judge of images takes (n, H, W) or (n, 1 or 3, H, W), got shape {stimuli.shape}")


def framed(image: np.ndarray) -> np.ndarray:
    """One grey (H, W) image -> the padded uint8 picture a cascade searches."""
    from skimage.transform import resize

    big = resize(image, (SIDE, SIDE), order=3, mode="edge", anti_aliasing=image.shape[0] > SIDE)
    margin = int(round(PAD * SIDE))
    big = np.pad(np.clip(big, 0, 1), margin, mode="edge")
    return (big * 255).round().astype(np.uint8)


def smallest_face() -> int:
    return int(round(SMALLEST * SIDE))
