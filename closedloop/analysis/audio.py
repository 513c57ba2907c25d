"""Sounds of an audio run: WAV files, spectrograms, and measures that do not ask the network.

`analyze_sounds` (called by the evolve analysis when run.modality == "audio") writes the best
sound of the run and the best sound of chosen generations as 16-bit WAV files (peak at -1 dBFS,
faded in and out) with a spectrogram PNG each, and reports an independent pitch estimate (YIN,
de Cheveigne & Kawahara 2002, written here), the periodicity / harmonics-to-noise ratio and the
spectral flatness of the best sound.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from scipy.io import wavfile
from scipy.signal import spectrogram, welch

from closedloop.analysis.plots import save, subplots
from closedloop.errors import LogError

PEAK_DBFS = -1.0
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


# --- listening -------------------------------------------------------------------------------

def for_listening(wave: np.ndarray, sample_rate: int, fade: float = 0.005, peak_dbfs: float = PEAK_DBFS) -> np.ndarray:
    """No DC, raised-cosine fade in/out (no clicks), peak exactly at `peak_dbfs` (silence stays silent)."""
    wave = np.asarray(wave, dtype=np.float64).ravel()
    wave = wave - wave.mean()
    n_fade = min(int(round(fade * sample_rate)), len(wave) // 2)
    if n_fade > 0:
        ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n_fade) / n_fade)
        wave[:n_fade] *= ramp
        wave[len(wave) - n_fade:] *= ramp[::-1]
    top = np.abs(wave).max() if len(wave) else 0.0
    return wave * (10 ** (peak_dbfs / 20) / top) if top > 0 else wave


def write_wav(path, wave: np.ndarray, sample_rate: int) -> str:
    """16-bit PCM mono WAV, prepared by `for_listening`."""
    pcm = np.round(for_listening(wave, sample_rate) * 32767).astype(np.int16)
    wavfile.write(str(path), int(sample_rate), pcm)
    return str(path)


def read_wav(path) -> tuple[int, np.ndarray]:
    """(sample rate, float waveform in [-1, 1])."""
    rate, data = wavfile.read(str(path))
    if data.dtype == np.int16:
        data = data / 32768.0
    return int(rate), np.asarray(data, dtype=np.float64)


def show_spectrogram(ax, wave, sample_rate, title=None, f_max=None, target=None, floor_db=80.0):
    """Power in dB re the loudest bin of the sound (0 to -floor_db), up to f_max Hz (default: a
    little above the highest frequency within floor_db of the peak); `target` (Hz) is drawn as a
    dashed line. Returns the mesh, for a colour bar."""
    frequencies, times, power = spectrogram(np.asarray(wave, dtype=np.float64), fs=sample_rate, nperseg=512,
                                            noverlap=448, scaling="spectrum")
    level = 10 * np.log10(power + 1e-20)
    level -= level.max()
    if f_max is None:
        f_max = band_top(frequencies, level, floor_db)
    keep = frequencies <= f_max
    mesh = ax.pcolormesh(times, frequencies[keep], level[keep], vmin=-floor_db, vmax=0, shading="auto", cmap="magma")
    if target:
        from matplotlib import patheffects

        ax.axhline(target, color="w", lw=0.9, ls="--")
        ax.annotate(f"target {target:.4g} Hz", (times[0], target), xytext=(2, 3), textcoords="offset points",
                    color="w", fontsize=7, path_effects=[patheffects.withStroke(linewidth=2, foreground="k")])
    ax.set_ylim(0, frequencies[keep].max())
    ax.set_xlabel("time (s)", fontsize=8)
    ax.set_ylabel("frequency (Hz)", fontsize=8)
    ax.tick_params(labelsize=7)
    if title:
        ax.set_title(title, fontsize=8)
    return mesh


def band_top(frequencies, level, floor_db=80.0) -> float:
    """A round frequency a little above the highest one that comes within floor_db of the peak."""
    loud = frequencies[(level > -floor_db).any(axis=1)]
    top = float(loud.max()) if len(loud) else float(frequencies.max())
    step = 500.0 if top > 1000 else 100.0
    return min(float(frequencies.max()), step * np.ceil(top * 1.05 / step))


def colour_bar(fig, mesh, axes):
    bar = fig.colorbar(mesh, ax=axes, shrink=0.9, pad=0.02)
    bar.set_label("power (dB re the loudest bin)", fontsize=8)
    bar.ax.tick_params(labelsize=7)
    return bar


def spectrogram_png(path, wave, sample_rate, title=None, target=None) -> str:
    fig, ax = subplots(figsize=(5.6, 3), layout="constrained")
    colour_bar(fig, show_spectrogram(ax, wave, sample_rate, title, target=target), ax)
    return save(fig, path)


# --- independent measures --------------------------------------------------------------------

def yin(wave: np.ndarray, sample_rate: int, f_min: float = 50.0, f_max: float = 2000.0, frame: float = 0.04,
        hop: float = 0.01, threshold: float = 0.15) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame f0 (Hz; NaN where unvoiced) and aperiodicity (the minimum of YIN's cumulative mean
    normalised difference: 0 for a perfectly periodic frame, about 1 for noise)."""
    wave = np.asarray(wave, dtype=np.float64).ravel()
    window = int(round(frame * sample_rate))
    lag_max = int(np.ceil(sample_rate / f_min))
    lag_min = max(2, int(np.floor(sample_rate / f_max)))
    step = max(1, int(round(hop * sample_rate)))
    span = window + lag_max
    if len(wave) < span + 1:
        raise ValueError(f"sound too short for YIN down to {f_min} Hz: {len(wave)} samples, need {span + 1}")
    starts = np.arange(0, len(wave) - span, step)
    frames = np.stack([wave[s:s + span] for s in starts])
    # difference d(tau) = sum_j (x_j - x_{j+tau})^2 over j < window, from energies and a correlation
    size = 1 << int(np.ceil(np.log2(2 * span)))
    head = np.fft.rfft(frames[:, :window], size)
    whole = np.fft.rfft(frames, size)
    correlation = np.fft.irfft(np.conj(head) * whole, size)[:, :lag_max + 1]
    energy = np.concatenate([np.zeros((len(frames), 1)), np.cumsum(frames**2, axis=1)], axis=1)
    lags = np.arange(lag_max + 1)
    shifted = energy[:, lags + window] - energy[:, lags]
    difference = np.maximum(energy[:, [window]] + shifted - 2 * correlation, 0)
    cumulative = np.cumsum(difference[:, 1:], axis=1)
    normalised = np.ones_like(difference)
    normalised[:, 1:] = difference[:, 1:] * lags[1:] / np.maximum(cumulative, 1e-12)
    f0 = np.full(len(frames), np.nan)
    aperiodicity = np.ones(len(frames))
    for i, row in enumerate(normalised):
        search = row[lag_min:lag_max]
        if not np.isfinite(search).all() or energy[i, window] <= 1e-12:
            continue
        below = np.nonzero(search < threshold)[0]
        if len(below):
            tau = below[0]
            while tau + 1 < len(search) and search[tau + 1] < search[tau]:
                tau += 1  # walk down to the local minimum of the first dip below threshold
        else:
            tau = int(np.argmin(search))
        tau += lag_min
        aperiodicity[i] = row[tau]
        if row[tau] < threshold:
            f0[i] = sample_rate / _parabolic(row, tau)
    return f0, aperiodicity


def _parabolic(values: np.ndarray, i: int) -> float:
    if i <= 0 or i >= len(values) - 1:
        return float(i)
    a, b, c = values[i - 1], values[i], values[i + 1]
    denominator = a - 2 * b + c
    return float(i + 0.5 * (a - c) / denominator) if denominator > 0 else float(i)


def estimate_pitch(wave, sample_rate, f_min=50.0, f_max=2000.0) -> dict:
    """Median YIN f0 over voiced frames of the loud part of a sound, with its voiced fraction and
    periodicity (1 - median aperiodicity) and harmonics-to-noise ratio in dB."""
    f0, aperiodicity = yin(wave, sample_rate, f_min, f_max)
    voiced = np.isfinite(f0)
    periodicity = float(np.clip(1 - np.median(aperiodicity), 1e-6, 1 - 1e-6))
    return {
        "f0": float(np.median(f0[voiced])) if voiced.any() else float("nan"),
        "voiced_fraction": float(voiced.mean()),
        "periodicity": periodicity,
        "hnr_db": float(10 * np.log10(periodicity / (1 - periodicity))),
    }


def spectral_flatness(wave, sample_rate, band=(60.0, 4000.0)) -> float:
    """Geometric over arithmetic mean of the power spectrum within `band` (the spaces' default
    band, so an empty octave above it does not count): ~1 for white noise, ~0 for a tone."""
    frequencies, power = welch(np.asarray(wave, dtype=np.float64), fs=sample_rate, nperseg=min(1024, len(wave)))
    power = power[(frequencies >= band[0]) & (frequencies <= band[1])] + 1e-20
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


def note_name(frequency: float) -> str:
    """Nearest equal-tempered note (A4 = 440 Hz) and the offset in cents, e.g. 'A4 +3 cents'."""
    if not np.isfinite(frequency) or frequency <= 0:
        return "unpitched"
    midi = 69 + 12 * np.log2(frequency / 440.0)
    nearest = int(round(midi))
    cents = 100 * (midi - nearest)
    return f"{NOTE_NAMES[nearest % 12]}{nearest // 12 - 1} {cents:+.0f} cents"


def describe_sound(wave, sample_rate) -> dict:
    pitch = estimate_pitch(wave, sample_rate)
    return {**pitch, "note": note_name(pitch["f0"]), "spectral_flatness": spectral_flatness(wave, sample_rate)}


# --- the hook called by the evolve analysis -----------------------------------------------------

def chosen_generations(n_generations: int, count: int = 5) -> list[int]:
    return np.unique(np.linspace(0, n_generations - 1, min(count, n_generations)).round().astype(int)).tolist()


def target_frequency(run) -> float | None:
    """The frequency the unit is said to prefer: a pitch unit's claim, or an auditory cell's best
    frequency (Hz); None when the unit names none."""
    claim = run.claim
    if claim is not None and claim[0] == "pitch" and claim[1]:
        return float(claim[1])
    front_end = run.config.get("neuron", {}).get("front_end", {})
    best = front_end.get("best_frequency") if isinstance(front_end, dict) else None
    return float(best) if isinstance(best, (int, float)) else None


def analyze_sounds(run, out_dir, best_index: int, per_generation: list[int], numbers: dict,
                   generations=None) -> list[str]:
    """Write WAVs and spectrograms into out_dir/sounds; add the numbers, the figures and the
    sounds (label -> WAV, for the report's players); return lines to print."""
    out = Path(out_dir) / "sounds"
    rate, target = run.sample_rate, target_frequency(run)
    picks = chosen_generations(len(per_generation)) if generations is None else list(generations)
    waves = run.rendered([best_index] + [per_generation[g] for g in picks])
    if waves is None:
        raise LogError(f"{run.path}: the log keeps no waveforms, and its protocol cannot build the space that would "
                       f"render them again")
    waves = waves.astype(np.float64)
    out.mkdir(parents=True, exist_ok=True)
    best = waves[0]
    sounds = numbers.setdefault("sounds", {})
    figures = numbers.setdefault("figures", [])
    sounds["best sound of the run"] = write_wav(out / "best.wav", best, rate)
    figures.append(spectrogram_png(out / "best.png", best, rate, "best sound of the run", target))
    for g, wave in zip(picks, waves[1:]):
        sounds[f"best of generation {g}"] = write_wav(out / f"generation_{g:03d}.wav", wave, rate)
    figures.append(_spectrogram_strip(out / "generations.png", picks, waves[1:], rate, target))
    numbers["sound"] = describe_sound(best, rate)
    numbers["sound_per_generation"] = {g: describe_sound(w, rate) for g, w in zip(picks, waves[1:])}
    if target:
        numbers["target_frequency"] = target
        numbers.setdefault("units", {})["target_frequency"] = "Hz"
    sound = numbers["sound"]
    pitch = (f"{sound['f0']:.1f} Hz ({sound['note']})" if np.isfinite(sound["f0"]) else "none (unvoiced)")
    truth = _against_optimum(run, out, best, numbers, target)
    return truth + [
        f"best sound: {sounds['best sound of the run']} (spectrogram {out / 'best.png'})",
        f"independent measures of the best sound: YIN pitch {pitch}, voiced {sound['voiced_fraction']:.0%} of "
        f"frames, HNR {sound['hnr_db']:.1f} dB, spectral flatness {sound['spectral_flatness']:.2g} (1 = white noise, 0 = pure tone)",
        f"best sounds of generations {', '.join(map(str, picks))}: {out}/generation_*.wav "
        f"(spectrograms {out / 'generations.png'})",
    ]


def power_spectrogram(wave, sample_rate, window=256):
    _, _, power = spectrogram(np.asarray(wave, dtype=np.float64), fs=sample_rate, nperseg=window,
                              noverlap=window // 2)
    return power


def _against_optimum(run, out, best, numbers, target=None) -> list[str]:
    """For a cell whose optimal sound is known (the STRF cell logs it): write it as a WAV too, and
    correlate the power spectrograms of the best and the optimal sound."""
    known = run.ground_truth()
    if "optimal_stimulus" not in known:
        return []
    optimum = np.asarray(known["optimal_stimulus"], dtype=np.float64).ravel()
    if optimum.shape != best.shape:
        return []
    rate = run.sample_rate
    numbers["sounds"]["the cell's optimal sound (ground truth)"] = write_wav(out / "optimal.wav", optimum, rate)
    numbers["figures"].append(spectrogram_png(out / "optimal.png", optimum, rate,
                                              "the cell's optimal sound (ground truth)", target))
    a, b = power_spectrogram(best, rate).ravel(), power_spectrogram(optimum, rate).ravel()
    a, b = a - a.mean(), b - b.mean()
    numbers["spectrogram_correlation"] = float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))
    return [f"the cell's optimal sound: {out / 'optimal.wav'}; correlation of the power spectrograms of "
            f"the best and the optimal sound: {numbers['spectrogram_correlation']:.3f}"]


def _spectrogram_strip(path, picks, waves, rate, target=None):
    fig, axes = subplots(1, len(picks), figsize=(2.5 * len(picks) + 1.2, 2.7), squeeze=False,
                             layout="constrained")
    frequencies, _, power = spectrogram(np.concatenate(waves), fs=rate, nperseg=512, noverlap=448)
    f_max = band_top(frequencies, 10 * np.log10(power + 1e-20) - 10 * np.log10(power.max() + 1e-20))
    mesh = None
    for ax, g, wave in zip(axes[0], picks, waves):
        mesh = show_spectrogram(ax, wave, rate, f"best of generation {g}", f_max=f_max, target=target)
    colour_bar(fig, mesh, axes[0].tolist())
    return save(fig, path)
