"""The Judge role: `judge(stimuli, expected, sample_rate) -> [Verdict]`, one per stimulus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np


@dataclass(frozen=True)
class Verdict:
    accepted: bool  # the judge says the stimulus is what the unit claims (a face, the digit 3, "yes", A4)
    heard: str  # what the judge says it is, in words ("face", "no face", "7", "yes", "442.1 Hz")
    score: float = float("nan")  # the judge's own measure behind the verdict, where it has one


class Judge:
    """Subclasses set `category` (the claim they judge: "face", "digit", "word", "pitch") and
    `modality`, and say in their docstring how they were calibrated."""

    kind: ClassVar[str] = "?"
    category: ClassVar[str] = ""
    modality: ClassVar[str] = "image"

    def judge(self, stimuli: np.ndarray, expected: Any = None, sample_rate: int | None = None) -> list[Verdict]:
        """Stimuli as the unit saw them: images (n, H, W) or (n, C, H, W) in the unit's value range,
        or sounds (n, samples) at `sample_rate`; `expected` is the claim's value (3, "yes", 440.0)."""
        raise NotImplementedError
