"""The dream protocol: a picture or a recording amplified for a real network's unit, staying near it.

Short runs of real zoo networks (MTCNN's face O-Net, CREPE's pitch net) from files beside the
protocol; every step is in the log, no stimulus leaves the distance bound, the unit's response
rises, the same seed gives the same log, and bad sources are refused in one line."""

import shutil
import wave

import h5py
import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from scipy.io import wavfile
from scipy.signal import resample_poly

from closedloop import protocol as protocol_module
from closedloop.analysis import analyze
from closedloop.cli import main
from closedloop.errors import ProtocolError
from closedloop.experiments.seeding import fit_picture, picture, recording
from closedloop.neurons.dnn import DNNSettings, DNNUnit
from closedloop.recording import open_run
from closedloop.spaces.near import NearSource
from fixture_logs import ROOT, differences

PICTURE = {
    "kind": "dream", "seed": 3, "source": "photo.png", "distance": 0.08, "octaves": 2, "steps": 3,
    "neuron": {"kind": "dnn", "model": "face", "unit": "face_logit"},
    "optimizer": {"kind": "gradient_ascent", "steps": 3, "learning_rate": 0.05, "jitter": 2},
}
RECORDING = {
    "kind": "dream", "seed": 0, "source": "sounds/speech-22k-stereo.wav", "offset": 1.0, "distance": 0.03,
    "octaves": 2, "steps": 3, "f_max": 4000,
    "neuron": {"kind": "dnn", "model": "pitch", "unit": "A4"},
    "optimizer": {"kind": "gradient_ascent", "steps": 3, "learning_rate": 0.05, "jitter": 40, "tv_weight": 0.01},
}


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A protocol folder with a photograph of the wrong size (not square, not 48 pixels) and a
    recording at the wrong rate, in stereo."""
    from skimage import data

    where = tmp_path_factory.mktemp("dream")
    Image.fromarray(data.chelsea()[40:250, 60:400]).save(where / "photo.png")
    (where / "sounds").mkdir()
    rate, speech = wavfile.read(ROOT / "protocols" / "assets" / "quick-brown-fox.wav")
    slower = resample_poly(speech.astype(np.float64), 441, 320)
    stereo = np.stack([slower, 0.5 * slower], axis=1).round().astype(np.int16)
    wavfile.write(where / "sounds" / "speech-22k-stereo.wav", 22050, stereo)
    return where


def run(folder, settings, name, **changes):
    text = yaml.safe_dump({**settings, **changes})
    (folder / f"{name}.yaml").write_text(text)
    protocol = protocol_module.load(folder / f"{name}.yaml")
    log = folder / f"{name}.h5"
    log.unlink(missing_ok=True)
    protocol.experiment_cls(protocol).run(log, progress=False)
    return log


def check_steps_and_bound(log, source, bound, steps, popsize=1):
    with open_run(log) as logged:
        assert logged.status == "complete"
        assert len(logged.generations) == steps
        assert len(logged.trials) == steps * popsize  # every step presented and logged
        rendered = logged.rendered().astype(np.float64)
        assert np.allclose(logged.z[0], 0) and np.allclose(rendered[0], source, atol=1e-6)  # step 0: the source
        distances = np.sqrt(np.mean((rendered - source).reshape(len(rendered), -1) ** 2, axis=1))
        assert distances.max() <= bound * (1 + 1e-5)
        assert distances[-1] > 0.1 * bound  # it did move
        responses = logged.stimulus_means()["mean"]
        return float(responses.loc[0]), logged.best_per_generation(), responses


def test_a_picture_dream_stays_near_its_source_while_the_unit_rises(folder):
    log = run(folder, PICTURE, "picture")
    source = picture("photo.png", (3, 48, 48), str(folder / "picture.yaml"))
    first, steps, responses = check_steps_and_bound(log, source, 0.08, 6)
    assert responses.loc[steps[-1]] > first + 5  # the face log-odds climbed
    numbers = analyze(log)
    assert len(list((folder / "picture" / "steps").glob("step_*.png"))) == 6
    assert numbers["source_response"] == pytest.approx(first) and numbers["largest_distance"] <= 0.08 * (1 + 1e-5)
    assert set(numbers["judges"]) == {"source", "dream"}  # the face judges were asked about both
    assert (folder / "picture" / "dream.png").is_file() and (folder / "picture.html").is_file()


def test_the_same_protocol_and_seed_give_the_same_dream(folder, tmp_path):
    again = tmp_path / "again.h5"
    protocol = protocol_module.load(folder / "picture.yaml")
    protocol.experiment_cls(protocol).run(again, progress=False)
    assert differences(folder / "picture.h5", again) == []
    other = run(folder, PICTURE, "other-seed", seed=4)
    with open_run(folder / "picture.h5") as a, open_run(other) as b:
        assert not np.array_equal(a.rendered()[-1], b.rendered()[-1])  # the jitter differs


def test_a_recording_dream_resampled_from_a_stereo_file(folder):
    log = run(folder, RECORDING, "recording")
    source = recording("sounds/speech-22k-stereo.wav", 16000, 4096, 1.0, str(folder / "recording.yaml"))
    _, fox = wavfile.read(ROOT / "protocols" / "assets" / "quick-brown-fox.wav")
    same = fox[16000:16000 + 4096] / 32768 * 0.75  # mono = the mean of the two channels
    assert np.corrcoef(source[100:-100], same[100:-100])[0, 1] > 0.99
    first, steps, responses = check_steps_and_bound(log, source, 0.03, 6)
    assert responses.loc[steps[-1]] > 3 * first
    with open_run(log) as logged:
        change = logged.rendered([steps[-1]])[0] - source
        assert logged.generations["band"].tolist() == [2000.0] * 3 + [4000.0] * 3
    spectrum = np.abs(np.fft.rfft(change)) ** 2
    frequencies = np.fft.rfftfreq(len(change), 1 / 16000)
    outside = (frequencies > 4000) | (frequencies < 60)
    assert spectrum[outside].sum() < 1e-6 * spectrum.sum()  # nothing above f_max or below 60 Hz changed
    numbers = analyze(log)
    sounds = folder / "recording" / "sounds"
    assert {p.name for p in sounds.glob("*.wav")} >= {"source.wav", "dream.wav", "change.wav"}
    assert list(numbers["sounds"].values())[0].endswith("source.wav")


def test_a_black_box_dream_from_responses_alone(folder):
    log = run(folder, PICTURE, "black-box", octaves=1, steps=3, max_frequency=0.0625,
              optimizer={"kind": "cmaes", "popsize": 8})
    source = picture("photo.png", (3, 48, 48), str(folder / "picture.yaml"))
    first, _, responses = check_steps_and_bound(log, source, 0.08, 3, popsize=8)
    assert responses.max() > first


def test_near_source_space_encodes_what_it_renders():
    rng = np.random.default_rng(0)
    for shape, modality, value_range, top in (((3, 16, 16), "image", (0.0, 1.0), 0.25), ((16, 16), "image", None, 0.5),
                                               ((1000,), "audio", (-1.0, 1.0), 0.2)):
        source = rng.uniform(0.3, 0.7, shape) if value_range and modality == "image" else 0.1 * rng.standard_normal(shape)
        space = NearSource(source, distance=1.0, max_frequency=top, alpha=1.0, modality=modality,
                           value_range=value_range)
        z = 0.05 * space.sample(rng, 3)  # small changes: inside the bound and the range
        np.testing.assert_allclose(space.encode(space.render(z)), z, atol=1e-8)
        assert np.allclose(space.render(np.zeros((1, space.dim)))[0], source)
        big = space.render(30 * space.sample(rng, 4))
        assert np.all(space.distances(big) <= 1.0 + 1e-9)
        space.set_band(top / 4)
        assert np.all(space.sample(rng, 2)[:, ~space.active] == 0) and 0 < space.active.sum() < space.dim


def test_layer_energy_is_the_mean_square_of_the_layer():
    fields = {"model": "face", "layer": "conv2", "objective": "layer_energy"}
    neuron = DNNUnit(DNNSettings.model_validate(fields), 0)
    x = np.random.default_rng(1).random((3, 3, 48, 48))
    captured = {}
    handle = neuron.module.conv2.register_forward_hook(lambda m, i, o: captured.update(out=o.clone()))
    with torch.no_grad():
        neuron.module(torch.as_tensor(x, dtype=torch.float32))
    handle.remove()
    expected = captured["out"].pow(2).flatten(1).mean(1).numpy()
    np.testing.assert_allclose(neuron.activation(x), expected, rtol=1e-5)
    values, grads = neuron.gradient(x[:1])
    assert neuron.claim is None and neuron.response_unit == "energy" and np.abs(grads).sum() > 0
    for extra, message in (({"channel": 3}, "channel: not with objective layer_energy"),
                           ({"layer": None}, "layer: required with objective layer_energy")):
        with pytest.raises(ValueError, match=message):
            DNNSettings.model_validate({**fields, **extra})


def test_a_wrong_size_picture_is_resized_and_a_gray_one_made_colour(tmp_path):
    Image.fromarray((np.arange(30 * 50).reshape(30, 50) % 256).astype(np.uint8)).save(tmp_path / "gray.png")
    image = picture("gray.png", (3, 48, 48), str(tmp_path / "p.yaml"))
    assert image.shape == (3, 48, 48) and np.allclose(image[0], image[2]) and 0 <= image.min() <= image.max() <= 1
    assert fit_picture(np.ones((5, 9, 3)), (1, 8, 8)).shape == (1, 8, 8)


BAD = [
    ({"source": "missing.png"}, "source: unknown picture 'missing.png': neither a scikit-image picture"),
    ({"source": "broken.png"}, "cannot read"),
    ({"source": "sounds/speech-22k-stereo.wav", "neuron": RECORDING["neuron"], "offset": 9.0},
     "source: offset 9.0 s is past the end"),
    ({"source": "sounds/missing.wav", "neuron": RECORDING["neuron"]}, "source: no such file"),
    ({"source": "broken.png", "neuron": RECORDING["neuron"]}, "as a WAV file"),
    ({"source": "sounds/speech-22k-stereo.wav", "neuron": RECORDING["neuron"], "f_max": 9000}, "f_max: 9000"),
    ({"source": "sounds/speech-22k-stereo.wav", "neuron": RECORDING["neuron"], "max_frequency": 0.1},
     "max_frequency: for pictures"),
    ({"distance": 0}, "distance: Input should be greater than 0"),
    ({"f_min": 100}, "f_min: for recordings"),
    ({"octaves": 6}, "octaves: in the first of 6 octaves nothing up to 0.0156 cycles/pixel may change"),
    ({"max_frequency": 0.001}, "max_frequency: 0.001 cycles/pixel is below the lowest grating of a 48-pixel picture"),
    ({"distance": 1.5}, "distance: 1.5 is more than the unit's whole input range (0 to 1); at most 1"),
    ({"record_rendered": False}, "record_rendered: a dream logs every step as presented"),
    ({"optimizer": {"kind": "finite_difference"}}, "optimizer: finite_difference searches from its own starting point"),
]


@pytest.mark.parametrize("changes, message", BAD, ids=[m[:30] for _, m in BAD])
def test_bad_sources_are_refused_in_one_line(folder, capsys, changes, message):
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (folder / "bad.yaml").write_text(yaml.safe_dump({**PICTURE, **changes}))
    assert main(["run", str(folder / "bad.yaml"), "--out", str(folder / "bad.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and message in err, err
    assert not (folder / "bad.h5").exists()


def test_a_dream_without_an_optimizer_climbs_by_gradient_and_reads_beside_its_protocol(folder, monkeypatch):
    monkeypatch.chdir(folder)  # photo.png is in the working directory, but not beside the second protocol
    text = yaml.safe_dump({k: v for k, v in PICTURE.items() if k != "optimizer"})
    assert protocol_module.parse(text, str(folder / "default.yaml")).sections["optimizer"].cls.kind == "gradient_ascent"
    elsewhere = protocol_module.parse(text, str(folder / "elsewhere" / "p.yaml"))
    with pytest.raises(ProtocolError, match="source: unknown picture 'photo.png'"):
        elsewhere.experiment_cls(elsewhere)


@pytest.mark.parametrize("dataset", ["generations/octave", "stimuli/rendered"])
def test_a_damaged_dream_log_is_refused_in_one_line(tmp_path, capsys, dataset):
    log = tmp_path / "dream.h5"
    shutil.copy(ROOT / "tests" / "fixtures" / "logs" / "dream-picture.h5", log)
    with h5py.File(log, "a") as f:
        del f[dataset]
    assert main(["analyze", str(log)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "damaged run log: " in err and dataset in err, err


def test_each_octave_starts_from_the_best_stimulus_so_far_as_it_was_shown(folder):
    log = run(folder, PICTURE, "carry", optimizer={"kind": "cmaes", "popsize": 4}, steps=2)
    with open_run(log) as dream:
        generations, generation_of = dream.generations, dream.file["stimuli/generation"][()]
        first = int(np.nonzero(generation_of == generations["generation"][generations["octave"] == 1].min())[0][0])
        best = int(generations["best_stimulus"][generations["octave"] == 0].iloc[-1])
        np.testing.assert_array_equal(dream.rendered([first])[0], dream.rendered([best])[0])


@pytest.mark.parametrize("optimizer", [
    {"kind": "gradient_ascent", "blur_every": 1, "tv_weight": 1.0, "fourier_weight": 1.0},
    {"kind": "regularized", "blur_sigma": 1.0, "jitter": 1, "search": {"kind": "cmaes", "popsize": 4}},
], ids=["gradient_ascent", "regularized"])
def test_priors_act_on_the_change_so_step_0_is_the_source_itself(folder, optimizer):
    log = run(folder, PICTURE, f"priors-{optimizer['kind']}", optimizer=optimizer, octaves=1, steps=2)
    with open_run(log) as dream:
        space = protocol_module.load(folder / f"priors-{optimizer['kind']}.yaml")
        source = space.experiment_cls(space).space.source
        np.testing.assert_allclose(dream.rendered([0])[0], source, atol=1e-6)


def test_priors_for_images_are_refused_on_a_sound_in_one_line(folder, capsys):
    optimizer = {"kind": "regularized", "jitter": 3, "search": {"kind": "cmaes", "popsize": 4}}
    (folder / "sound-reg.yaml").write_text(yaml.safe_dump({**RECORDING, "optimizer": optimizer}))
    assert main(["run", str(folder / "sound-reg.yaml"), "--out", str(folder / "sound-reg.h5")]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "regularized: its blur and jitter act on images" in err, err


def test_a_truncated_recording_is_refused_and_a_24_bit_one_read(tmp_path):
    from closedloop.experiments.seeding import read_recording

    whole = (ROOT / "protocols" / "assets" / "quick-brown-fox.wav").read_bytes()
    (tmp_path / "cut.wav").write_bytes(whole[:60])
    with pytest.raises(ProtocolError, match="cannot read .* as a WAV file"):
        read_recording(tmp_path / "cut.wav", "source")
    samples = (0.5 * 2**23 * np.sin(np.arange(1600) / 10)).astype(np.int32)
    with wave.open(str(tmp_path / "i24.wav"), "wb") as out:
        out.setnchannels(1), out.setsampwidth(3), out.setframerate(16000)
        out.writeframes(b"".join(int(v).to_bytes(3, "little", signed=True) for v in samples))
    rate, read = read_recording(tmp_path / "i24.wav", "source")
    assert rate == 16000 and np.allclose(read, samples / 2**23, atol=1e-6)
