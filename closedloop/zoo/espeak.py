"""espeak-ng, a formant speech synthesiser, called in-process through its C library (ctypes).

The word model's training speech and the word judge's calibration come from here. espeak-ng is a
Debian package (`apt-get install espeak-ng`), not a Python one; it is deterministic: the same text,
voice, speed and pitch give the same samples. Calling the library instead of the `espeak-ng`
program saves the ~0.1 s start-up of a process per word.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from functools import lru_cache

import numpy as np
from scipy.signal import resample_poly

AUDIO_OUTPUT_SYNCHRONOUS = 2
POS_CHARACTER = 1
RATE, PITCH, RANGE = 1, 3, 4  # espeak_PARAMETER
INSTALL_HINT = "espeak-ng is not installed: apt-get install espeak-ng (as root)"
_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)
_lock = threading.Lock()  # the library keeps one global synthesiser


@lru_cache(maxsize=1)
def _library() -> tuple[ctypes.CDLL, int]:
    name = ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        raise RuntimeError(INSTALL_HINT) from None
    lib.espeak_Initialize.restype = ctypes.c_int
    lib.espeak_Info.restype = ctypes.c_char_p
    lib.espeak_Info.argtypes = [ctypes.c_void_p]
    lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
    lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint,
                                 ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 0, None, 0)
    if rate <= 0:
        raise RuntimeError("espeak-ng failed to initialise (is espeak-ng-data installed?)")
    return lib, rate


def available() -> bool:
    try:
        _library()
    except RuntimeError:
        return False
    return True


def version() -> str:
    lib, _ = _library()
    return lib.espeak_Info(None).decode()


def english_voices() -> list[str]:
    """espeak-ng's English accents (its own voices, not MBROLA's, which are separate packages)."""
    return ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-gb-x-gbclan", "en-gb-x-gbcwmd", "en-029",
            "en-us-nyc"]


def speak(text: str, voice: str = "en-us", speed: int = 175, pitch: int = 50, pitch_range: int = 50,
          sample_rate: int = 16000) -> np.ndarray:
    """The text spoken by `voice` ("en-us", or "en-us+f3" with a variant) at `speed` words per
    minute and `pitch` (0-100): a float waveform in [-1, 1] at `sample_rate`."""
    lib, native_rate = _library()
    pieces: list[np.ndarray] = []

    def collect(samples, count, _events):
        if samples and count > 0:
            pieces.append(np.ctypeslib.as_array(samples, shape=(count,)).copy())
        return 0

    callback = _CALLBACK(collect)
    encoded = text.encode()
    with _lock:
        lib.espeak_SetSynthCallback(callback)
        if lib.espeak_SetVoiceByName(voice.encode()) != 0:
            raise ValueError(f"espeak-ng has no voice {voice!r}")
        for parameter, value in ((RATE, speed), (PITCH, pitch), (RANGE, pitch_range)):
            lib.espeak_SetParameter(parameter, int(value), 0)
        if lib.espeak_Synth(encoded, len(encoded) + 1, 0, POS_CHARACTER, 0, 0, None, None) != 0:
            raise RuntimeError(f"espeak-ng could not speak {text!r}")
    wave = np.concatenate(pieces).astype(np.float64) / 32768.0 if pieces else np.zeros(0)
    divisor = np.gcd(sample_rate, native_rate)
    return resample_poly(wave, sample_rate // divisor, native_rate // divisor) if len(wave) else wave
