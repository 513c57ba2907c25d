"""Analysis of an evolve run: best response, presentations, receptive-field recovery, figure."""

from __future__ import annotations

import numpy as np

from closedloop.analysis.plots import correlation, figure, save, show_image, subplots


def analyze(run, out_dir) -> dict:
    generations, unit = run.generations, run.response_unit
    if generations.empty:
        return {"lines": [f"{run.path}: no generation logged yet"]}
    last = generations.iloc[-1]
    best_index = int(last["best_stimulus"])
    first_hit = generations.index[generations["best_stimulus"] == best_index][0]
    numbers = {
        "status": run.status,
        "generations": int(len(generations)),
        "presentations": int(last["presentations"]),
        "best_response": float(last["best"]),
        "presentations_to_best": int(generations.loc[first_hit, "presentations"]),
    }
    rf = run.receptive_field
    per_generation = run.best_per_generation()
    images = run.rendered(per_generation) if run.modality == "image" else None
    if rf is not None and images is not None:
        numbers["rf_correlation"] = correlation(run.rendered([best_index])[0], rf)
        numbers["rf_correlation_per_generation"] = [correlation(image, rf) for image in images]
    numbers["figure"] = str(out_dir / "evolve.png")
    audio_lines = []
    if run.modality == "audio":  # WAVs, spectrograms and measures that do not ask the network
        from closedloop.analysis.audio import analyze_sounds

        audio_lines = analyze_sounds(run, out_dir, best_index, per_generation, numbers)
    _figure(run, generations, rf, images, per_generation, numbers["figure"])
    lines = [
        f"run: {run.kind} ({numbers['status']}), {numbers['generations']} generations, "
        f"{numbers['presentations']} presentations",
        f"best response: {numbers['best_response']:.3g} {unit} per presentation "
        f"(first reached after {numbers['presentations_to_best']} presentations)",
    ]
    clean = run.trials["clean"].to_numpy()
    if np.isfinite(clean).any():  # the neuron knows its noise-free response (network units, LNP)
        numbers["best_clean_response"] = float(np.nanmax(clean))
        lines.append(f"best clean (noise-free) response: {numbers['best_clean_response']:.6g}")
    optimum = run.optimum()
    if optimum is not None and optimum["retested"]:
        numbers["retest_best_response"] = optimum["response"]
        numbers["retest_best_stimulus"] = optimum["stimulus"]
        numbers["retest_sem"] = optimum["sem"]
        lines.append(f"re-test of the top {optimum['candidates']} stimuli ({optimum['repeats']} repeats each): best "
                     f"{optimum['response']:.3g} ± {optimum['sem']:.2g} {unit} (mean ± s.e.m.)")
    judged, judge_lines = _judge_best(run)
    if judged:
        numbers["judges"] = judged
        lines += judge_lines
    if "rf_correlation" in numbers:
        lines.append(f"correlation of the best stimulus with the true receptive field: {numbers['rf_correlation']:.3f}")
    lines += audio_lines + [f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _judge_best(run, top: int = 8) -> tuple[dict, list[str]]:
    """Independent judges' verdicts on the `top` stimuli with the highest mean response."""
    from closedloop.analysis.judging import judge_stimuli

    if run.claim is None:
        return {}, []
    means = run.stimulus_means()["mean"].sort_values(ascending=False, kind="stable")
    best = means.index[:top].to_numpy()  # the best first
    return judge_stimuli(run, run.rendered(best), f"best stimuli (top {len(best)} by mean response)",
                         best_first=True)


def _figure(run, generations, rf, images, per_generation, path):
    """The best stimulus of chosen generations above the search's progress (for images; the
    sounds have their own spectrograms)."""
    shown = min(8, len(per_generation)) if images is not None else 0
    picks = np.unique(np.linspace(0, len(per_generation) - 1, shown).round().astype(int)) if shown else []
    pictures = len(picks) + (rf is not None)
    columns = max(pictures, 3)
    if pictures:
        fig = figure(figsize=(1.4 * columns, 4.2))
        grid = fig.add_gridspec(2, columns, height_ratios=[1, 1.4])
        ax = fig.add_subplot(grid[1, :])
    else:
        fig, ax = subplots(figsize=(6, 3))
    col = 0
    if rf is not None:
        show_image(fig.add_subplot(grid[0, 0]), rf, "true receptive field")
        col = 1
    for k, g in enumerate(picks):
        show_image(fig.add_subplot(grid[0, col + k]), images[g], f"best of gen {g}")
    ax.plot(generations["generation"], generations["best"], label="best so far")
    ax.plot(generations["generation"], generations["max"], ".", alpha=0.5, label="best of generation")
    ax.plot(generations["generation"], generations["mean"], label="generation mean")
    ax.set_xlabel("generation")
    ax.set_ylabel(f"{run.response_unit} per presentation")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.legend(fontsize=8)
    save(fig, path)
