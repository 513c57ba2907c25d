"""Words: the formant space, the PocketSphinx ear (calibrated on espeak-ng words), the word
network trained on espeak-ng and a short hear-word run judged by the ear."""

import os

import numpy as np
import pytest
import torch

from closedloop.zoo import espeak

needs_espeak = pytest.mark.skipif(not espeak.available() and not os.environ.get("CI"),
                                  reason=espeak.INSTALL_HINT)  # CI installs it (.ci/run): there it must be found
SECOND = 16000


@pytest.fixture(autouse=True)
def one_torch_thread():
    """As the dnn neuron runs: on shared cores torch's second thread made these renders 10x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def formant_space(**settings):
    from closedloop.spaces.formant import FormantSettings, FormantSpace

    return FormantSpace(FormantSettings(**settings), seed=3)


def test_formant_space_renders_bounded_deterministic_sounds():
    space = formant_space(duration=0.5, points=6)
    assert (space.dim, space.stimulus_shape) == (7 * 6, (8000,))
    assert (space.modality, space.sample_rate, space.can_encode, space.differentiable) == ("audio", 16000, False, True)
    z = space.sample(np.random.default_rng(0), 5)
    sounds = space.render(z)
    assert sounds.shape == (5, 8000)
    assert np.abs(sounds).max() <= space.config.peak + 1e-12
    assert np.allclose(np.sqrt((sounds ** 2).mean(axis=1)), space.config.loudness)
    assert np.all(sounds[:, 0] == 0) and np.all(sounds[:, -1] == 0)  # faded in and out: no click
    assert np.array_equal(formant_space(duration=0.5, points=6).render(z), sounds)  # same seed, same sounds
    assert not np.allclose(sounds[0], sounds[1])
    params = space.parameters(z)
    assert np.all((params["f0"] >= 70) & (params["f0"] <= 300))
    assert np.all((params["F2"] >= 800) & (params["F2"] <= 2600))
    latent = torch.tensor(z, requires_grad=True)
    rendered = space.render_torch(latent)
    assert np.allclose(rendered.detach().numpy(), sounds, atol=1e-9)
    rendered.pow(2).mean().backward()
    assert torch.isfinite(latent.grad).all() and latent.grad.abs().sum() > 0


def test_formant_space_puts_formants_and_noise_where_it_is_told():
    """A steady voice with F1 = 300 Hz, F2 = 2300 Hz ("ee") has its spectral peaks there; breath
    noise at 6 kHz ("s") puts most of its power above 4 kHz."""
    from scipy.signal import welch
    from scipy.stats import norm

    space = formant_space(duration=0.5, points=2)
    ranges = {"F1": (250, 900), "F2": (800, 2600), "F3": (1800, 3500), "frication": (1000, 7500)}

    def latent(f0=120, voicing=0.99, noise=0.001, F1=300, F2=2300, F3=3000, frication=6000):
        values = {"f0": np.log(f0 / 70) / np.log(300 / 70), "voicing": voicing, "noise": noise}
        values.update({k: np.log(v / ranges[k][0]) / np.log(ranges[k][1] / ranges[k][0])
                       for k, v in dict(F1=F1, F2=F2, F3=F3, frication=frication).items()})
        return np.repeat(norm.ppf([values[k] for k in ("f0", "voicing", "noise", "F1", "F2", "F3", "frication")]), 2)

    vowel, hiss = space.render(np.stack([latent(), latent(voicing=0.001, noise=0.99)]))
    frequencies, power = welch(vowel, fs=16000, nperseg=1024)
    low, high = power[(frequencies > 200) & (frequencies < 700)], power[(frequencies > 1800) & (frequencies < 2800)]
    assert abs(frequencies[(frequencies > 200) & (frequencies < 700)][low.argmax()] - 300) < 80
    assert abs(frequencies[(frequencies > 1800) & (frequencies < 2800)][high.argmax()] - 2300) < 150
    assert power[(frequencies > 900) & (frequencies < 1500)].max() < 0.1 * high.max()  # a valley between
    frequencies, power = welch(hiss, fs=16000, nperseg=1024)
    assert power[frequencies > 4000].sum() > 0.6 * power.sum()


def centred(wave, length=SECOND):
    wave = wave[:length]
    out = np.zeros(length)
    start = (length - len(wave)) // 2
    out[start:start + len(wave)] = wave
    return out


CALIBRATION_VOICES = ("en-us", "en", "en-gb-scotland", "en-029", "en-us+f3", "en+m3", "en-us+klatt", "en-gb-x-rp+f2")


@needs_espeak
def test_pocketsphinx_hears_espeak_yes_and_refuses_other_words_and_noise():
    """The calibration behind the judge's threshold: "yes" in 8 voices, other words in 4, and
    noise, tones and buzzes, all 1 s like the word unit's sounds. A limit it has: espeak-ng's
    "yet" and "guess" it hears as "yes" (3 of 4 voices each), so the judge is no stricter than that."""
    from closedloop.judges.pocketsphinx import PocketSphinxJudge

    judge = PocketSphinxJudge()
    yes = [centred(espeak.speak("yes", voice, 160, 50)) for voice in CALIBRATION_VOICES]
    verdicts = judge.judge(np.stack(yes), "yes", 16000)
    assert sum(v.accepted for v in verdicts) >= 7, [v.heard for v in verdicts]
    others = [centred(espeak.speak(word, voice, 160, 50)) for word in ("no", "left", "stop", "six", "less", "bed")
              for voice in CALIBRATION_VOICES[:4]]
    assert sum(v.accepted for v in judge.judge(np.stack(others), "yes", 16000)) <= 1
    rng, t = np.random.default_rng(0), np.arange(SECOND) / SECOND
    noises = [rng.standard_normal(SECOND), np.cumsum(rng.standard_normal(SECOND)),
              np.fft.irfft(np.fft.rfft(rng.standard_normal(SECOND)) / np.sqrt(np.arange(1, SECOND // 2 + 2))),
              np.sin(2 * np.pi * 440 * t), np.sin(2 * np.pi * 1000 * t), np.sign(np.sin(2 * np.pi * 120 * t)),
              np.zeros(SECOND)]
    for word in ("yes", "left", "right"):
        verdicts = judge.judge(np.stack(noises), word, 16000)
        assert not any(v.accepted for v in verdicts), (word, [v.heard for v in verdicts])
    with pytest.raises(ValueError, match="expected a word"):
        judge.judge(np.stack(noises[:1]), None, 16000)


@pytest.mark.slow
@needs_espeak
def test_word_net_recognises_held_out_espeak_words():
    """Trained once per cache (about a minute or two); accuracies measured on held-out words and
    voices, and on new utterances spoken here at speeds and pitches of their own."""
    from closedloop import zoo
    from closedloop.zoo import word

    model = zoo.load("word")
    _, numbers = word.trained_net()
    assert numbers["test_accuracy"] >= 0.95 and numbers["held_out_voice_accuracy"] >= 0.9, numbers
    assert model.unit("yes").claim == ("word", "yes") and model.unit("silence").claim is None
    voices = ("en-us+m4", "en-029+f4", "en-gb-x-rp+john", "en+grandma")  # variants never heard in training
    sounds = np.stack([centred(espeak.speak(w, v, 150 + 20 * k, 30 + 10 * k)) * 3
                       for k, v in enumerate(voices) for w in word.WORDS])
    with torch.no_grad():
        heard = model.module(torch.as_tensor(sounds, dtype=torch.float32)).argmax(1).numpy()
    expected = np.tile([word.CLASSES.index(w) for w in word.WORDS], len(voices))
    assert (heard == expected).mean() >= 0.85, [word.CLASSES[k] for k in heard]
    with torch.no_grad():
        noise = model.module(torch.as_tensor(np.random.default_rng(0).standard_normal((4, SECOND)) * 0.1,
                                             dtype=torch.float32))
    assert (noise.argmax(1) == word.CLASSES.index("silence")).all()


@pytest.mark.slow
@needs_espeak
def test_short_hear_word_run_is_judged_by_pocketsphinx(tmp_path):
    from closedloop import analysis
    from closedloop import protocol as protocol_module

    protocol = protocol_module.load("protocols/hear-word.yaml", {"generations": 4, "optimizer.popsize": 6})
    path = tmp_path / "word.h5"
    protocol.experiment_cls(protocol).run(path, progress=False)
    numbers = analysis.analyze(path)
    judged = numbers["judges"]["pocketsphinx"]
    assert judged["of"] == 8 and len(judged["heard"]) == 8
    assert os.path.isfile(numbers["best_wav"])
    assert any(line.startswith("judge pocketsphinx") for line in numbers["lines"])
