"""basic-pitch (Bittner et al. 2022, "A lightweight instrument-agnostic model for polyphonic note
transcription"), rebuilt in torch from the ONNX file its wheel ships (`saved_models/icassp_2022/
nmp.onnx`), read with the `onnx` package; basic_pitch itself is never imported (it pulls TensorFlow).

The shipped network takes 43844 samples (about 2 s) at 22050 Hz and gives, for 172 frames of 256
samples, a pitch contour (264 bins, 3 per semitone) and the note and onset posteriors of the 88
piano keys (MIDI 21-108). Its front end is a constant-Q transform: 36 complex filters per octave
applied at nine octaves of a signal halved by a low-pass filter each time, magnitude, log power
normalised to [0, 1] over the window, a batch norm, then harmonic stacking (copies shifted by
round(36 log2 h) bins for h = 1/2, 1, 2 ... 7).

The zoo unit takes a 16 kHz sound (at most 1.98 s), resamples it to 22050 Hz (band-limited, by
FFT), and centres it in a zero window of the network's length, as basic-pitch's own inference
zero-pads audio; the output is (N, 176, frames): the 88 note posteriors, then the 88 onset
posteriors, over the frames whose centres lie inside the sound.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from closedloop.zoo import UnitSpec, ZooModel, channel_units, package_file
from closedloop.zoo.pitch import NOTE_NAMES

SAMPLE_RATE = 16000
NETWORK_RATE = 22050
WINDOW = 43844  # the network's input, samples at 22050 Hz
HOP = 256
OCTAVES = 9  # CQT stages: hop 256 at the full rate down to hop 1 after eight halvings
KEYS = 88
LOWEST_MIDI = 21  # A0
HARMONICS = (0.5, 1, 2, 3, 4, 5, 6, 7)
BINS_PER_SEMITONE = 3
CONTOUR_BINS = 264
RECEPTIVE = 10  # frames either side that the heads' convolutions reach (onset: 1 + note 3 + 3 + contour 2 + 1)
DEFAULT_SAMPLES = 8000  # 0.5 s at 16 kHz
ONNX_FILE = "saved_models/icassp_2022/nmp.onnx"


def midi_frequency(midi: float) -> float:
    return 440.0 * 2.0 ** ((midi - 69) / 12.0)


def midi_name(midi: int) -> str:
    return f"{NOTE_NAMES[midi % 12]}{midi // 12 - 1}"


def upsample(wave: torch.Tensor, rate_in: int, rate_out: int) -> torch.Tensor:
    """Band-limited upsampling of (N, L) by zero-padding the spectrum, as scipy.signal.resample
    does (the sound is taken as periodic, so it should start and end near 0)."""
    n_in = wave.shape[-1]
    n_out = int(round(n_in * rate_out / rate_in))
    spectrum = torch.fft.rfft(wave, dim=-1)
    if n_in % 2 == 0:  # the Nyquist bin stands for both +-rate_in/2: halve it
        half = torch.ones(spectrum.shape[-1], dtype=wave.dtype, device=wave.device)
        half[-1] = 0.5
        spectrum = spectrum * half
    return torch.fft.irfft(spectrum, n=n_out, dim=-1) * (n_out / n_in)


class Head(nn.Module):
    """Conv, ReLU, conv, sigmoid over (N, channels, frames, bins)."""

    def __init__(self, first: nn.Conv2d, second: nn.Conv2d):
        super().__init__()
        self.first, self.second = first, second

    def forward(self, x, extra=None):
        x = torch.relu(self.first(x))
        if extra is not None:
            x = torch.cat([extra, x], dim=1)
        return torch.sigmoid(self.second(x))


class BasicPitch(nn.Module):
    def __init__(self, cqt_bins: int = 309):
        super().__init__()
        self.register_buffer("cqt_real", torch.zeros(36, 1, 256))
        self.register_buffer("cqt_imag", torch.zeros(36, 1, 256))
        self.register_buffer("lowpass", torch.zeros(1, 1, 256))
        self.register_buffer("cqt_scale", torch.zeros(cqt_bins))  # sqrt of each filter's length
        self.register_buffer("norm", torch.zeros(2))  # the batch norm, folded: scale, shift
        self.cqt_bins = cqt_bins
        self.contour = Head(nn.Conv2d(8, 8, (3, 39), padding=(1, 19)), nn.Conv2d(8, 1, 5, padding=2))
        self.note = Head(nn.Conv2d(1, 32, 7, stride=(1, 3), padding=(3, 2)), nn.Conv2d(32, 1, (7, 3), padding=(3, 1)))
        self.onset = Head(nn.Conv2d(8, 32, 5, stride=(1, 3), padding=(2, 1)), nn.Conv2d(33, 1, 3, padding=1))

    def cqt_power(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, L) at 22050 Hz -> CQT power (N, frames, cqt_bins), low to high frequency."""
        x = wave.unsqueeze(1)
        octaves = []
        for stage in range(OCTAVES):
            if stage:  # halve the rate: low-pass, keep every other sample
                x = F.conv1d(F.pad(x, (127, 127)), self.lowpass, stride=2)
            padded = F.pad(x, (128, 128), mode="reflect")
            hop = HOP >> stage
            real = F.conv1d(padded, self.cqt_real, stride=hop)
            imag = F.conv1d(padded, self.cqt_imag, stride=hop)
            octaves.insert(0, real**2 + imag**2)
        # the graph takes the magnitude and squares it again; the power directly has no sqrt,
        # whose infinite slope at 0 would make the gradient NaN wherever the sound is silent
        power = torch.cat(octaves, dim=1)[:, -self.cqt_bins:] * self.cqt_scale[:, None] ** 2
        return power.transpose(1, 2)

    def features(self, wave: torch.Tensor) -> torch.Tensor:
        """Normalised log CQT, harmonically stacked: (N, 8, frames, 264)."""
        power_db = 10 * torch.log10(self.cqt_power(wave) + 1e-10)
        low = power_db.amin(dim=(1, 2), keepdim=True)
        shifted = power_db - low
        high = shifted.amax(dim=(1, 2), keepdim=True)
        level = torch.where(high == 0, torch.zeros_like(shifted), shifted / torch.where(high == 0, 1.0, high))
        level = level * self.norm[0] + self.norm[1]
        copies = []
        for harmonic in HARMONICS:
            shift = int(round(12 * BINS_PER_SEMITONE * math.log2(harmonic)))
            if shift >= 0:
                copies.append(F.pad(level[..., shift:], (0, shift)))
            else:
                copies.append(F.pad(level[..., :shift], (-shift, 0)))
        return torch.stack(copies, dim=1)[..., :CONTOUR_BINS]

    def transcribe(self, wave: torch.Tensor, frames: range | None = None):
        """(N, L) at 22050 Hz -> contour (N, frames, 264), note and onset (N, frames, 88), for all
        frames or only the given ones (the same values: the heads see RECEPTIVE frames either side)."""
        # channels-last: the heads' convolutions ran 1.4-3x faster on the CPU, same values to 1e-6
        stacked = self.features(wave).contiguous(memory_format=torch.channels_last)
        if frames is not None:
            low, high = max(frames.start - RECEPTIVE, 0), min(frames.stop + RECEPTIVE, stacked.shape[2])
            stacked = stacked[:, :, low:high]
        contour = self.contour(stacked)
        note = self.note(contour)
        onset = self.onset(stacked, extra=note)
        outputs = contour[:, 0], note[:, 0], onset[:, 0]
        if frames is not None:
            outputs = tuple(out[:, frames.start - low:frames.stop - low] for out in outputs)
        return outputs

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, samples) at 16 kHz -> note and onset posteriors (N, 176, frames of the sound)."""
        if wave.ndim != 2:
            raise ValueError(f"note model expects waveforms (N, samples), got shape {tuple(wave.shape)}")
        x = upsample(wave, SAMPLE_RATE, NETWORK_RATE)
        length = x.shape[1]
        if length > WINDOW:
            raise ValueError(f"note model: a sound of {wave.shape[1]} samples is longer than its window "
                             f"({WINDOW} samples at {NETWORK_RATE} Hz, {WINDOW / NETWORK_RATE:.2f} s)")
        start = (WINDOW - length) // 2
        x = F.pad(x, (start, WINDOW - length - start))
        # the frames whose centres (every HOP samples from 0) lie inside the sound
        first, last = math.ceil(start / HOP), (start + length - 1) // HOP
        _, note, onset = self.transcribe(x, range(first, max(last, first) + 1))
        return torch.cat([note, onset], dim=2).transpose(1, 2)


def load_onnx_weights(net: BasicPitch, path) -> None:
    """Copy the shipped graph's weights into `net`, each found by its role in the graph."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    weights = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    negated = {node.input[0] for node in graph.node if node.op_type == "Neg"}
    convs = {}
    for node in graph.node:
        if node.op_type != "Conv":
            continue
        kernel = weights[node.input[1]]
        bias = weights[node.input[2]] if len(node.input) > 2 else np.zeros(kernel.shape[0], np.float32)
        role = kernel.shape + (("imag",) if node.output[0] in negated else ())
        convs.setdefault(role, (kernel, bias))
    muls = [weights[n.input[1]] for n in graph.node if n.op_type == "Mul" and n.input[1] in weights]
    adds = [weights[n.input[1]] for n in graph.node if n.op_type == "Add" and n.input[1] in weights]

    def tensor(array):
        return torch.from_numpy(np.array(array, dtype=np.float32))

    with torch.no_grad():
        real, real_bias = convs[(36, 1, 1, 256)]
        imag, imag_bias = convs[(36, 1, 1, 256, "imag")]
        if np.any(real_bias) or np.any(imag_bias):
            raise ValueError(f"{path}: the CQT filters have a bias; this rebuild assumes none")
        net.cqt_real.copy_(tensor(real[:, :, 0]))
        net.cqt_imag.copy_(-tensor(imag[:, :, 0]))  # the graph negates the imaginary part
        net.lowpass.copy_(tensor(convs[(1, 1, 1, 256)][0][:, :, 0]))
        lengths = next(m for m in muls if m.shape == (net.cqt_bins, 1, 1))
        net.cqt_scale.copy_(tensor(lengths.ravel()))
        # the folded batch norm: the one-element Mul and Add after the normalised log
        scale, shift = next(m for m in muls if m.shape == (1,)), next(a for a in adds if a.shape == (1,))
        net.norm.copy_(tensor([scale.item(), shift.item()]))
        layers = {(8, 8, 3, 39): net.contour.first, (1, 8, 5, 5): net.contour.second,
                  (32, 1, 7, 7): net.note.first, (1, 32, 7, 3): net.note.second,
                  (32, 8, 5, 5): net.onset.first, (1, 33, 3, 3): net.onset.second}
        for shape, layer in layers.items():
            kernel, bias = convs[shape]
            layer.weight.copy_(tensor(kernel))
            layer.bias.copy_(tensor(bias))


def _key_unit(midi: int, onset: bool) -> UnitSpec:
    name, frequency = midi_name(midi), midi_frequency(midi)
    what = "onset" if onset else "note"
    return UnitSpec("", KEYS * onset + midi - LOWEST_MIDI, None,
                    f"{what} posterior of {name} (MIDI {midi}, {frequency:.1f} Hz), mean over the sound's frames",
                    ("pitch", round(frequency, 2)))


def network() -> nn.Module:
    net = BasicPitch()
    load_onnx_weights(net, package_file("basic_pitch", ONNX_FILE))
    return net.to(memory_format=torch.channels_last)


def card() -> ZooModel:
    units = {}
    for midi in range(LOWEST_MIDI, LOWEST_MIDI + KEYS):
        units[midi_name(midi)] = _key_unit(midi, onset=False)
    for midi in range(LOWEST_MIDI, LOWEST_MIDI + KEYS):
        units[f"onset:{midi_name(midi)}"] = _key_unit(midi, onset=True)
    around = f"pre-ReLU, mean over frequency and the sound's frames with {RECEPTIVE} either side"
    units.update(channel_units("contour.first", 8, around))
    units.update(channel_units("onset.first", 32, around))
    return ZooModel(
        name="note",
        input_shape=(DEFAULT_SAMPLES,),
        value_range=(-1.0, 1.0),
        modality="audio",
        sample_rate=SAMPLE_RATE,
        default_unit="C4",
        description=(f"basic-pitch note transcription (ICASSP 2022), weights from basic-pitch's {ONNX_FILE}; "
                     f"sound resampled to {NETWORK_RATE} Hz and centred in its {WINDOW / NETWORK_RATE:.2f} s window; "
                     f"channels: 88 note then 88 onset posteriors (A0-C8), per {HOP}-sample frame"),
        units=units,
    )
