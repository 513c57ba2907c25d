"""Do the zoo units do their job? Prints, in one run, the figures quoted in docs/benchmarks.md.

    PYTHONPATH=$PWD python benchmarks/zoo_units.py
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np
import torch
from scipy.io import wavfile
from sklearn.metrics import roc_auc_score

from closedloop import zoo
from closedloop.zoo import digits, face, note, package_file, pitch


def forward(model, x):
    with torch.no_grad():
        return model.module(torch.as_tensor(x, dtype=torch.float32))


def timed_load(name):
    start = time.perf_counter()
    model = zoo.load(name)
    return model, time.perf_counter() - start


def bench_digits():
    model, seconds = timed_load("digits")
    _, _, x_test, y_test = digits.dataset()
    accuracy = float((forward(model, x_test).argmax(1).numpy() == y_test).mean())
    print(f"digits: held-out accuracy {accuracy:.4f} on {len(y_test)} test digits (load {seconds:.1f} s)")
    x_train, y_train, _, _ = digits.dataset()
    start = time.perf_counter()
    digits.train(x_train, y_train)
    print(f"digits: training from scratch takes {time.perf_counter() - start:.1f} s (1 thread)")


def bench_face():
    model, seconds = timed_load("face")
    selectivity = face.lfw_selectivity(model.module)
    images, is_face = face.lfw_images()
    flipped = forward(model, images.flip(2))[:, 0].numpy()
    print(f"face: lfw_subset p(face) faces {selectivity['mean_face']:.4f}, non-faces "
          f"{selectivity['mean_nonface']:.4f}, ROC AUC {selectivity['auc']:.4f}; upside-down faces "
          f"{flipped[is_face == 1].mean():.4f}, AUC upside down {roc_auc_score(is_face, flipped):.4f} "
          f"(load {seconds:.1f} s)")


def bench_pitch():
    model, seconds = timed_load("pitch")
    frequencies = 440.0 * 2.0 ** (np.arange(-33, 28) / 12.0)  # C2 .. C7 in semitones
    frequencies = frequencies[frequencies < pitch.bin_frequency(359)]
    t = np.arange(pitch.DEFAULT_SAMPLES) / 16000
    waves = np.stack([0.5 * np.sin(2 * np.pi * f * t) for f in frequencies])
    peaks = forward(model, waves).mean(2).argmax(1).numpy()
    errors = np.abs(1200 * np.log2(pitch.bin_frequency(peaks) / frequencies))
    a4 = forward(model, waves[np.argmin(np.abs(frequencies - 440))][None]).mean(2)[0]
    print(f"pitch: {len(frequencies)} sines {frequencies[0]:.1f}-{frequencies[-1]:.0f} Hz: peak bin error median "
          f"{np.median(errors):.1f} cents, max {errors.max():.1f} cents, {np.mean(errors < 100):.0%} within a "
          f"semitone; A4 unit at 440 Hz {float(a4[model.unit('A4').channel]):.3f} (load {seconds:.1f} s)")


def bench_speech():
    model, seconds = timed_load("speech")
    rate, samples = wavfile.read(Path(__file__).parents[1] / "tests" / "fixtures" / "speech-16k.wav")
    speech = samples.astype(np.float32) / 32768
    rng = np.random.default_rng(0)
    noise = rng.normal(0, speech.std(), speech.shape)
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(len(speech)) / rate)
    probability = forward(model, np.stack([speech, noise, tone]))[:, 0].mean(1).numpy()
    waves = torch.from_numpy(np.stack([speech, noise]).astype(np.float32))
    scripted = torch.jit.load(str(package_file("silero_vad", "data/silero_vad.jit")), map_location="cpu")
    with torch.no_grad():
        reference = torch.stack([scripted(waves[:, i:i + 512], 16000)
                                 for i in range(0, waves.shape[1] - 511, 512)], 2)
    difference = (forward(model, waves)[..., :reference.shape[2]] - reference).abs().max()
    print(f"speech: mean p(speech) espeak-ng speech {probability[0]:.3f}, white noise {probability[1]:.3f}, "
          f"440 Hz tone {probability[2]:.3f} ({len(speech) / rate:.1f} s each); max |rebuild - scripted "
          f"Silero| {float(difference):.1e} (load {seconds:.1f} s)")


def bench_note():
    model, seconds = timed_load("note")
    keys = np.arange(36, 97)  # C2 .. C7, harmonic tones (8 partials at 1/k, 0.5 s, 10 ms fades)
    t = np.arange(note.DEFAULT_SAMPLES) / 16000
    fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.01)
    waves = []
    for midi in keys:
        f0 = note.midi_frequency(midi)
        wave = sum(np.sin(2 * np.pi * k * f0 * t) / k for k in range(1, 9) if k * f0 < 7600) * fade
        waves.append(0.1 * wave / np.sqrt(np.mean(wave**2)))
    mean = forward(model, np.stack(waves))[:, :note.KEYS].mean(2).numpy()
    hits = mean.argmax(1) == keys - note.LOWEST_MIDI
    own = mean[np.arange(len(keys)), keys - note.LOWEST_MIDI]
    onnxruntime = __import__("onnxruntime")
    window = np.zeros((1, note.WINDOW), np.float32)
    c4 = note.upsample(torch.from_numpy(waves[24][None]).float(), 16000, note.NETWORK_RATE)[0].numpy()  # MIDI 60
    window[0, 10000:10000 + len(c4)] = c4
    session = onnxruntime.InferenceSession(str(package_file("basic_pitch", note.ONNX_FILE)))
    reference = session.run(["StatefulPartitionedCall:1"], {session.get_inputs()[0].name: window[:, :, None]})[0]
    with torch.no_grad():
        difference = np.abs(model.module.transcribe(torch.from_numpy(window))[1].numpy() - reference).max()
    print(f"note: {len(keys)} harmonic tones C2-C7: the played key has the highest mean note posterior in "
          f"{hits.mean():.0%}, its posterior median {np.median(own):.3f} (min {own.min():.3f}); max |rebuild - "
          f"onnxruntime| note posterior on the C4 tone {difference:.1e} (load {seconds:.1f} s)")


if __name__ == "__main__":
    warnings.filterwarnings("ignore", "`torch.jit.load` is deprecated", DeprecationWarning)
    torch.manual_seed(0)
    for bench in (bench_digits, bench_face, bench_pitch, bench_speech, bench_note):
        bench()
