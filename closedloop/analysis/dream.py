"""Analysis of a dream run: the source turning into what the unit sees or hears, step by step.

Writes every step as a PNG (pictures) or chosen steps as WAVs with spectrograms (recordings), a
figure of the steps beside the unit's response and the distance from the source, and reports what
the unit and the independent judges say of the source and of the dream (the last step).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from closedloop.analysis.judging import judge_stimuli
from closedloop.analysis.plots import figure, imsave, save, show_image, subplots
from closedloop.errors import LogError

SHOWN = 7  # steps in the figure's strip, first and last included


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def analyze(run, out_dir) -> dict:
    generations = run.generations
    if generations.empty:
        return {"lines": [f"{run.path}: no step logged yet"]}
    out_dir = Path(out_dir)
    steps = np.asarray(run.best_per_generation())  # the stimulus of each step (the best, with a population)
    if "octave" not in generations:
        raise LogError(f"{run.path}: damaged run log: column '/generations/octave' of a dream is missing")
    if "rendered" not in run.file["stimuli"]:  # a dream's space is built around its source: no re-rendering
        raise LogError(f"{run.path}: damaged run log: dataset '/stimuli/rendered' of a dream is missing")
    stimuli = run.rendered(steps).astype(np.float64)
    source = run.rendered([0])[0].astype(np.float64)
    means = run.stimulus_means()["mean"]
    responses = means.loc[steps].to_numpy()
    bound = float(run.config["experiment"]["distance"])
    distances = np.sqrt(np.mean((stimuli - source).reshape(len(stimuli), -1) ** 2, axis=1))
    unit = run.response_unit
    numbers = {
        "status": run.status,
        "steps": int(len(steps)),
        "presentations": int(generations["presentations"].iloc[-1]),
        "source_response": float(means.loc[0]),
        "dream_response": float(responses[-1]),
        "best_response": float(generations["best"].iloc[-1]),
        "distance_bound": bound,
        "largest_distance": float(distances.max()),
        "dream_distance": float(distances[-1]),
        "response_per_step": responses.tolist(),
        "distance_per_step": distances.tolist(),
    }
    lines = [
        f"run: dream ({run.status}), {plural(len(steps), 'step')} in "
        f"{plural(int(generations['octave'].max()) + 1, 'octave')}, {plural(numbers['presentations'], 'presentation')}",
        f"the unit: {numbers['source_response']:.4g} {unit} for the source, {numbers['dream_response']:.4g} for the "
        f"dream (last step); best {numbers['best_response']:.4g}",
        f"distance from the source (RMS): {numbers['dream_distance']:.4g} at the last step, at most "
        f"{numbers['largest_distance']:.4g} (bound {bound:.4g})",
    ]
    judged, asked = {}, [("source", "the source", source), ("dream", "the dream (last step)", stimuli[-1])]
    if run.modality == "audio":  # a change of a sound is a sound: what did the unit add?
        asked.append(("added", "what the dream added, alone", stimuli[-1] - source))
    for name, what, stimulus in asked:
        verdicts, judge_lines = judge_stimuli(run, stimulus[None], what)
        if verdicts:
            judged[name] = verdicts
        lines += judge_lines
    if judged:
        numbers["judges"] = judged
    elif run.claim is None:
        lines.append("judges: none; the unit claims no category (a layer, or a unit that names nothing)")
    if run.modality == "audio":
        lines += _sounds(run, out_dir, source, stimuli, responses, numbers)
    else:
        lines += _pictures(run, out_dir, source, stimuli, responses, numbers)
    numbers["figure"] = save(_figure(run, generations, source, stimuli, responses, distances, bound),
                             out_dir / "dream.png")
    lines += [f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def chosen_steps(n: int, count: int = SHOWN) -> list[int]:
    return np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int)).tolist()


# --- pictures --------------------------------------------------------------------------------

def as_rgb(image: np.ndarray, value_range) -> np.ndarray:
    """A stimulus as an (H, W, 3) picture in [0, 1]: in the unit's range, or luminance deviations
    shown symmetrically around gray."""
    image = np.asarray(image, dtype=np.float64)
    if image.ndim == 3:
        image = np.moveaxis(image, 0, -1)
    if value_range is not None:
        lo, hi = value_range
        image = (image - lo) / (hi - lo)
    else:
        limit = float(np.abs(image).max()) or 1.0
        image = 0.5 + 0.5 * image / limit
    if image.ndim == 2 or image.shape[-1] == 1:
        image = np.repeat(image.reshape(*image.shape[:2], 1), 3, axis=-1)
    return np.clip(image, 0.0, 1.0)


def _pictures(run, out_dir, source, stimuli, responses, numbers) -> list[str]:
    folder = out_dir / "steps"
    folder.mkdir(parents=True, exist_ok=True)
    value_range = run.config["space"].get("value_range")
    scale = max(1, 192 // source.shape[-1])  # each pixel drawn scale x scale, so a small image can be seen
    for k, stimulus in enumerate(stimuli):
        picture = np.kron(as_rgb(stimulus, value_range), np.ones((scale, scale, 1)))
        imsave(folder / f"step_{k:03d}.png", picture)
    numbers["steps_folder"] = str(folder)
    return [f"every step as a picture ({scale}x{scale} pixels per stimulus pixel): {folder}/step_*.png"]


# --- recordings ------------------------------------------------------------------------------

def _sounds(run, out_dir, source, stimuli, responses, numbers) -> list[str]:
    from closedloop.analysis.audio import describe_sound, show_spectrogram, write_wav

    folder = out_dir / "sounds"
    folder.mkdir(parents=True, exist_ok=True)
    rate = run.sample_rate
    picks = chosen_steps(len(stimuli))
    change = stimuli[-1] - source
    # label -> WAV, in listening order (the HTML report plays them)
    sounds = numbers["sounds"] = {"the recording": write_wav(folder / "source.wav", source, rate)}
    for k in picks[1:-1]:
        sounds[f"step {k}"] = write_wav(folder / f"step_{k:03d}.wav", stimuli[k], rate)
    sounds["the dream (last step)"] = write_wav(folder / "dream.wav", stimuli[-1], rate)
    sounds["what the dream added (alone, louder)"] = write_wav(folder / "change.wav", change, rate)
    fig, axes = subplots(1, len(picks), figsize=(2.6 * len(picks), 2.6), squeeze=False)
    for ax, k in zip(axes[0], picks):
        show_spectrogram(ax, stimuli[k], rate, f"step {k}: {responses[k]:.3g}")
    fig.tight_layout()
    numbers["figures"] = [save(fig, folder / "steps.png")]
    level = 20 * np.log10(np.sqrt(np.mean(change**2)) / max(np.sqrt(np.mean(source**2)), 1e-12) + 1e-12)
    numbers["change_db"] = float(level)
    numbers["source_sound"] = describe_sound(source, rate)
    numbers["dream_sound"] = describe_sound(stimuli[-1], rate)
    return [
        f"the change at the last step is {level:.1f} dB relative to the recording (RMS)",
        f"listen: {sounds['the recording']}, then {folder}/step_*.wav (steps {', '.join(map(str, picks[1:-1]))}), "
        f"then {folder / 'dream.wav'}; what the dream added, alone: {folder / 'change.wav'}; spectrograms "
        f"{numbers['figures'][0]}",
    ]


# --- the figure ------------------------------------------------------------------------------

def _figure(run, generations, source, stimuli, responses, distances, bound):
    picks = chosen_steps(len(stimuli))
    audio = run.modality == "audio"
    columns = len(picks) + 1  # and the change
    fig = figure(figsize=(max(2.0 * columns, 8.0), 5.2 if audio else 4.8))
    grid = fig.add_gridspec(2, columns, height_ratios=[1.1, 1])
    if audio:
        from closedloop.analysis.audio import show_spectrogram

        for c, k in enumerate(picks):
            show_spectrogram(fig.add_subplot(grid[0, c]), stimuli[k], run.sample_rate,
                             f"{'the recording' if k == 0 else f'step {k}'}: {responses[k]:.3g}")
        show_spectrogram(fig.add_subplot(grid[0, -1]), stimuli[-1] - source, run.sample_rate, "what it added")
    else:
        value_range = run.config["space"].get("value_range")
        for c, k in enumerate(picks):
            show_image(fig.add_subplot(grid[0, c]), as_rgb(stimuli[k], value_range),
                       f"{'source' if k == 0 else f'step {k}'}\n{responses[k]:.3g}")
        change = stimuli[-1] - source
        limit = float(np.abs(change).max()) or 1.0
        show_image(fig.add_subplot(grid[0, -1]), as_rgb(change, None), f"what it added\n(x{0.5 / limit:.1f}, around gray)")
    half = columns // 2
    ax = fig.add_subplot(grid[1, :half])
    ax.plot(np.arange(len(responses)), responses, ".-", ms=3)
    for start in np.nonzero(np.diff(generations["octave"].to_numpy()))[0] + 1:
        ax.axvline(start - 0.5, color="0.7", lw=0.8)
    ax.set_xlabel("step")
    ax.set_ylabel(f"response ({run.response_unit})")
    ax = fig.add_subplot(grid[1, half:])
    ax.plot(np.arange(len(distances)), distances, ".-", ms=3, color="C1")
    ax.axhline(bound, color="k", ls="--", lw=1, label="bound")
    ax.set_xlabel("step")
    ax.set_ylabel("RMS distance from the source")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
