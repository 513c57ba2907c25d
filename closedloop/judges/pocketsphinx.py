"""An ear for words: CMU PocketSphinx, a Gaussian-mixture HMM recogniser trained on human speech.

Its US English acoustic model and pronouncing dictionary ship inside the `pocketsphinx` wheel; it
shares nothing with any network here. Free recognition of single words is unreliable, so a word is
accepted only when two searches agree:

1. a grammar of about forty short words (the word unit's ten commands, twenty other words and
   near-rhymes of the commands such as "guess" and "lift", plus the expected word) says it is
   the expected word, and
2. keyword spotting of the expected word alone (its path against a phone loop) fires at
   THRESHOLD: a word that wins only because the grammar must answer something is refused.

Calibration (tests/test_word.py, espeak-ng words in voices of several accents and variants): the
words it hears reliably are "yes", "left", "right" and "on"; it confuses "no", "go", "down", "off",
"up" and "stop" with one another and refuses white, pink and brown noise, tones and buzzes.
Near-rhymes are its limit: espeak-ng's "yet" and "guess" it accepts as "yes" (with "yet" or
"yeah" in the grammar it hears espeak-ng's "yes" as them, so they are left out).
"""

from __future__ import annotations

import numpy as np
from scipy.signal import resample_poly

from closedloop.judges.base import Judge, Verdict
from closedloop.registry import register

SAMPLE_RATE = 16000
VOCABULARY = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go", "bed", "bird", "cat", "dog",
              "happy", "house", "tree", "wow", "zero", "one", "two", "three", "four", "five", "six", "seven",
              "eight", "nine", "guess", "less", "lift", "light", "top", "cup", "dawn", "now", "oh")
THRESHOLD = 1e-20  # keyword-spotting threshold, chosen on espeak-ng words against noise (module docstring)
PAD = 0.3  # s of silence around every sound: the recogniser's models start and end in silence


@register("judge", "pocketsphinx")
class PocketSphinxJudge(Judge):
    category = "word"
    modality = "audio"

    def __init__(self):
        self._grammar = None
        self._spotters: dict[str, object] = {}
        self._vocabulary = list(VOCABULARY)

    def _decoder(self, **search):
        from pocketsphinx import Decoder

        return Decoder(lm=None, logfn="/dev/null", **search)

    def _grammar_decoder(self, expected: str):
        if self._grammar is None or expected not in self._vocabulary:
            if expected not in self._vocabulary:
                self._vocabulary.append(expected)
            self._grammar = self._decoder()
            rules = " | ".join(self._vocabulary)
            self._grammar.add_jsgf_string("words", f"#JSGF V1.0;\ngrammar words;\npublic <word> = {rules};\n")
            self._grammar.activate_search("words")
        return self._grammar

    def _spotter(self, expected: str):
        if expected not in self._spotters:
            self._spotters[expected] = self._decoder(keyphrase=expected, kws_threshold=THRESHOLD)
        return self._spotters[expected]

    @staticmethod
    def _decode(decoder, pcm: bytes) -> list[str]:
        decoder.start_utt()
        decoder.process_raw(pcm, full_utt=True)
        decoder.end_utt()
        hypothesis = decoder.hyp()
        return hypothesis.hypstr.split() if hypothesis is not None else []

    def judge(self, stimuli, expected=None, sample_rate=None) -> list[Verdict]:
        if not isinstance(expected, str) or not expected:
            raise ValueError(f"judge pocketsphinx: expected a word to listen for, got {expected!r}")
        expected = expected.lower()
        rate = int(sample_rate or SAMPLE_RATE)
        try:
            grammar, spotter = self._grammar_decoder(expected), self._spotter(expected)
        except RuntimeError as exc:  # a word its dictionary does not have
            raise ValueError(f"judge pocketsphinx: cannot listen for {expected!r} ({exc})") from None
        verdicts = []
        for wave in np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1):
            pcm = to_pcm(wave, rate)
            heard = self._decode(grammar, pcm)
            spotted = expected in self._decode(spotter, pcm)
            word = heard[0] if heard else "nothing"
            accepted = word == expected and spotted
            if word == expected and not spotted:
                word = f"{expected} (not spotted)"
            verdicts.append(Verdict(accepted=accepted, heard=word))
        return verdicts


def to_pcm(wave: np.ndarray, sample_rate: int) -> bytes:
    """16 kHz 16-bit PCM, peak at half of full scale, with PAD seconds of silence either side."""
    if sample_rate != SAMPLE_RATE:
        divisor = np.gcd(SAMPLE_RATE, sample_rate)
        wave = resample_poly(wave, SAMPLE_RATE // divisor, sample_rate // divisor)
    top = np.abs(wave).max() if len(wave) else 0.0
    wave = wave * (0.5 / top) if top > 0 else wave
    pad = np.zeros(int(PAD * SAMPLE_RATE))
    return np.round(np.concatenate([pad, wave, pad]) * 32767).astype(np.int16).tobytes()
