"""The note unit: basic-pitch rebuilt in torch from its shipped ONNX file, the same network as
onnxruntime's reading of that file, and units that hear their notes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample

from closedloop import protocol as protocol_module
from closedloop import zoo
from closedloop.analysis import analyze
from closedloop.recording import open_run
from closedloop.zoo import note as basic_pitch

RATE = 16000


def harmonic(midi, seconds=0.5, rate=RATE, partials=8, seed=0):
    t = np.arange(int(seconds * rate)) / rate
    f0 = basic_pitch.midi_frequency(midi)
    phases = np.random.default_rng(seed).uniform(0, 2 * np.pi, partials)
    wave = sum(np.sin(2 * np.pi * k * f0 * t + phases[k - 1]) / k for k in range(1, partials + 1) if k * f0 < rate / 2)
    fade = np.minimum(1, np.minimum(t, t[-1] - t) / 0.01)
    return 0.1 * wave * fade / np.sqrt(np.mean((wave * fade) ** 2))


def music(seconds, rate, seed=0):
    """Plucked harmonic notes that overlap (a chord, a bass, a melody) over a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * rate)) / rate
    wave = 0.003 * rng.standard_normal(len(t))
    for midi, start, decay, level in [(48, 0.0, 1.0, 0.2), (60, 0.1, 0.5, 0.3), (64, 0.3, 0.4, 0.2),
                                      (67, 0.6, 0.6, 0.25), (72, 1.2, 0.3, 0.3), (55, 1.5, 0.4, 0.2)]:
        since = t - start
        envelope = np.where(since >= 0, np.minimum(since / 0.01, 1) * np.exp(-np.maximum(since, 0) / decay), 0)
        f0 = basic_pitch.midi_frequency(midi) * 2 ** (rng.uniform(-10, 10) / 1200)
        for k in range(1, 9):
            wave += level * envelope * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 2 * np.pi)) / k
    return wave


def test_rebuild_matches_onnxruntime_on_music():
    import onnxruntime  # a test dependency (pyproject's test extra)

    batch = np.stack([music(2.0, basic_pitch.NETWORK_RATE, seed) for seed in (0, 1)])[:, :basic_pitch.WINDOW]
    batch = batch.astype(np.float32)
    session = onnxruntime.InferenceSession(str(zoo.package_file("basic_pitch", basic_pitch.ONNX_FILE)))
    outputs = session.run(None, {session.get_inputs()[0].name: batch[:, :, None]})
    reference = dict(zip((o.name for o in session.get_outputs()), outputs))
    with torch.no_grad():
        contour, note, onset = zoo.load("note").module.transcribe(torch.from_numpy(batch))
    # the graph's outputs, by its own names: 0 contour, 1 note, 2 onset
    for name, mine in [("StatefulPartitionedCall:0", contour), ("StatefulPartitionedCall:1", note),
                       ("StatefulPartitionedCall:2", onset)]:
        assert mine.shape == reference[name].shape
        assert np.abs(mine.numpy() - reference[name]).max() < 1e-5, name
    assert note.max() > 0.5 and onset.max() > 0.5  # the music was heard: a comparison of real output
    # the notes that were played are the notes that come out
    played = note[0].amax(0).numpy()
    assert all(played[midi - basic_pitch.LOWEST_MIDI] > 0.5 for midi in (48, 60, 64, 67, 72, 55))


def test_frames_of_the_sound_are_computed_as_in_the_whole_window():
    x = torch.from_numpy(music(2.0, basic_pitch.NETWORK_RATE, 2)[:basic_pitch.WINDOW].astype(np.float32))[None]
    net = zoo.load("note").module
    with torch.no_grad():
        whole = net.transcribe(x)
        for frames in (range(60, 103), range(0, 4), range(165, 172)):
            for full, part in zip(whole, net.transcribe(x, frames)):
                assert torch.allclose(full[:, frames.start:frames.stop], part, atol=1e-6)  # 5e-4 with one frame fewer


def test_upsampling_is_scipys_band_limited_resampling():
    wave = np.random.default_rng(0).standard_normal((2, 8000))
    mine = basic_pitch.upsample(torch.from_numpy(wave), RATE, basic_pitch.NETWORK_RATE).numpy()
    assert mine.shape == (2, 11025)
    assert np.allclose(mine, resample(wave, 11025, axis=1), atol=1e-10)


def test_note_units_hear_their_notes():
    model = zoo.load("note")
    assert model.sample_rate == RATE and model.input_shape == (8000,)
    c4 = model.unit("C4")
    assert c4.claim == ("pitch", 261.63) and model.unit("onset:C4").channel == c4.channel + 88
    assert model.unit("A0").channel == 0 and model.unit("C8").channel == 87
    notes = [48, 55, 60, 64, 69, 76, 84]
    rng = np.random.default_rng(0)
    sounds = np.stack([harmonic(midi) for midi in notes] + [0.1 * rng.standard_normal(8000)]).astype(np.float32)
    with torch.no_grad():
        out = model.module(torch.from_numpy(sounds))
    assert out.shape == (len(sounds), 176, 43)  # 0.5 s: 43 frames of 256 samples at 22050 Hz
    mean = out[:, :88].mean(2)
    for row, midi in enumerate(notes):
        assert mean[row].argmax() == midi - basic_pitch.LOWEST_MIDI, (midi, mean[row].argmax())
        assert mean[row, midi - 21] > 0.6
    assert mean[-1].max() < 0.4  # white noise is no note
    # each sound alone gives what it gave in the batch, but for float rounding: in near-silent
    # CQT bins (the sound's edges) it moves the log level by up to 1e-3, the posteriors by 5e-5
    with torch.no_grad():
        assert torch.allclose(model.module(torch.from_numpy(sounds[2:3])), out[2:3], atol=2e-4)


def test_note_model_takes_any_sound_up_to_its_window():
    net = zoo.load("note").module
    with torch.no_grad():
        assert net(torch.zeros(1, 2000)).shape == (1, 176, 11)
        assert net(torch.zeros(1, 31000)).shape[2] == 167  # 42722 samples at 22050 Hz from 561 on
    with pytest.raises(ValueError, match="longer than its window"):
        net(torch.zeros(1, 40000))


def test_note_gradient_reaches_the_sound():
    x = torch.from_numpy(harmonic(60).astype(np.float32))[None].requires_grad_(True)
    zoo.load("note").module(x)[:, 39].mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


PROTOCOLS = Path(__file__).resolve().parents[1] / "protocols"


@pytest.mark.slow
def test_a_short_hear_note_run_is_judged_by_the_pitch_estimate(tmp_path):
    """protocols/hear-note.yaml, four generations: the unit climbs from noise and the analysis
    asks the pitch judge about the best sounds (the full run is measured in docs/listening.md)."""
    protocol = protocol_module.load(PROTOCOLS / "hear-note.yaml", {"generations": 4, "optimizer.popsize": 8})
    summary = protocol.experiment_cls(protocol).run(tmp_path / "note.h5", progress=False)
    with open_run(tmp_path / "note.h5") as run:
        assert run.claim == ("pitch", 261.63)
        generations = run.generations
    assert summary["status"] == "complete" and len(generations) == 4
    assert generations["best"].iloc[-1] > generations["mean"].iloc[0]
    numbers = analyze(tmp_path / "note.h5")
    judged = numbers["judges"]["pitch"]
    assert judged["of"] == 8 and len(judged["heard"]) == 8
    assert any("judge pitch" in line and "as pitch 261.63" in line for line in numbers["lines"])
    assert Path(numbers["best_wav"]).is_file()


@pytest.mark.slow
def test_a_short_fooling_note_run_counts_static_past_the_threshold(tmp_path):
    protocol = protocol_module.load(PROTOCOLS / "fooling-note.yaml", {"count": 12})
    protocol.experiment_cls(protocol).run(tmp_path / "fool.h5", progress=False)
    numbers = analyze(tmp_path / "fool.h5")
    assert numbers["threshold"] == 0.3 and set(numbers["rates"]) == {"white", "pink", "tv"}
    for rate in numbers["rates"].values():
        assert rate["n"] == 12 and 0 <= rate["low"] <= rate["rate"] <= rate["high"] <= 1
