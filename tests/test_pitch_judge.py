"""The pitch judge's calibration: tones at the claimed pitch are accepted, tones a quarter-tone or
more away, octaves and noise are refused."""

from __future__ import annotations

import numpy as np
import pytest

from closedloop.judges import judges_for
from closedloop.judges.pitch import PitchJudge
from closedloop.stimuli import noise

RATE = 16000


def tone(frequency, cents=0.0, partials=8, seconds=0.5, phase_seed=0):
    f0 = frequency * 2 ** (cents / 1200)
    t = np.arange(int(seconds * RATE)) / RATE
    phases = np.random.default_rng(phase_seed).uniform(0, 2 * np.pi, partials)
    wave = sum(np.sin(2 * np.pi * k * f0 * t + phases[k - 1]) / k
               for k in range(1, partials + 1) if k * f0 < RATE / 2)
    return 0.1 * wave / np.sqrt(np.mean(wave**2))


def verdicts(sounds, expected):
    return PitchJudge().judge(np.stack(sounds), expected, RATE)


def test_the_pitch_judge_is_found_for_pitch_claims_only():
    assert [judge.kind for judge in judges_for("pitch")] == ["pitch"]
    assert judges_for("bird song") == []


@pytest.mark.parametrize("frequency", [110.0, 261.63, 440.0, 1046.5, 2093.0, 3520.0])
def test_tones_at_the_pitch_are_accepted(frequency):
    sounds = [tone(frequency), tone(frequency, cents=10), tone(frequency, cents=-10), tone(frequency, partials=1)]
    results = verdicts(sounds, frequency)
    assert all(v.accepted for v in results), [v.heard for v in results]
    error = 3 if frequency < 2100 else 8  # the largest errors measured (closedloop/judges/pitch.py)
    assert abs(results[0].score) < error and abs(results[1].score - 10) < error and abs(results[2].score + 10) < error


@pytest.mark.parametrize("frequency", [110.0, 261.63, 440.0, 1046.5, 2093.0])
def test_tones_off_the_pitch_are_refused(frequency):
    off = [tone(frequency, cents=c) for c in (-100, -50, 40, 50, 100, 700, 1200, -1200)]
    results = verdicts(off, frequency)
    assert not any(v.accepted for v in results), [v.heard for v in results]
    assert all(np.isfinite(v.score) for v in results)  # refused for their pitch, not for being unvoiced


def test_noise_is_refused_as_unvoiced():
    rng = np.random.default_rng(0)
    sounds = [0.1 * w / w.std() for kind in ("white", "pink") for w in noise(rng, 8, (8000,), kind, None)]
    results = verdicts(sounds, 261.63)
    assert not any(v.accepted for v in results)
    assert all(v.heard.startswith("unvoiced") for v in results), [v.heard for v in results]


def test_a_tone_in_noise_is_still_heard_at_20_db():
    rng = np.random.default_rng(1)
    clean = tone(261.63)
    noisy = clean + rng.standard_normal(len(clean)) * clean.std() / 10
    assert verdicts([noisy], 261.63)[0].accepted


def test_the_judge_needs_a_sample_rate():
    with pytest.raises(ValueError, match="sample rate"):
        PitchJudge().judge(np.stack([tone(440.0)]), 440.0, None)
