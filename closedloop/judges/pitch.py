"""Is a sound the pitch a unit claims? The project's own YIN estimate (closedloop/analysis/audio.py),
which shares nothing with CREPE or basic-pitch: no learned weight, no constant-Q front end.

Accepted when at least half of the sound's 10 ms frames are voiced (YIN's aperiodicity below
0.15) and their median f0 lies within 25 cents of the claimed frequency: a quarter of a
semitone, so a neighbouring note, an octave or a fifth is refused. Above 500 Hz (at 16 kHz) the sound is
first upsampled so that the claimed period spans at least 32 samples: at 16 kHz YIN's error on a
short period reached 9 cents at 0.5-1 kHz and 23 cents (and an octave) at 1-2 kHz; upsampled, the
largest error on 40 harmonic tones per range was 0.8 cents at 60-500 Hz, 1.2 at 0.5-1 kHz, 3.1 at
1-2.1 kHz and 8 at 2.1-4.2 kHz. Calibrated in tests/test_pitch_judge.py: tones and sines at the
pitch or 10 cents off it are accepted; tones 40 cents or more off, octaves, a fifth, white and
pink noise are refused.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.signal import resample_poly

from closedloop.judges.base import Judge, Verdict
from closedloop.registry import register

TOLERANCE_CENTS = 25.0
MIN_VOICED = 0.5
PERIOD_SAMPLES = 32


@register("judge", "pitch")
class PitchJudge(Judge):
    category = "pitch"
    modality = "audio"

    def judge(self, stimuli, expected=None, sample_rate=None):
        from closedloop.analysis.audio import estimate_pitch, note_name

        if sample_rate is None:
            raise ValueError("pitch judge: the sounds' sample rate is needed")
        expected = float(expected)
        # YIN resolves a period to a fraction of a sample: upsample until the claimed period is at
        # least PERIOD_SAMPLES long, and widen its 50-2000 Hz search range to an octave either side of the claim
        factor = max(1, math.ceil(PERIOD_SAMPLES * expected / sample_rate))
        rate = sample_rate * factor
        f_min, f_max = min(50.0, expected / 2.5), min(max(2000.0, 2.5 * expected), sample_rate / 2)
        verdicts = []
        for wave in np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1):
            if factor > 1:
                wave = resample_poly(wave, factor, 1)
            pitch = estimate_pitch(wave, rate, f_min, f_max)
            f0, voiced = pitch["f0"], pitch["voiced_fraction"]
            if voiced < MIN_VOICED or not math.isfinite(f0):
                verdicts.append(Verdict(False, f"unvoiced ({voiced:.0%} of frames)"))
                continue
            cents = 1200 * math.log2(f0 / expected)
            verdicts.append(Verdict(abs(cents) <= TOLERANCE_CENTS, f"{note_name(f0)} ({f0:.1f} Hz)", cents))
        return verdicts
