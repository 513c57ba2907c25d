"""Analysis of a fooling run: the fraction of stimuli of each source past the threshold, with an
exact (Clopper-Pearson) binomial confidence interval."""

from __future__ import annotations

import numpy as np
from scipy import stats

from closedloop.analysis.judging import judge_stimuli
from closedloop.analysis.plots import figure, save, show_image


def fooling_rate(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float, float]:
    """Fraction and its exact binomial interval."""
    if n == 0:
        return float("nan"), 0.0, 1.0
    interval = stats.binomtest(int(hits), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return hits / n, float(interval.low), float(interval.high)


def per_stimulus(run):
    """Mean response of every stimulus with its source name and draw number."""
    sources = run.config["space"]["sources"]
    table = run.trials.groupby("stimulus")["response"].mean().rename("response").to_frame()
    z = run.z[table.index.to_numpy()]
    table["source"] = [sources[int(k)] for k in z[:, 0]]
    table["draw"] = z[:, 1].astype(np.int64)
    return table


def analyze(run, out_dir) -> dict:
    if run.trials.empty:
        return {"lines": [f"{run.path}: no trial logged yet"]}
    space = run.config["space"]
    threshold, confidence = float(space["threshold"]), float(space.get("confidence", 0.95))
    table = per_stimulus(run)
    numbers = {"status": run.status, "threshold": threshold, "presentations": int(len(run.trials)), "rates": {}}
    if space.get("reference_optimum") is not None:
        numbers["reference_optimum"] = float(space["reference_optimum"])
    unit = run.response_unit
    lines = [f"run: fooling ({run.status}), {'grey ' if space.get('grey') else ''}static, threshold {threshold:.4g} {unit}"
             + (f" (of an evolved optimum {numbers['reference_optimum']:.4g})" if "reference_optimum" in numbers else "")]
    for source in space["sources"]:
        responses = table.loc[table["source"] == source, "response"].to_numpy()
        hits = int((responses > threshold).sum())
        rate, low, high = fooling_rate(hits, len(responses), confidence)
        numbers["rates"][source] = {"hits": hits, "n": int(len(responses)), "rate": rate, "low": low, "high": high}
        lines.append(f"{source}: {hits}/{len(responses)} above threshold = {rate:.3g} "
                     f"({confidence:.0%} CI {low:.3g} to {high:.3g})")
    fooled = table[(table["response"] > threshold) & (table["source"] != "evolved")]
    judged, judge_lines = judge_stimuli(run, run.rendered(fooled.index.to_numpy()[:64]) if len(fooled) else None,
                                        "static stimuli past the threshold")
    if judged:
        numbers["judges"] = judged
        lines += judge_lines
    numbers["figure"] = save(_figure(run, table, threshold, numbers["rates"], confidence), out_dir / "fooling.png")
    lines += [f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _figure(run, table, threshold, rates, confidence):
    sources = list(rates)
    image = run.modality == "image" and run.rendered(table.index[:1].to_numpy()) is not None
    fig = figure(figsize=(max(7.0, 1.7 * len(sources) + 4.5), 4.6 if image else 2.8))
    grid = fig.add_gridspec(2 if image else 1, max(len(sources), 2), height_ratios=[1, 1.3] if image else [1])
    if image:
        for k, source in enumerate(sources):
            rows = table[table["source"] == source]
            if len(rows):
                best = rows["response"].idxmax()
                show_image(fig.add_subplot(grid[0, k]), run.rendered([best])[0],
                           f"{source}: strongest\n{rows.loc[best, 'response']:.3g} {run.response_unit}")
    half = max(len(sources), 2) // 2
    ax = fig.add_subplot(grid[-1, :half])
    bins = np.histogram_bin_edges(table["response"], bins=40)
    for k, source in enumerate(sources):
        responses = table.loc[table["source"] == source, "response"]
        ax.hist(responses, bins=bins, alpha=0.5, label=source, color=f"C{k}")
    ax.axvline(threshold, color="k", ls="--", lw=1, label="threshold")
    ax.set_yscale("log")  # the few stimuli past the threshold stay visible beside thousands below it
    ax.set_xlabel(f"response ({run.response_unit})")
    ax.set_ylabel("stimuli (log)")
    ax.legend(fontsize=7)
    rate_axes(fig.add_subplot(grid[-1, half:]), rates, confidence)
    fig.tight_layout()
    return fig


def rate_axes(ax, rates, confidence):
    """Each source's fraction and its exact interval on a log axis, so that 4 hits in 10,000 show
    as plainly as 0.5; a source with no hit shows its interval's upper end (an arrow: "below")."""
    sources = list(rates)
    highs = np.array([rates[s]["high"] for s in sources])
    lows = np.array([rates[s]["low"] for s in sources])
    floor = 10 ** np.floor(np.log10(max(min(highs.min(), np.min(lows[lows > 0], initial=1.0)) / 3, 1e-9)))
    for k, source in enumerate(sources):
        r = rates[source]
        colour = f"C{k}"
        ax.vlines(k, max(r["low"], floor), r["high"], color=colour, lw=6, alpha=0.35)
        if r["hits"]:
            ax.plot(k, r["rate"], "o", color=colour)
            label = f"{r['hits']}/{r['n']}"
        else:
            ax.plot(k, r["high"], "v", color=colour)
            label = f"0/{r['n']}"
        ax.annotate(label, (k, r["high"]), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=7)
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.5)
    ax.set_xlim(-0.6, len(sources) - 0.4)
    ax.set_xticks(range(len(sources)), sources)
    ax.set_ylabel(f"fraction above threshold\n(log; {confidence:.0%} exact interval)", fontsize=8)
