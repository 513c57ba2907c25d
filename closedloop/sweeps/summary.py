"""The sweep's summary: one row per run (summary.csv) and figures of each metric vs each parameter,
written when a sweep ends and again by `closedloop analyze FOLDER` from the logs alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from closedloop.sweeps.grid import RunSpec, value_label
from closedloop.sweeps.measure import METRICS

FIGURE_METRICS = {
    "rf_correlation": "RF correlation of the best stimulus",
    "recommended_rf_correlation": "RF correlation of the recommendation",
    "fraction_of_optimum": "fraction of the optimum (best)",
}


def readable(value) -> str:
    """A grid value as a person reads it: a section by its kind and fields ("cmaes (popsize 10)")."""
    if isinstance(value, dict):
        fields = ", ".join(f"{k.replace('_', ' ')} {readable(v)}" for k, v in value.items() if k != "kind")
        kind = str(value.get("kind", ""))
        return f"{kind} ({fields})" if kind and fields else kind or fields
    if isinstance(value, list):
        return ", ".join(readable(v) for v in value)
    return value_label(value)


def axis_label(path: str) -> str:
    """A dotted field path as an axis label: "noise sigma (neuron.cell)"."""
    *section, name = path.split(".")
    return name.replace("_", " ") + (f" ({'.'.join(section)})" if section else "")


def optimizer_label(spec: RunSpec) -> str:
    """What distinguishes the run's optimizer: its grid values if any, else its kind."""
    swept = [f"{axis_label(k)} {readable(v)}" if k != "optimizer" else readable(v)
             for k, v in spec.params.items() if k.split(".")[0] == "optimizer"]
    if swept:
        return ", ".join(swept)
    return str((spec.data.get("optimizer") or {}).get("kind", ""))


def table(runs: list[RunSpec], rows: dict[int, dict]) -> pd.DataFrame:
    records = []
    for spec in runs:
        row = rows.get(spec.index, {})
        records.append({
            "run": spec.index, "log": spec.log.name,
            **{key: readable(value) if isinstance(value, (dict, list)) else value
               for key, value in spec.params.items()},
            "seed": spec.seed, "optimizer": optimizer_label(spec),
            **{name: row.get(name, np.nan) for name in METRICS},
            "cpu_time": row.get("cpu_time", np.nan),  # of the worker's process; unknown for skipped runs
            "error": row.get("error", ""),
        })
    return pd.DataFrame.from_records(records)


def write(frame: pd.DataFrame, parameters: list[str], out_dir: Path) -> dict[str, str]:
    csv = out_dir / "summary.csv"
    frame.to_csv(csv, index=False)
    written = {"summary": str(csv)}
    figure = _figure(frame, parameters, out_dir / "summary.png")
    if figure:
        written["figure"] = figure
    written["report"] = _page(frame, parameters, out_dir, figure)
    return written


def _page(frame: pd.DataFrame, parameters: list[str], out_dir: Path, figure: str | None) -> str:
    """summary.html: the figure and the table of runs, self-contained like a run's report."""
    import html

    from closedloop.analysis.report import STYLE, embed

    shown = frame.drop(columns=[c for c in ("cpu_time",) if c in frame]).rename(
        columns={p: axis_label(p) for p in parameters})
    table = shown.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}", border=0)
    path = out_dir / "summary.html"
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sweep: {html.escape(out_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>sweep <code>{html.escape(out_dir.name)}</code>: {len(frame)} runs</h1>
<p>Swept: {html.escape(", ".join(axis_label(p) for p in parameters) or "nothing")}. Each run's log is in this
folder; <code>closedloop analyze FOLDER</code> writes this page again from the logs.</p>
<h2>Figure</h2>{embed(Path(figure)) if figure else "<p>No measure to plot.</p>"}
<h2>Runs</h2><div style="overflow-x:auto">{table}</div>
</body></html>
""", encoding="utf-8")
    return str(path)


def _figure(frame: pd.DataFrame, parameters: list[str], path: Path) -> str | None:
    from closedloop.analysis.plots import save, subplots

    metrics = [m for m in FIGURE_METRICS if frame[m].notna().any()]
    # the optimizer groups the lines; the other grid parameters are the x axes
    axes_params = [p for p in parameters if p.split(".")[0] != "optimizer"] or ["optimizer"]
    if not metrics:
        return None
    fig, axes = subplots(len(metrics), len(axes_params), squeeze=False, layout="constrained",
                             figsize=(3.4 * len(axes_params), 2.8 * len(metrics)))
    groups = sorted(frame["optimizer"].astype(str).unique())
    for col, param in enumerate(axes_params):
        values = list(dict.fromkeys(frame[param].tolist()))
        numeric = all(isinstance(v, (int, float, np.number)) and not isinstance(v, bool) for v in values)
        positions = {v: (float(v) if numeric else k) for k, v in enumerate(sorted(values) if numeric else values)}
        logarithmic = numeric and len(values) > 2 and min(values) > 0 and max(values) / min(values) >= 8
        for row, metric in enumerate(metrics):
            ax = axes[row, col]
            for g, group in enumerate(groups):
                part = frame[frame["optimizer"].astype(str) == group]
                stats = part.groupby(param, sort=False)[metric].agg(["mean", "sem", "count"])
                # the grid's values are settings, not a continuum: markers side by side, no lines
                dodge = (g - (len(groups) - 1) / 2) * 0.12
                shift = (lambda x: x * 2 ** (dodge / 2)) if logarithmic else (
                    lambda x: x + dodge * (np.ptp(list(positions.values())) or 1.0) / max(len(values), 2)
                    if numeric else x + dodge)
                x = np.array([shift(positions[v]) for v in stats.index])
                ax.errorbar(x, stats["mean"].to_numpy(), yerr=np.nan_to_num(stats["sem"].to_numpy()), marker="o",
                            capsize=3, ls="none", label=group)
                points = [shift(positions[v]) for v in part[param]]
                ax.plot(points, part[metric], ".", alpha=0.25, color=ax.lines[-1].get_color())
            if not numeric:
                ax.set_xticks(list(positions.values()), [readable(v) for v in positions], fontsize=7)
            else:
                ax.set_xticks(sorted(positions.values()), [value_label(v) for v in sorted(positions)], fontsize=8)
                if logarithmic:
                    ax.set_xscale("log")
                    ax.minorticks_off()
            if row == len(metrics) - 1:
                ax.set_xlabel(axis_label(param))
            if col == 0:
                ax.set_ylabel(FIGURE_METRICS[metric], fontsize=8)
    axes[0, -1].legend(fontsize=7, title="optimizer", title_fontsize=7)
    fig.suptitle(f"{len(frame)} runs: mean ± s.e.m. over seeds and the other parameters", fontsize=9)
    return save(fig, path)


def report(summary: dict, echo=print) -> None:
    """Print what a sweep (or the summary of its folder) found."""
    frame = summary["table"]
    echo(f"sweep: {summary['runs']} runs ({summary['skipped']} already complete, {summary['failed']} "
         f"not complete) in {summary['output']}")
    for error in frame.loc[frame["error"].astype(bool), "error"].head(3):
        echo(f"  failed run: {error}")
    shown = [c for c in ("rf_correlation", "fraction_of_optimum", "best_response") if frame[c].notna().any()]
    if shown:
        means = frame.groupby("optimizer")[shown].mean()
        for name, values in means.iterrows():
            echo(f"  {name}: " + ", ".join(f"mean {c} {v:.3f}" for c, v in values.items()))
    echo(f"summary: {summary['summary']}")
    if "figure" in summary:
        echo(f"figure: {summary['figure']}")
    echo(f"report: {summary['report']}")


def from_folder(folder) -> dict:
    """Summarise the run logs in a sweep's folder again, from the logs alone: the swept fields are
    those whose values differ between the runs' protocols."""
    from closedloop.errors import ClosedLoopError
    from closedloop.protocol import load_yaml
    from closedloop.recording import open_run
    from closedloop.sweeps.measure import measure

    folder = Path(folder)
    logs = sorted(folder.glob("run-*.h5"))
    if not logs:
        raise ClosedLoopError(f"{folder}: a folder without sweep run logs (run-*.h5)")
    protocols = []
    for log in logs:
        with open_run(log) as run:
            protocols.append(load_yaml(run.protocol, str(log)))
    flat = [_flatten({k: v for k, v in data.items() if k != "seed"}) for data in protocols]
    keys = list(dict.fromkeys(key for row in flat for key in row))
    swept = [key for key in keys if len({repr(row.get(key)) for row in flat}) > 1]
    runs = [RunSpec(k, {key: row.get(key) for key in swept}, int(data.get("seed", 0)), data, "", log, str(log))
            for k, (log, data, row) in enumerate(zip(logs, protocols, flat))]
    rows = {spec.index: {**measure(spec.log), "error": ""} for spec in runs}
    frame = table(runs, rows)
    written = write(frame, swept, folder)
    failed = int((frame["status"] != "complete").sum())
    return {"status": "failed" if failed else "complete", "output": str(folder), "runs": len(runs),
            "skipped": len(runs), "failed": failed, "table": frame, **written}


def _flatten(data: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in data.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat
