"""Silero VAD (v5/v6, 16 kHz branch) rebuilt in plain torch so gradients reach the waveform.

Weights are copied out of silero-vad's shipped TorchScript archive `data/silero_vad.jit` (its
`_model` submodule). The scripted model scores one 512-sample chunk at a time, preceded by the
last 64 samples of the previous chunk (zeros before the first) and carrying an LSTM state; here
all chunks of all waveforms go through the STFT front end and the conv encoder in one batch, and
only the LSTM steps run in sequence. Output (N, 1, chunks): speech probability per chunk.
"""

from __future__ import annotations

import hashlib
import os
import warnings

import torch
from torch import nn

from closedloop.zoo import UnitSpec, ZooModel, cache_dir, load_state_dict, package_file

SAMPLE_RATE = 16000
CHUNK = 512
CONTEXT = 64
DEFAULT_SAMPLES = 16 * CHUNK  # 0.512 s
N_FFT = 256
STFT_HOP = 128
ENCODER = [(129, 128, 1), (128, 64, 2), (64, 64, 2), (64, 128, 1)]  # (in, out, stride), kernel 3
HIDDEN = 128
POWER_FLOOR = 1e-20


class SileroVAD(nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("stft_basis", torch.zeros(2 * (N_FFT // 2 + 1), 1, N_FFT))
        self.encoder = nn.ModuleList(nn.Conv1d(cin, cout, 3, stride, padding=1) for cin, cout, stride in ENCODER)
        self.rnn = nn.LSTMCell(HIDDEN, HIDDEN)
        self.hidden = nn.Identity()  # (N, 128, chunks): LSTM output, a hook point for units
        self.head = nn.Conv1d(HIDDEN, 1, 1)

    def chunks(self, wave: torch.Tensor) -> torch.Tensor:
        """(N, L) -> (N, chunks, 64 + 512): each chunk with the 64 samples before it."""
        if wave.ndim != 2 or wave.shape[1] == 0:
            raise ValueError(f"speech model expects waveforms (N, samples > 0), got shape {tuple(wave.shape)}")
        pad = -wave.shape[1] % CHUNK
        wave = nn.functional.pad(wave, (CONTEXT, pad))
        return wave.unfold(1, CONTEXT + CHUNK, CHUNK)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        x = self.chunks(wave)
        n, n_chunks, width = x.shape
        x = nn.functional.pad(x.reshape(n * n_chunks, 1, width), (0, CONTEXT), mode="reflect")
        spectrum = nn.functional.conv1d(x, self.stft_basis, stride=STFT_HOP)
        real, imag = spectrum.split(N_FFT // 2 + 1, dim=1)
        # the floor keeps the gradient finite on digital silence (zero padding) and leaves
        # every other value exact
        x = torch.sqrt((real ** 2 + imag ** 2).clamp_min(POWER_FLOOR))
        for conv in self.encoder:
            x = torch.relu(conv(x))
        features = x.reshape(n, n_chunks, HIDDEN)  # encoder ends with one time step per chunk
        h = c = features.new_zeros(n, HIDDEN)
        outputs = []
        for t in range(n_chunks):
            h, c = self.rnn(features[:, t], (h, c))
            outputs.append(h)
        hidden = self.hidden(torch.stack(outputs, dim=2))
        return torch.sigmoid(self.head(torch.relu(hidden)))


EXPECTED_KEYS = {
    f"{model}.{key}" for model in ("_model", "_model_8k") for key in (
        "stft.forward_basis_buffer", "decoder.decoder.2.weight", "decoder.decoder.2.bias",
        *(f"decoder.rnn.{kind}" for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")),
        *(f"encoder.{i}.reparam_conv.{kind}" for i in range(4) for kind in ("weight", "bias")))}


def weights_from_jit() -> dict[str, torch.Tensor]:
    """The 16 kHz model's tensors from the TorchScript archive, renamed to SileroVAD's keys.

    torch.jit.load is the only reader of a .jit archive; it deserialises TorchScript code and
    tensors, not pickled Python objects.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # "use torch.export": not for a .jit file
        scripted = torch.jit.load(str(package_file("silero_vad", "data/silero_vad.jit")), map_location="cpu")
    if set(scripted.state_dict()) != EXPECTED_KEYS:
        raise ValueError("silero_vad.jit holds tensors this rebuild does not know (a newer silero-vad?); "
                         "install silero-vad==6.2.3")
    source = {k.removeprefix("_model."): v for k, v in scripted.state_dict().items() if k.startswith("_model.")}
    state = {"stft_basis": source["stft.forward_basis_buffer"]}
    for i in range(len(ENCODER)):
        for kind in ("weight", "bias"):
            state[f"encoder.{i}.{kind}"] = source[f"encoder.{i}.reparam_conv.{kind}"]
    for kind in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        state[f"rnn.{kind}"] = source[f"decoder.rnn.{kind}"]
    state["head.weight"] = source["decoder.decoder.2.weight"]
    state["head.bias"] = source["decoder.decoder.2.bias"]
    return {k: v.detach().clone().float() for k, v in state.items()}


def cached_weights() -> dict[str, torch.Tensor]:
    """weights_from_jit(), kept as a plain state dict in the cache: reading the TorchScript
    archive takes seconds, the state dict milliseconds."""
    archive = package_file("silero_vad", "data/silero_vad.jit")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()[:12]
    path = cache_dir() / f"speech-silero-{digest}.pt"
    if path.is_file():
        return load_state_dict(path)
    state = weights_from_jit()
    partial = path.with_suffix(f".{os.getpid()}.part")
    torch.save(state, partial)
    os.replace(partial, path)
    return state


def network() -> nn.Module:
    net = SileroVAD()
    net.load_state_dict(cached_weights())
    return net


def card() -> ZooModel:
    units = {"speech_probability": UnitSpec("", 0, None, "Silero VAD speech probability, mean over 512-sample chunks")}
    units.update({f"hidden:{c}": UnitSpec("hidden", c, None, f"LSTM hidden unit {c}, mean over chunks")
                  for c in range(HIDDEN)})
    return ZooModel(
        name="speech",
        input_shape=(DEFAULT_SAMPLES,),
        value_range=(-1.0, 1.0),
        modality="audio",
        sample_rate=SAMPLE_RATE,
        default_unit="speech_probability",
        description=("Silero VAD (16 kHz), weights copied from silero-vad data/silero_vad.jit; "
                     "512-sample chunks with 64 samples of context and the LSTM state carried"),
        units=units,
    )
