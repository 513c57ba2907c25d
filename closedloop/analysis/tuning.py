"""Analysis of a tuning run: tuning curves with error bars, preferred value and bandwidth."""

from __future__ import annotations

import numpy as np
from matplotlib.ticker import FuncFormatter, NullFormatter

from closedloop.analysis.plots import save, subplots


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


UNTUNED_P = 0.05  # a parameter without a main effect at this level has no preferred value


def tuning_p_value(trials, names, name) -> float:
    """The p-value of `name`'s main effect on the response, in an analysis of variance with every
    parameter as a factor (the others block it; their interactions count as noise): large when
    the response does not depend on `name` (the orientation of a centre-surround cell)."""
    from scipy.stats import f as f_distribution

    y = trials["response"].to_numpy(dtype=np.float64)

    def residual(factors):
        columns = [np.ones(len(y))]
        for factor in factors:
            levels = np.unique(trials[factor].to_numpy())
            columns += [(trials[factor].to_numpy() == level).astype(np.float64) for level in levels[1:]]
        design = np.column_stack(columns)
        fitted = design @ np.linalg.lstsq(design, y, rcond=None)[0]
        return float(np.sum((y - fitted) ** 2)), int(np.linalg.matrix_rank(design))

    full, rank_full = residual(names)
    reduced, rank_reduced = residual([n for n in names if n != name])
    df_effect, df_error = rank_full - rank_reduced, len(y) - rank_full
    if df_effect < 1 or df_error < 1:
        return float("nan")
    if full <= 1e-12 * max(reduced, 1e-300):  # a noise-free neuron: any change is an effect
        return 0.0 if reduced > 1e-12 else 1.0
    statistic = ((reduced - full) / df_effect) / (full / df_error)
    return float(f_distribution.sf(statistic, df_effect, df_error))


def fit_curve(values, means, period=None, log_scale=False):
    """A smooth tuning curve through the means, as (x, y) to draw, or None: a von Mises bump on a
    baseline for a periodic parameter, a Gaussian (in octaves when log-scaled) otherwise; never
    narrower than the grid's spacing, nor much taller than the data."""
    from scipy.optimize import curve_fit

    values, means = np.asarray(values, dtype=np.float64), np.asarray(means, dtype=np.float64)
    if len(values) < 5 or np.ptp(means) == 0:
        return None
    top, height = values[np.argmax(means)], float(np.ptp(means))
    if period:
        step = float(np.min(np.diff(np.sort(values)))) or period
        kappa_max = np.log(2) / (1 - np.cos(np.pi * step / period))  # half width >= half a grid step

        def model(x, base, size, centre, kappa):
            return base + size * np.exp(kappa * (np.cos(2 * np.pi * (x - centre) / period) - 1))

        start = [means.min(), height, top, min(2.0, kappa_max / 2)]
        bounds = ([means.min() - height, 0, top - period, 0.01], [means.max(), 1.5 * height, top + period, kappa_max])
        x = np.linspace(0, period, 361)
    else:
        scale = np.log2 if log_scale else (lambda v: v)
        points = np.sort(scale(values))
        step, span = float(np.min(np.diff(points))), float(np.ptp(points))

        def model(x, base, size, centre, width):
            return base + size * np.exp(-(scale(x) - centre) ** 2 / (2 * width**2))

        start = [means.min(), height, float(scale(top)), max(span / 4, step)]
        bounds = ([means.min() - height, 0, points[0] - step, step / 2.35],
                  [means.max(), 1.5 * height, points[-1] + step, 2 * span])
        x = np.geomspace(values.min(), values.max(), 200) if log_scale else np.linspace(values.min(), values.max(), 200)
    try:
        parameters, _ = curve_fit(model, values, means, p0=start, bounds=bounds, maxfev=5000)
    except (RuntimeError, ValueError):
        return None
    return x, model(x, *parameters)


def nice(value: float) -> str:
    """A tick or legend number with 3 significant digits at most (0.09487 -> 0.0949, 29.54 -> 29.5)."""
    return f"{value:.3g}" if np.isfinite(value) else "none"


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
    numbers["units"] = {}
    lines = [f"run: tuning ({run.status}), {len(table)} grid points, {len(trials)} presentations"]
    for name in names:
        values, means, sem = curve_through_peak(table, names, name)
        p_value = tuning_p_value(trials, names, name)
        preferred, bandwidth = preferred_and_bandwidth(values, means, periods.get(name), name in log_scale)
        label = name.replace("_", " ")
        if p_value >= UNTUNED_P:  # e.g. the orientation of a centre-surround cell
            preferred, bandwidth = float("nan"), float("nan")
            lines.append(f"{label}: untuned, no preferred value (no main effect on the response, p = {p_value:.2g})")
        fitted = fit_curve(values, means, periods.get(name), name in log_scale) if np.isfinite(preferred) else None
        curves[name] = (values, means, sem, preferred, fitted)
        numbers[f"preferred_{name}"] = preferred
        numbers[f"bandwidth_{name}"] = bandwidth
        numbers[f"tuning_p_{name}"] = p_value
        width_unit = "octaves" if name in log_scale else units.get(name, "")
        numbers["units"].update({f"preferred_{name}": units.get(name, ""), f"bandwidth_{name}": width_unit,
                                 f"tuning_p_{name}": "p (analysis of variance)"})
        if np.isfinite(preferred):
            lines.append(f"preferred {label}: {preferred:.4g} {units.get(name, '')}, "
                         f"half width at half height {bandwidth:.3g} {width_unit}")
    peak = table.loc[table["mean"].idxmax()]
    numbers["peak_response"] = float(peak["mean"])
    numbers["figure"] = save(_figure(run, table, names, curves, units, log_scale, periods), out_dir / "tuning.png")
    lines += [f"peak response: {peak['mean']:.3g} {run.response_unit} per presentation",
              f"log: {run.path}", f"figure: {numbers['figure']}"]
    numbers["lines"] = lines
    return numbers


def _figure(run, table, names, curves, units, log_scale, periods):
    panels = len(names) + (len(names) >= 2)
    fig, axes = subplots(1, panels, figsize=(3.3 * panels, 3.0), squeeze=False, layout="constrained")
    axes = axes[0]
    unit = f"{run.response_unit} per presentation"
    for ax, name in zip(axes, names):
        values, means, sem, preferred, fitted = curves[name]
        period = periods.get(name)
        if period and len(values) and np.isclose(values[0] % period, 0):  # close the circle: 0 is also `period`
            values, means, sem = np.append(values, period), np.append(means, means[0]), np.append(sem, sem[0])
        ax.errorbar(values, means, yerr=sem, marker="o", ms=3, capsize=2, ls="none", label="mean ± s.e.m.")
        if fitted is not None:
            ax.plot(*fitted, color="C0", lw=1, alpha=0.8, label="fit")
        if np.isfinite(preferred):
            shown = preferred % period if period else preferred
            ax.axvline(shown, color="C3", lw=1, ls="--", label=f"preferred {nice(shown)} {units.get(name, '')}")
        else:
            ax.set_title("untuned: no preferred value", fontsize=8)
        if period:
            ax.set_xlim(0, period)
            ax.set_xticks(np.linspace(0, period, 5))
        if name in log_scale:
            ax.set_xscale("log")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: nice(v)))
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_xticks(values[::int(np.ceil(len(values) / 6))])
        ax.set_xlabel(f"{name.replace('_', ' ')} ({units.get(name, '')})")
        ax.set_ylabel(unit, fontsize=8)
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
        step = int(np.ceil(len(grid.columns) / 8))
        ax.set_xticks(range(0, len(grid.columns), step), [nice(v) for v in grid.columns[::step]], fontsize=7)
        ax.set_yticks(range(len(grid.index)), [nice(v) for v in grid.index], fontsize=7)
        ax.set_xlabel(f"{first.replace('_', ' ')} ({units.get(first, '')})")
        ax.set_ylabel(f"{second.replace('_', ' ')} ({units.get(second, '')})")
        others = ", ".join(f"{n.replace('_', ' ')} {nice(peak[n])} {units.get(n, '')}" for n in names[2:])
        ax.set_title("mean response" + (f" at {others}" if others else ""), fontsize=8)
        bar = fig.colorbar(image, ax=ax)
        bar.set_label(f"mean response ({unit})", fontsize=8)
    return fig
