"""The zoo's five networks carry their real weights: each unit does the job it was trained for."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.io import wavfile

from closedloop import zoo
from closedloop.cli import main

# made once with espeak-ng (not needed to run the tests):
#   espeak-ng -w raw.wav "The quick brown fox jumps over the lazy dog."
# then scipy.signal.resample_poly(x, 320, 441) (22050 -> 16000 Hz), peak 0.9, 16-bit PCM mono
SPEECH_WAV = Path(__file__).parent / "fixtures" / "speech-16k.wav"


def run(model, x):
    with torch.no_grad():
        return model.module(torch.as_tensor(x, dtype=torch.float32))


def layer_output(model, spec, x):
    """The unit's response the way a DNN neuron reads it: hook the layer, take the channel,
    average the remaining axes."""
    captured = {}
    layer = model.module.get_submodule(spec.layer)
    handle = layer.register_forward_hook(lambda module, args, out: captured.update(out=out.clone()))
    try:
        run(model, x)
    finally:
        handle.remove()
    out = captured["out"][:, spec.channel]
    return out.flatten(1).mean(1) if out.ndim > 1 else out


def sines(frequencies, n_samples=4096, amplitude=0.5):
    t = np.arange(n_samples) / 16000
    return np.stack([amplitude * np.sin(2 * np.pi * f * t) for f in frequencies]).astype(np.float32)


def test_names_and_bad_names():
    assert zoo.names() == ["digits", "face", "pitch", "speech", "word", "note"]
    with pytest.raises(ValueError, match="unknown zoo model 'cat'.*digits"):
        zoo.load("cat")
    with pytest.raises(ValueError, match="unknown unit 'class10'.*class0..class9"):
        zoo.load("digits").unit("class10")
    assert zoo.load("digits") is zoo.load("digits")


@pytest.mark.slow
def test_weight_packages_are_not_imported():
    script = ("import sys; from closedloop import zoo\n"
              "for name in ('face', 'pitch', 'speech', 'note'): zoo.load(name)\n"
              "print(sorted(m for m in ('facenet_pytorch', 'torchcrepe', 'silero_vad', 'basic_pitch', 'torchvision', "
              "'torchaudio', 'tensorflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("name", ["digits", "face", "pitch", "speech", "note"])
def test_every_listed_unit_reads_an_existing_channel(name):
    model = zoo.load(name)
    assert not model.module.training and model.default_unit in model.unit_names()
    x = torch.rand(2, *model.input_shape) * (model.value_range[1] - model.value_range[0]) + model.value_range[0]
    shapes = {}
    handles = [model.module.get_submodule(layer).register_forward_hook(
        lambda module, args, out, layer=layer: shapes.update({layer: out.shape}))
        for layer in {spec.layer for spec in model.units.values()}]
    run(model, x)
    for handle in handles:
        handle.remove()
    for layer, shape in shapes.items():
        channels = [spec.channel for spec in model.units.values() if spec.layer == layer]
        assert shape[0] == 2 and max(channels) == shape[1] - 1, layer


def test_digits_net_classifies_held_out_digits():
    from closedloop.zoo import digits

    model = zoo.load("digits")
    _, _, x_test, y_test = digits.dataset()
    logits = run(model, x_test)
    accuracy = float((logits.argmax(1).numpy() == y_test).mean())
    assert accuracy >= 0.95
    assert f"accuracy {accuracy:.3f}" in model.description
    # the "grandmother" unit of digit 3 answers threes more than any other digit
    class3 = layer_output(model, model.unit("class3"), x_test).numpy()
    assert class3[y_test == 3].mean() > max(class3[y_test == k].mean() for k in range(10) if k != 3)


@pytest.mark.slow
def test_digits_training_is_deterministic_and_cached():
    from closedloop.zoo import digits

    path = zoo.cache_dir() / f"digits-{digits.recipe_hash()}.pt"
    zoo.load("digits")
    assert path.is_file()
    x_train, y_train, _, _ = digits.dataset()
    retrained = digits.train(x_train, y_train).state_dict()
    cached = torch.load(path, weights_only=True)
    assert all(torch.equal(retrained[k], cached[k]) for k in cached)


def test_face_unit_prefers_lfw_faces():
    from closedloop.zoo import face

    model = zoo.load("face")
    images, is_face = face.lfw_images()
    selectivity = face.lfw_selectivity(model.module)
    assert selectivity["auc"] >= 0.95
    assert selectivity["mean_face"] > 0.9 and selectivity["mean_nonface"] < 0.2
    out = run(model, images)
    assert torch.allclose(out[:, 0], torch.sigmoid(out[:, 1]))
    # the same crops upside down are much less face-like: the input orientation is right
    assert run(model, images[is_face == 1].flip(2))[:, 0].mean() < selectivity["mean_face"] - 0.3


def test_face_gradient_reaches_the_image():
    model = zoo.load("face")
    x = torch.rand(3, 3, 48, 48, requires_grad=True)
    model.module(x)[:, 1].sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_pitch_A4_peaks_at_440_hz():
    from closedloop.zoo.pitch import bin_frequency

    model = zoo.load("pitch")
    assert model.unit("A4") == model.unit("A4") and model.unit("440Hz").channel == model.unit("A4").channel
    out = run(model, sines([440.0]))
    assert out.shape == (1, 360, 1 + (4096 - 1024) // 256)
    peak = bin_frequency(int(out.mean(2)[0].argmax()))
    assert abs(1200 * math.log2(peak / 440.0)) < 100
    a4 = layer_output(model, model.unit("A4"), sines([440.0, 220.0, 880.0, 311.1])).numpy()
    assert a4[0] > 0.5 and a4[0] > 3 * a4[1:].max()


def test_pitch_bins_peak_at_their_sines():
    from closedloop.zoo.pitch import nearest_bin

    model = zoo.load("pitch")
    frequencies = [65.0, 123.5, 196.0, 330.0, 523.3, 1000.0, 1600.0]
    peaks = run(model, sines(frequencies)).mean(2).argmax(1).tolist()
    assert all(abs(peak - nearest_bin(f)) <= 2 for peak, f in zip(peaks, frequencies)), peaks


def test_pitch_accepts_short_and_long_sounds_and_names_frequencies():
    model = zoo.load("pitch")
    assert run(model, sines([440.0], n_samples=600)).shape == (1, 360, 1)
    assert run(model, sines([440.0], n_samples=16000)).shape == (1, 360, 59)
    with pytest.raises(ValueError, match="outside the CREPE range"):
        model.unit("5000Hz")
    with pytest.raises(ValueError, match="unknown unit 'H4'"):
        model.unit("H4")


def speech_and_noise():
    rate, samples = wavfile.read(SPEECH_WAV)
    assert rate == 16000 and samples.ndim == 1
    speech = samples.astype(np.float32) / 32768
    noise = np.random.default_rng(0).normal(0, speech.std(), speech.shape).astype(np.float32)
    return np.stack([speech, noise])


def test_speech_unit_prefers_espeak_speech_over_noise():
    model = zoo.load("speech")
    waves = speech_and_noise()
    assert waves.shape[1] % 512 != 0  # chunk padding is exercised
    out = run(model, waves)
    assert out.shape == (2, 1, math.ceil(waves.shape[1] / 512))
    speech, noise = out[:, 0].mean(1).tolist()
    assert speech > 0.6 and noise < 0.2
    # batching does not mix waveforms: each alone gives the same probabilities
    assert torch.allclose(run(model, waves[1:]), out[1:], atol=1e-5)


def test_speech_gradient_is_finite_on_silence_and_padding():
    model = zoo.load("speech")
    x = torch.zeros(2, 1000)
    x[1, :500] = torch.randn(500) * 0.1
    x.requires_grad_(True)
    model.module(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[1].abs().sum() > 0


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:DeprecationWarning")
def test_speech_rebuild_matches_the_scripted_silero_model():
    from closedloop.zoo import package_file

    waves = torch.from_numpy(speech_and_noise()[:, :16 * 512])
    scripted = torch.jit.load(str(package_file("silero_vad", "data/silero_vad.jit")), map_location="cpu")
    scripted.reset_states()
    with torch.no_grad():
        reference = torch.stack([scripted(waves[:, i:i + 512], 16000) for i in range(0, waves.shape[1], 512)], 2)
    assert torch.allclose(run(zoo.load("speech"), waves), reference, atol=1e-4)


def test_zoo_command_lists_models_and_units(capsys):
    assert main(["zoo"]) == 0
    out = capsys.readouterr().out
    for name in zoo.names():
        assert f"\n{name}: " in "\n" + out
    assert "16000 Hz" in out and "3x48x48" in out and "bin0..bin359" in out
    assert main(["zoo", "speech"]) == 0
    assert "speech_probability" in capsys.readouterr().out
    assert main(["zoo", "cat"]) == 2
    assert "unknown zoo model 'cat'" in capsys.readouterr().err
