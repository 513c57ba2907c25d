"""Analysis of a reverse-correlation run: spike-triggered average (and covariance), beside the
true receptive field, and their correlation as a function of the number of presentations."""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from closedloop.analysis.plots import correlation, save, show_image, subplots
from closedloop.stimuli import noise_amplitude


def stimulus_response(run):
    """Noise stimuli (n, ...) and their responses (n,) averaged over repeats, in presentation order."""
    trials = run.trials
    means = trials.groupby("stimulus", sort=False)["response"].mean()
    stimuli = run.rendered(means.index.to_numpy())
    return stimuli, means.to_numpy()


def spike_triggered_average(stimuli, responses):
    """Response-weighted mean stimulus, relative to the mean stimulus (so biases of the sample cancel)."""
    flat = stimuli.reshape(len(stimuli), -1)
    weights = responses - responses.mean()
    total = responses.sum()
    return (weights @ (flat - flat.mean(axis=0)) / (total if total > 0 else len(responses))).reshape(stimuli.shape[1:])


def whiten(sta, amplitude, regularization=1e-2):
    """Undo the noise's colouring: STA ~ C k, and C is diagonal in Fourier space with power A^2."""
    if amplitude is None:
        return sta
    power = amplitude**2
    axes = (-1,) if sta.ndim == 1 else (-2, -1)
    size = sta.shape if sta.ndim == 1 else sta.shape[-2:]
    spectrum = np.fft.rfftn(sta, axes=axes)
    return np.fft.irfftn(spectrum * power / (power**2 + regularization * power.max() ** 2), s=size, axes=axes)


def spike_triggered_covariance(stimuli, responses, rng, count=2):
    """Eigenvectors of the response-weighted stimulus covariance minus the raw covariance, whose
    eigenvalues differ most from zero (the filters of an energy, or complex, cell), kept only
    when they stand out of the sampling noise: 10% beyond the largest eigenvalue that the same
    stimuli give in five shuffles of the responses."""
    flat = stimuli.reshape(len(stimuli), -1)
    flat = flat - flat.mean(axis=0)
    if responses.sum() <= 0:
        return np.zeros((0, *stimuli.shape[1:])), np.zeros(0)
    prior = flat.T @ flat / len(flat)

    def difference(weights):
        sta = weights @ flat / weights.sum()
        return (flat * weights[:, None]).T @ flat / weights.sum() - np.outer(sta, sta) - prior

    # small matrices: one BLAS thread is faster, and much faster on a busy machine
    with threadpool_limits(1):
        values, vectors = np.linalg.eigh(difference(responses))
        order = np.argsort(-np.abs(values))
        values, vectors = values[order], vectors[:, order]
        noise_level = max(np.abs(np.linalg.eigvalsh(difference(rng.permutation(responses)))).max() for _ in range(5))
    keep = [k for k in range(count) if abs(values[k]) > 1.1 * noise_level]
    return vectors[:, keep].T.reshape(len(keep), *stimuli.shape[1:]), values[keep]


def subspace_correlation(vectors, field):
    """Length of the unit-norm field's projection onto the span of the (orthonormal) vectors."""
    field = np.asarray(field, dtype=np.float64).ravel()
    field = (field - field.mean()) / np.linalg.norm(field - field.mean())
    flat = vectors.reshape(len(vectors), -1)
    return float(np.linalg.norm(flat @ field))


def correlation_by_count(stimuli, responses, field, amplitude, points=12):
    counts = np.unique(np.geomspace(min(50, len(responses)), len(responses), points).astype(int))
    return counts, np.array([correlation(whiten(spike_triggered_average(stimuli[:n], responses[:n]), amplitude),
                                         field) for n in counts])


def analyze(run, out_dir) -> dict:
    stimuli, responses = stimulus_response(run)
    if stimuli is None:
        return {"lines": [f"{run.path}: the stimuli were not logged (record_rendered: false); no average possible"]}
    if len(responses) < 2:
        return {"lines": [f"{run.path}: no trial logged yet"]}
    space = run.config.get("space", {})
    amplitude = noise_amplitude(stimuli.shape[1:], space.get("noise", "white"), space.get("alpha"))
    sta = whiten(spike_triggered_average(stimuli, responses), amplitude)
    filters, eigenvalues = spike_triggered_covariance(
        stimuli, responses, np.random.default_rng(0)) if stimuli[0].size <= 4096 else (None, None)
    field = run.receptive_field
    numbers = {"status": run.status, "presentations": int(len(run.trials)), "stimuli": int(len(responses)),
               "mean_response": float(responses.mean())}
    lines = [f"run: reverse_correlation ({run.status}), {len(responses)} {space.get('noise', '')} noise stimuli, "
             f"{numbers['presentations']} presentations, mean response {responses.mean():.3g} {run.response_unit}"]
    counts = correlations = None
    if field is not None and field.shape == sta.shape:
        numbers["sta_correlation"] = correlation(sta, field)
        counts, correlations = correlation_by_count(stimuli, responses, field, amplitude)
        numbers["correlation_by_presentations"] = {int(n): float(c) for n, c in zip(counts, correlations)}
        lines.append(f"correlation of the spike-triggered average with the true receptive field: "
                     f"{numbers['sta_correlation']:.3f}")
        if filters is not None:
            numbers["stc_filters"] = int(len(filters))
        if filters is not None and len(filters):
            numbers["stc_subspace_correlation"] = subspace_correlation(filters, field)
            lines.append(f"projection of the true field onto the {len(filters)} significant covariance filters: "
                         f"{numbers['stc_subspace_correlation']:.3f}")
        elif filters is not None:
            lines.append("spike-triggered covariance: no filter beyond the shuffled-response noise level")
    numbers["figure"] = save(_figure(run, sta, field, filters, eigenvalues, counts, correlations),
                             out_dir / "reverse_correlation.png")
    lines += [f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _show(ax, values, title, modality):
    if modality == "audio" or np.asarray(values).ndim == 1:
        ax.plot(np.asarray(values).ravel(), lw=0.7)
        ax.set_title(title, fontsize=8)
        ax.set_yticks([])
    else:
        show_image(ax, values, title)


def _figure(run, sta, field, filters, eigenvalues, counts, correlations):
    panels = [("spike-triggered average", sta)]
    if field is not None:
        panels.insert(0, ("true receptive field", field))
    if filters is not None:
        panels += [(f"covariance filter {k + 1} ({v:+.2g})", f) for k, (f, v) in enumerate(zip(filters, eigenvalues))]
    columns = len(panels) + (counts is not None)
    fig, axes = subplots(1, columns, figsize=(2.4 * columns, 2.6), squeeze=False)
    axes = axes[0]
    for ax, (title, values) in zip(axes, panels):
        _show(ax, values, title, run.modality)
    if counts is not None:
        ax = axes[-1]
        ax.semilogx(counts, correlations, marker="o", ms=3)
        ax.set_ylim(min(0, np.nanmin(correlations)) - 0.05, 1.02)
        ax.axhline(0.9, color="gray", lw=0.8, ls=":")
        ax.set_xlabel("noise stimuli")
        ax.set_ylabel("correlation with true field")
        ax.set_box_aspect(1)
    fig.tight_layout()
    return fig
