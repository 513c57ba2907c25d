"""Analysis of a tuning run: tuning curves with error bars, preferred value and bandwidth."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FormatStrFormatter, NullFormatter

from closedloop.analysis.plots import plt, save


def grid_means(trials, names) -> "pd.DataFrame":  # noqa: F821
    grouped = trials.groupby(names)["response"]
    table = grouped.agg(["mean", "std", "count"]).reset_index()
    table["sem"] = table["std"].fillna(0) / np.sqrt(table["count"])
    return table


def curve_through_peak(table, names, name):
    """Responses along `name` with every other parameter at its value at the grid's peak."""
    peak = table.loc[table["mean"].idxmax()]
    mask = np.ones(len(table), dtype=bool)
    for other in names:
        if other != name:
            mask &= np.isclose(table[other], peak[other])
    curve = table[mask].sort_values(name)
    return curve[name].to_numpy(), curve["mean"].to_numpy(), curve["sem"].to_numpy()


def preferred_and_bandwidth(values, means, period=None, log_scale=False):
    """Preferred value and half width at half height (above the curve's minimum).

    Periodic parameters use the circular mean of the baseline-subtracted curve; others the
    parabola through the peak and its neighbours (in log units when log-scaled). The bandwidth
    is read off the curve linearly interpolated on a fine grid (circularly when periodic);
    for log-scaled parameters it is in octaves."""
    values, means = np.asarray(values, dtype=np.float64), np.asarray(means, dtype=np.float64)
    weights = means - means.min()
    if len(values) < 2 or weights.max() <= 0:
        return float(values[np.argmax(means)]) if len(values) else float("nan"), float("nan")
    if period:
        angle = 2 * np.pi * values / period
        preferred = float(np.angle(np.sum(weights * np.exp(1j * angle))) * period / (2 * np.pi))
        peak = values[np.argmax(means)]
        preferred = peak + (preferred - peak + period / 2) % period - period / 2  # beside the peak shown
        fine = np.linspace(0, period, 721)
        curve = np.interp(fine, values, means, period=period)
        centre = fine[np.argmin(np.abs(((fine - preferred + period / 2) % period) - period / 2))]
        return preferred, _half_width(fine - centre, curve, period)
    x = np.log2(values) if log_scale else values
    top = int(np.argmax(means))
    best = x[top]
    if 0 < top < len(x) - 1:
        a, b, c = np.polyfit(x[top - 1:top + 2], means[top - 1:top + 2], 2)
        if a < 0:
            best = float(np.clip(-b / (2 * a), x[top - 1], x[top + 1]))
    preferred = float(2**best) if log_scale else float(best)
    fine = np.linspace(x.min(), x.max(), 721)
    return preferred, _half_width(fine - best, np.interp(fine, x, means), None)


def _half_width(offset, curve, period):
    """Half the width of the contiguous region around offset 0 where the curve is above half height."""
    half = curve.min() + (curve.max() - curve.min()) / 2
    if period:
        offset = (offset + period / 2) % period - period / 2
        order = np.argsort(offset)
        offset, curve = offset[order], curve[order]
    centre = int(np.argmin(np.abs(offset)))
    above = curve >= half
    if not above[centre]:
        return float("nan")
    left, right = centre, centre
    while left > 0 and above[left - 1]:
        left -= 1
    while right < len(curve) - 1 and above[right + 1]:
        right += 1
    if left == 0 and right == len(curve) - 1:
        return float("nan")  # never drops to half height: untuned within the range shown
    return float((offset[right] - offset[left]) / 2)


def analyze(run, out_dir) -> dict:
    names, trials = run.parameters, run.trials
    if trials.empty:
        return {"lines": [f"{run.path}: no trial logged yet"]}
    space = run.config.get("space", {})
    logged = dict(zip(names, space.get("parameters", names)))  # column -> name in the space's config
    periods = {name: space.get("periods", {}).get(logged[name]) for name in names}
    log_scale = {name for name in names if logged[name] in space.get("log_scale", [])}
    units = {name: trials.attrs["units"].get(name, "") for name in names}
    table = grid_means(trials, names)
    curves, numbers = {}, {"status": run.status, "presentations": int(len(trials)), "grid_points": int(len(table))}
    lines = [f"run: tuning ({run.status}), {len(table)} grid points, {len(trials)} presentations"]
    for name in names:
        values, means, sem = curve_through_peak(table, names, name)
        preferred, bandwidth = preferred_and_bandwidth(values, means, periods.get(name), name in log_scale)
        curves[name] = (values, means, sem, preferred, bandwidth)
        numbers[f"preferred_{name}"] = preferred
        numbers[f"bandwidth_{name}"] = bandwidth
        unit = "octaves" if name in log_scale else units.get(name, "")
        lines.append(f"preferred {name}: {preferred:.4g} {units.get(name, '')}, "
                     f"half width at half height {bandwidth:.3g} {unit}")
    peak = table.loc[table["mean"].idxmax()]
    numbers["peak_response"] = float(peak["mean"])
    numbers["figure"] = save(_figure(run, table, names, curves, units, log_scale), out_dir / "tuning.png")
    lines += [f"peak response: {peak['mean']:.3g} {run.response_unit} per presentation",
              f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _figure(run, table, names, curves, units, log_scale):
    panels = len(names) + (len(names) >= 2)
    fig, axes = plt.subplots(1, panels, figsize=(3.2 * panels, 2.9), squeeze=False)
    axes = axes[0]
    for ax, name in zip(axes, names):
        values, means, sem, preferred, bandwidth = curves[name]
        ax.errorbar(values, means, yerr=sem, marker="o", ms=3, capsize=2)
        ax.axvline(preferred, color="C3", lw=1, ls="--", label=f"preferred {preferred:.4g}")
        if name in log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FormatStrFormatter("%.4g"))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(values[::int(np.ceil(len(values) / 6))])
        ax.set_xlabel(f"{name.replace('_', ' ')} ({units.get(name, '')})")
        ax.set_ylabel(f"{run.response_unit} per presentation (mean ± s.e.m.)", fontsize=8)
        ax.legend(fontsize=7)
    if len(names) >= 2:
        first, second = names[0], names[1]
        peak = table.loc[table["mean"].idxmax()]
        mask = np.ones(len(table), dtype=bool)
        for other in names[2:]:
            mask &= np.isclose(table[other], peak[other])
        grid = table[mask].pivot(index=second, columns=first, values="mean")
        ax = axes[-1]
        image = ax.imshow(grid.to_numpy(), origin="lower", aspect="auto", cmap="viridis")
        ax.set_xticks(range(len(grid.columns)), [f"{v:.4g}" for v in grid.columns], fontsize=6, rotation=90)
        ax.set_yticks(range(len(grid.index)), [f"{v:.4g}" for v in grid.index], fontsize=6)
        ax.set_xlabel(first.replace("_", " "))
        ax.set_ylabel(second.replace("_", " "))
        ax.set_title("mean response" + (" at preferred " + ", ".join(names[2:]) if names[2:] else ""), fontsize=8)
        fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig
