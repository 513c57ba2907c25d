"""The instrument space: harmonic tones under a smooth spectral envelope, heard by the note unit
and by the pitch judge."""

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from closedloop import zoo
from closedloop.errors import ProtocolError
from closedloop.judges.pitch import PitchJudge
from closedloop.protocol import parse
from closedloop.registry import lookup
from closedloop.spaces.audio import SAMPLE_RATE
from closedloop.spaces.instrument import DB_PER_OCTAVE


def build(seed=0, **settings):
    cls = lookup("space", "instrument")
    return cls(cls.Config(**settings), seed)


def latent(space, f0, tilt=-6.0, gain_db=0.0, centre=1000.0, bandwidth=400.0):
    """The latent of one tone with these parameters (every latent maps through the normal CDF)."""
    c = space.config

    def log_unit(value, low, high):
        return ndtri(np.log(value / low) / np.log(high / low))

    blocks = [np.full(c.pitch_points, log_unit(f0, c.f_min, c.f0_max)),
              [ndtri((tilt - c.tilt_min) / (c.tilt_max - c.tilt_min))],
              np.full(c.resonances, log_unit(centre, c.centre_min, c.centre_max)),
              np.full(c.resonances, log_unit(bandwidth, c.bandwidth_min, c.bandwidth_max)),
              np.full(c.resonances, ndtri(gain_db / c.gain_max) if gain_db > 0 else -8.0),
              np.full(c.envelope_points, 8.0)]
    return np.concatenate([np.asarray(b, dtype=np.float64) for b in blocks])[None]


def harmonic_levels(wave, f0, harmonics):
    """Magnitude of the wave's spectrum at each of the first harmonics of f0 (Hann window)."""
    spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)), 16 * len(wave)))
    bins = np.round(np.arange(1, harmonics + 1) * f0 * 16 * len(wave) / SAMPLE_RATE).astype(int)
    return np.array([spectrum[b - 8:b + 9].max() for b in bins])


def test_prior_draws_are_harmonic_tones_at_their_f0(rng):
    space = build(envelope_points=1)
    assert space.dim == 1 + 1 + 3 * 2 + 1
    z = space.sample(rng, 40)
    params = space.parameters(z)
    waves = space.render(z)
    judge = PitchJudge()
    heard = 0
    for wave, f0 in zip(waves, params["f0"][:, 0]):
        assert 60 <= f0 <= 1000
        verdict = judge.judge(wave[None], f0, SAMPLE_RATE)[0]
        heard += verdict.accepted and abs(verdict.score) < 15
        # all power lies on the harmonics of f0 (within a Hann window's main lobe, 8 Hz for 0.5 s)
        spectrum = np.abs(np.fft.rfft(wave * np.hanning(len(wave)))) ** 2
        freqs = np.fft.rfftfreq(len(wave), 1 / SAMPLE_RATE)
        near = np.abs(freqs / f0 - np.round(freqs / f0)) * f0 < 8
        assert spectrum[near].sum() > 0.99 * spectrum.sum()
    # YIN hears the f0 unless a resonance leaves nearly all the power in one upper harmonic (2 of 40 here)
    assert heard >= 36


def test_spectrum_follows_the_tilt_and_the_resonance():
    space = build(envelope_points=1, resonances=1, fade=0.002, bandwidth_min=80.0, gain_max=30.0)
    flat = space.render(latent(space, 200.0, tilt=-6.0))[0]
    levels = harmonic_levels(flat, 200.0, 10)
    # no resonance gain: harmonic k is k^(tilt/6.02), a smooth decay, as the parameters say
    expected = np.arange(1, 11) ** (-6.0 / DB_PER_OCTAVE)
    assert np.allclose(levels / levels[0], expected, rtol=0.03)
    assert np.allclose(space.parameters(latent(space, 200.0, tilt=-6.0))["amplitudes"][0, :10], expected, rtol=1e-6)
    # a 24 dB resonance at 1400 Hz makes harmonic 7 the loudest, its neighbours next: no jagged spectrum
    bump = harmonic_levels(space.render(latent(space, 200.0, tilt=-6.0, gain_db=24.0, centre=1400.0,
                                               bandwidth=200.0))[0], 200.0, 12)
    assert bump.argmax() == 6
    assert bump[5] > bump[2] and bump[7] > bump[10] and bump[7] < bump[6]


def test_default_resonances_rarely_leave_one_upper_harmonic_alone():
    """Narrow, high resonances can put most of a tone's power in one harmonic (YIN may then hear
    that harmonic's pitch); the defaults (250 Hz wide at least, 20 dB high at most) make that rare."""

    def lonely(space):
        params = space.parameters(space.sample(np.random.default_rng(0), 4000))
        power = params["amplitudes"] ** 2
        share = (power / power.sum(axis=1, keepdims=True))[:, 1:].max(axis=1)
        near_c4 = (params["f0"][:, 0] > 200) & (params["f0"][:, 0] < 330)
        return (share[near_c4] > 0.6).mean()

    assert lonely(build()) < 0.03
    assert lonely(build(bandwidth_min=80.0, gain_max=30.0)) > 0.06


def test_vibrato_swings_the_pitch_either_side_of_f0():
    from scipy.signal import hilbert

    space = build(envelope_points=1, resonances=0, tilt_min=-60.0, tilt_max=-59.0, vibrato=50.0, vibrato_rate=5.0)
    wave = space.render(latent(space, 400.0, tilt=-59.5))[0]  # a sine: harmonic 2 is 60 dB down
    frequency = np.diff(np.unwrap(np.angle(hilbert(wave)))) * SAMPLE_RATE / (2 * np.pi)
    middle = np.convolve(frequency, np.ones(160) / 160, mode="same")[800:-800]  # 10 ms means, ends dropped
    cents = 1200 * np.log2(middle / 400.0)
    assert 45 < cents.max() < 51 and -51 < cents.min() < -45
    assert abs(np.median(cents)) < 10
    assert PitchJudge().judge(wave[None], 400.0, SAMPLE_RATE)[0].accepted


def test_render_torch_equals_render_and_has_a_gradient(rng):
    space = build(pitch_points=3, envelope_points=2, vibrato=20.0)
    z = space.sample(rng, 4)
    tensor = torch.tensor(z, requires_grad=True)
    waves = space.render_torch(tensor)
    assert np.abs(waves.detach().numpy() - space.render(z)).max() < 1e-9
    waves.pow(2).mean().backward()
    assert torch.isfinite(tensor.grad).all() and tensor.grad.abs().sum() > 0


def test_bad_settings_are_refused_in_one_line():
    with pytest.raises(ValueError, match=r"tilt_min \(0.0\) must not be above tilt_max \(-6.0\)"):
        build(tilt_min=0.0, tilt_max=-6.0)
    with pytest.raises(ValueError, match="f0_max"):
        build(f_min=300.0, f0_max=200.0)
    with pytest.raises(ProtocolError, match="space.resonance: unknown field; did you mean 'resonances'") as error:
        parse("kind: evolve\nneuron: {kind: spiking}\nspace: {kind: instrument, resonance: 3}\n"
              "optimizer: {kind: cmaes}\n")
    assert "\n" not in str(error.value)
    with pytest.raises(ProtocolError, match="bandwidth_min") as error:
        parse("kind: evolve\nneuron: {kind: spiking}\nspace: {kind: instrument, bandwidth_min: 2000}\n"
              "optimizer: {kind: cmaes}\n")
    assert "\n" not in str(error.value)


def test_the_note_unit_and_the_judge_hear_a_c4_instrument_tone():
    space = build()
    notes = {"C4": 261.63, "C2": 65.41, "G3": 196.0}
    waves = space.render(np.concatenate([latent(space, f0, tilt=-9.0, gain_db=12.0, centre=800.0)
                                         for f0 in notes.values()]))
    model = zoo.load("note")
    with torch.no_grad():
        out = model.module(torch.from_numpy(waves.astype(np.float32)))[:, :88].mean(2).numpy()
    c4 = model.unit("C4").channel
    assert out[0].argmax() == c4 and out[0, c4] > 0.5
    assert out[1, c4] < 0.3 and out[2, c4] < 0.3
    verdicts = PitchJudge().judge(waves, 261.63, SAMPLE_RATE)
    assert [v.accepted for v in verdicts] == [True, False, False]
