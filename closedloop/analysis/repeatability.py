"""Analysis of a repeatability run: split-half reliability, Fano factor, and the drift of the
response over the session against the neuron's logged state variables; once per session when
the run compared the neuron with and without reset_state."""

from __future__ import annotations

import numpy as np

from closedloop.analysis.plots import correlation, figure, save


def block_table(trials):
    """Block-by-item mean responses (blocks counted within the session) and block start times."""
    block = trials["generation"] - trials["generation"].min()
    means = trials.groupby([block, "item"])["response"].mean().unstack("item")
    times = trials.groupby(block)["t_start"].min()
    return means, times


def split_half(means) -> tuple[float, float]:
    """Correlation across items of the odd- and even-block means, and its Spearman-Brown
    correction to the reliability of the whole session."""
    r = correlation(means.iloc[0::2].mean().to_numpy(), means.iloc[1::2].mean().to_numpy())
    return r, 2 * r / (1 + r) if np.isfinite(r) and r > -1 else float("nan")


def fano_factors(trials, within_blocks=False) -> np.ndarray:
    """Variance over mean of each item's responses, across the session or within blocks."""
    keys = ["item", "generation"] if within_blocks else ["item"]
    grouped = trials.groupby(keys)["response"]
    mean, var = grouped.mean(), grouped.var(ddof=1)
    ok = (mean > 0) & var.notna()
    ratio = (var[ok] / mean[ok])
    return ratio.groupby(level="item").mean().to_numpy() if within_blocks else ratio.to_numpy()


def relative_trace(means) -> np.ndarray:
    """Each block's responses relative to the item's session mean, averaged over items."""
    item_means = means.mean()
    usable = item_means[item_means > 0].index
    return (means[usable] / item_means[usable]).mean(axis=1).to_numpy()


def state_traces(trials, names) -> dict[str, np.ndarray]:
    """Block means of every state variable that changes across blocks (drift, adaptation, ...)."""
    block = trials["generation"] - trials["generation"].min()
    traces = {}
    for name in names:
        values = trials.groupby(block)[name].mean().to_numpy()
        if np.nanstd(values) > 1e-12 * max(1.0, np.nanmax(np.abs(values))):
            traces[name] = values
    return traces


def condition_name(value: float) -> str:
    return {1.0: "reset_state on", 0.0: "reset_state off"}.get(float(value), "session")


def analyze(run, out_dir) -> dict:
    trials = run.trials
    if trials.empty:
        return {"lines": [f"{run.path}: no trial logged yet"]}
    state_names = [c for c in trials.columns if c in run.state_columns]
    numbers = {"status": run.status, "presentations": int(len(trials)), "sessions": {}}
    lines = [f"run: repeatability ({run.status}), {len(trials)} presentations, "
             f"{trials['item'].nunique()} items"]
    panels = {}
    for value, session in trials.groupby("reset_state", sort=True):
        name = condition_name(value)
        means, times = block_table(session)
        if len(means) < 2:
            continue
        r, reliability = split_half(means)
        fano = fano_factors(session)
        fano_within = fano_factors(session, within_blocks=True)
        trace = relative_trace(means)
        states = state_traces(session, state_names)
        drift = {state: correlation(trace, values) for state, values in states.items()}
        entry = {"blocks": int(len(means)), "split_half_r": r, "reliability": reliability,
                 "fano_factor": float(np.mean(fano)) if len(fano) else float("nan"),
                 "fano_factor_within_blocks": float(np.mean(fano_within)) if len(fano_within) else float("nan"),
                 "relative_response_sd": float(np.std(trace, ddof=1)), "drift_correlation": drift}
        numbers["sessions"][name] = entry
        panels[name] = (means, times.to_numpy(), trace, states, session.groupby("item")["response"])
        lines.append(f"{name}: {entry['blocks']} blocks, split-half r {r:.3f}, reliability (Spearman-Brown) "
                     f"{reliability:.3f}, Fano factor {entry['fano_factor']:.2f} across the session"
                     + (f", {entry['fano_factor_within_blocks']:.2f} within blocks" if len(fano_within) else "")
                     + f"; block-to-block response s.d. {entry['relative_response_sd']:.1%}")
        for state, c in drift.items():
            lines.append(f"  response drift vs logged {state}: correlation {c:+.3f}")
    if not panels:
        return {**numbers, "lines": lines + ["fewer than two blocks logged yet"]}
    first = next(iter(numbers["sessions"].values()))
    numbers["reliability"], numbers["fano_factor"] = first["reliability"], first["fano_factor"]
    numbers["figure"] = save(_figure(run, panels, trials.attrs["units"]), out_dir / "repeatability.png")
    lines += [f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _figure(run, panels, units):
    """Per session: the relative response over the session, each logged state variable on its own
    axis (with its unit), the split-half scatter and the mean-variance relation."""
    rows = len(panels)
    fig = figure(figsize=(13, 3.1 * rows), layout="constrained")
    outer = fig.add_gridspec(rows, 4, width_ratios=[2, 1.6, 1, 1])
    for row, (name, (means, times, trace, states, responses)) in enumerate(panels.items()):
        ax = fig.add_subplot(outer[row, 0])
        ax.plot(times, trace, marker="o", ms=3, color="k")
        ax.set_xlabel("session time (s)")
        ax.set_ylabel("response / item mean")
        ax.set_title(f"{name}: relative response per block", fontsize=9)
        if states:
            stack = outer[row, 1].subgridspec(len(states), 1, hspace=0.1)
            for k, (state, values) in enumerate(states.items()):
                axis = fig.add_subplot(stack[k, 0], sharex=ax)
                axis.plot(times, values, color=f"C{k}", lw=1)
                unit = units.get(state, "")
                axis.set_ylabel(f"{state}" + (f" ({unit})" if unit not in ("", "1", "n/a") else ""), fontsize=8)
                axis.tick_params(labelsize=7)
                if k == 0:
                    axis.set_title("logged state (block mean)", fontsize=9)
                if k < len(states) - 1:
                    axis.tick_params(labelbottom=False)
                else:
                    axis.set_xlabel("session time (s)")
        else:
            empty = fig.add_subplot(outer[row, 1])
            empty.axis("off")
            empty.text(0.5, 0.5, "no state variable changes\n(reset_state, or a neuron without drift)",
                       ha="center", va="center", fontsize=8, color="gray")
        odd, even = means.iloc[0::2].mean(), means.iloc[1::2].mean()
        ax = fig.add_subplot(outer[row, 2])
        ax.plot(odd, even, "o")
        limits = [min(odd.min(), even.min()), max(odd.max(), even.max())]
        ax.plot(limits, limits, color="gray", lw=0.8, ls=":")
        ax.set_xlabel(f"odd blocks, mean ({run.response_unit})", fontsize=8)
        ax.set_ylabel(f"even blocks, mean ({run.response_unit})", fontsize=8)
        ax.set_title(f"split-half r = {correlation(odd.to_numpy(), even.to_numpy()):.3f}", fontsize=9)
        ax = fig.add_subplot(outer[row, 3])
        item_mean, item_var = responses.mean().to_numpy(), responses.var(ddof=1).to_numpy()
        ax.plot(item_mean, item_var, "o", label="items (all presentations)")
        top = max(item_mean.max(), item_var.max(), 1e-9)
        ax.plot([0, top], [0, top], color="gray", lw=0.8, ls=":", label="Poisson")
        ax.set_xlabel(f"mean ({run.response_unit})", fontsize=8)
        ax.set_ylabel(f"variance ({run.response_unit}²)", fontsize=8)
        ax.set_title("Fano factor", fontsize=9)
        ax.legend(fontsize=7)
    return fig
