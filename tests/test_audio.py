"""Audio spaces, Griffin-Lim, the independent pitch estimator and the WAV output of analyze."""

import json

import numpy as np
import pytest

from closedloop.analysis import analyze
from closedloop.analysis.audio import describe_sound, estimate_pitch, note_name, read_wav, spectral_flatness, write_wav
from closedloop.errors import ProtocolError
from closedloop.neurons.base import Trials
from closedloop.protocol import parse
from closedloop.recording.writer import RunWriter
from closedloop.registry import lookup
from closedloop.spaces.audio import SAMPLE_RATE, griffin_lim, spectral_convergence, stft_magnitude

KINDS = {
    "waveform": {"resolution": 40.0, "f_max": 2000.0},
    "harmonic": {"pitch_points": 2},
    "instrument": {"pitch_points": 2},
    "spectrogram": {"iterations": 8},
}


def build(kind, seed=3, **settings):
    cls = lookup("space", kind)
    return cls(cls.Config(**{**KINDS[kind], **settings}), seed)


def tone(f0, seconds=0.5, harmonics=1):
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return sum(np.sin(2 * np.pi * k * f0 * t + k) / k for k in range(1, harmonics + 1))


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_space_shapes_bounds_fades_and_determinism(kind, rng):
    space = build(kind, duration=0.25, loudness=0.2, peak=0.5)
    assert space.modality == "audio" and space.sample_rate == 16000
    assert space.stimulus_shape == (4000,)
    z = 3 * space.sample(rng, 12)  # wide draws, so that some sounds are peaky
    waves = space.render(z)
    assert waves.shape == (12, 4000) and np.isfinite(waves).all()
    rms = np.sqrt(np.mean(waves**2, axis=1))
    assert (np.abs(waves).max(axis=1) <= 0.5 + 1e-12).all()
    assert (rms <= 0.2 + 1e-12).all() and (rms > 0.01).all()
    assert np.allclose(waves[:, 0], 0) and np.allclose(waves[:, -1], 0)
    assert (np.abs(waves[:, :8]) < 0.05).all() and (np.abs(waves[:, -8:]) < 0.05).all()
    assert np.array_equal(space.render(z), waves)
    assert np.array_equal(build(kind, duration=0.25, loudness=0.2, peak=0.5).render(z), waves)
    assert not np.allclose(waves[0], waves[1])


def test_space_rejects_bad_settings():
    with pytest.raises(ValueError, match="f_min"):
        build("waveform", f_min=3000.0, f_max=2000.0)
    with pytest.raises(ValueError, match="fade"):
        build("harmonic", duration=0.1, fade=0.06)
    with pytest.raises(ProtocolError, match="space.resolutoin: unknown field; did you mean 'resolution'"):
        parse("kind: evolve\nneuron: {kind: spiking}\nspace: {kind: waveform, resolutoin: 3}\noptimizer: {kind: cmaes}\n")


def test_waveform_space_follows_its_spectral_prior_and_band(rng):
    space = build("waveform", resolution=20.0, f_min=200.0, f_max=3000.0, alpha=1.0, duration=0.5, fade=0.002)
    power = np.mean(np.abs(np.fft.rfft(space.render(space.sample(rng, 200)), axis=1)) ** 2, axis=0)
    freqs = np.fft.rfftfreq(space.n_samples, 1 / SAMPLE_RATE)
    outside = power[(freqs < 150) | (freqs > 3100)].sum() / power.sum()
    assert outside < 0.01
    low, high = power[(freqs > 250) & (freqs < 350)].mean(), power[(freqs > 2500) & (freqs < 2900)].mean()
    assert 50 < low / high < 200  # amplitude 1/f -> power ratio ~ (2700 / 300)^2 = 81


def test_harmonic_space_pitch_matches_its_parameters_and_the_estimator(rng):
    space = build("harmonic", pitch_points=1, harmonics=8, envelope_points=1, duration=0.5)
    z = space.sample(rng, 6)
    f0 = space.parameters(z)["f0"][:, 0]
    assert (f0 >= 60).all() and (f0 <= 1000).all()
    for wave, expected in zip(space.render(z), f0):
        estimate = estimate_pitch(wave, SAMPLE_RATE)["f0"]
        assert abs(1200 * np.log2(estimate / expected)) < 15, (estimate, expected)


@pytest.mark.parametrize("f0", [110.0, 440.0, 523.25])
def test_pitch_estimator_finds_f0_of_sines_and_harmonic_tones(f0):
    for harmonics in (1, 6):
        measured = describe_sound(tone(f0, harmonics=harmonics), SAMPLE_RATE)
        assert abs(1200 * np.log2(measured["f0"] / f0)) < 5
        assert measured["voiced_fraction"] > 0.9 and measured["hnr_db"] > 10
    noise = np.random.default_rng(0).standard_normal(8000)
    assert np.isnan(estimate_pitch(noise, SAMPLE_RATE)["f0"])
    assert spectral_flatness(noise, SAMPLE_RATE) > 0.8 > 0.01 > spectral_flatness(tone(f0), SAMPLE_RATE)
    assert note_name(440.0) == "A4 +0 cents" and note_name(523.25) == "C5 -0 cents"


def test_griffin_lim_reconstructs_a_known_magnitude():
    chirp = np.sin(2 * np.pi * np.cumsum(np.linspace(200, 1200, 8000)) / SAMPLE_RATE) + 0.5 * tone(700)
    target = stft_magnitude(chirp[None], 512, 128)
    start = np.random.default_rng(1).uniform(-np.pi, np.pi, target.shape[1:])
    before = spectral_convergence(target, stft_magnitude(griffin_lim(target, 512, 128, 8000, 0, start), 512, 128))
    after = spectral_convergence(target, stft_magnitude(griffin_lim(target, 512, 128, 8000, 60, start), 512, 128))
    assert before > 0.4 and after < 0.08


def test_wav_is_readable_at_16_khz_with_peak_below_minus_1_dbfs(tmp_path):
    wave = 3.0 * tone(440.0, 0.3) + 0.2  # too loud, with DC offset and an abrupt start
    path = write_wav(tmp_path / "a.wav", wave, SAMPLE_RATE)
    rate, data = read_wav(path)
    assert rate == 16000 and data.shape == (4800,)
    peak_dbfs = 20 * np.log10(np.abs(data).max())
    assert -1.1 < peak_dbfs <= -1.0 + 1e-3
    assert abs(data[0]) < 1e-3 and abs(data[-1]) < 1e-3 and abs(data.mean()) < 1e-3
    assert abs(estimate_pitch(data, rate)["f0"] - 440) < 2


def write_audio_log(tmp_path):
    """A real log of a harmonic space, scored by an independent measure (energy near 440 Hz)."""
    text = ("kind: evolve\nseed: 2\nneuron: {kind: spiking}\n"
            "space: {kind: harmonic, duration: 0.25, envelope_points: 2}\noptimizer: {kind: random}\n")
    space = parse(text).build("space")
    path = tmp_path / "run.h5"
    writer = RunWriter(path, protocol_text=text, seed=2, kind="evolve", configs={"space": space.describe()},
                       dim=space.dim, stimulus_shape=space.stimulus_shape, modality="audio", response_unit="a.u.",
                       record_rendered=False, sample_rate=space.sample_rate,
                       neuron_arrays={"optimal_stimulus": 0.1 * tone(440.0, 0.25)})
    rng, best, best_index = np.random.default_rng(0), -np.inf, -1
    for generation in range(4):
        z = space.sample(rng, 5)
        waves = space.render(z)
        spectrum = np.abs(np.fft.rfft(waves, axis=1))
        freqs = np.fft.rfftfreq(waves.shape[1], 1 / SAMPLE_RATE)
        scores = spectrum[:, (freqs > 400) & (freqs < 480)].sum(1) / spectrum.sum(1)
        index = writer.add_stimuli(z, generation)
        writer.add_trials(index, generation, Trials(scores[:, None], np.arange(5.0)[:, None] + 5 * generation))
        if scores.max() > best:
            best, best_index = float(scores.max()), int(index[np.argmax(scores)])
        writer.add_generation({"generation": generation, "presentations": 5 * (generation + 1), "best": best,
                               "mean": scores.mean(), "max": scores.max(), "best_stimulus": best_index},
                              z[0])
    writer.close()
    return path, space, best_index


def test_analyze_writes_wavs_and_spectrograms_of_an_audio_run(tmp_path):
    path, space, best_index = write_audio_log(tmp_path)
    numbers = analyze(path, tmp_path / "out")
    rate, data = read_wav(numbers["sounds"]["best sound of the run"])
    assert rate == 16000 and data.shape == (4000,)
    assert np.abs(data).max() <= 10 ** (-1 / 20) + 1e-4
    original = space.render(space.sample(np.random.default_rng(0), 20)[[best_index]])[0]
    assert np.corrcoef(original, data)[0, 1] > 0.999  # the sound that was scored, re-rendered from z
    generations = [label for label in numbers["sounds"] if label.startswith("best of generation")]
    assert generations == [f"best of generation {g}" for g in range(4)]
    for label in generations:
        assert read_wav(numbers["sounds"][label])[0] == 16000
    assert (tmp_path / "out" / "sounds" / "best.png").stat().st_size > 1000
    assert (tmp_path / "out" / "sounds" / "generations.png").stat().st_size > 1000
    assert {str(tmp_path / "out" / "sounds" / name) for name in ("best.png", "generations.png", "optimal.png")} <= set(
        numbers["figures"])  # every figure reaches the report
    assert read_wav(numbers["sounds"]["the cell's optimal sound (ground truth)"])[1].shape == (4000,)
    page = path.with_suffix(".html").read_text()
    assert page.count("<audio controls") == len(numbers["sounds"]) == 6  # a player per sound
    assert page.count('src="data:image/png;base64,') == 1 + len(numbers["figures"]) == 4
    assert numbers["spectrogram_correlation"] > 0.3, numbers["spectrogram_correlation"]
    sound = numbers["sound"]
    assert set(sound) >= {"f0", "hnr_db", "spectral_flatness", "note"}
    assert any("YIN pitch" in line for line in numbers["lines"])
    json.dumps({k: v for k, v in numbers.items() if k != "lines"})


@pytest.mark.parametrize("kind", ["waveform", "harmonic"])
def test_differentiable_rendering_matches_render_and_has_a_gradient(kind, rng):
    torch = pytest.importorskip("torch")
    space = build(kind, duration=0.25)
    z = space.sample(rng, 3)
    tensor = torch.tensor(z, requires_grad=True)
    waves = space.render_torch(tensor)
    assert np.allclose(waves.detach().numpy(), space.render(z), atol=1e-10)
    waves[:, 1000:1100].sum().backward()
    assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


@pytest.mark.slow
def test_black_box_run_raises_the_pitch_unit_and_analyze_writes_its_sound(tmp_path):
    """CREPE's A4 unit, the harmonic space and the genetic algorithm, through the real loop."""
    from closedloop.commands.run import execute  # the CLI's own `closedloop run`
    from argparse import Namespace

    protocol = tmp_path / "pitch.yaml"
    protocol.write_text("kind: evolve\nseed: 0\nneuron: {kind: dnn, model: pitch, unit: A4}\n"
                        "space: {kind: harmonic, duration: 0.256}\n"
                        "optimizer: {kind: genetic, popsize: 12}\ngenerations: 12\n")
    out = tmp_path / "pitch.h5"
    assert execute(Namespace(protocol=str(protocol), out=str(out), overwrite=False, set=None, quiet=True)) == 0
    from closedloop.recording import open_run

    with open_run(out) as run:
        generations = run.generations
        start, best = generations["mean"].iloc[0], generations["best"].iloc[-1]
    assert best > 0.5 and best > 10 * start, (start, best)
    rate, data = read_wav(tmp_path / "pitch" / "sounds" / "best.wav")
    assert rate == 16000 and data.shape == (4096,)
    assert abs(1200 * np.log2(estimate_pitch(data, rate)["f0"] / 441.5)) < 100  # within a semitone of bin 228


def test_sounds_command_writes_chosen_generations(tmp_path, capsys):
    from closedloop.cli import main

    path, _, _ = write_audio_log(tmp_path)
    assert main(["sounds", str(path), "--generations", "1", "3", "--out", str(tmp_path / "s")]) == 0
    written = sorted(p.name for p in (tmp_path / "s" / "sounds").glob("*.wav"))
    assert written == ["best.wav", "generation_001.wav", "generation_003.wav", "optimal.wav"]
    assert "YIN pitch" in capsys.readouterr().out
    assert main(["sounds", str(path), "--generations", "7"]) == 2
    assert "not in the run's generations 0..3" in capsys.readouterr().err
