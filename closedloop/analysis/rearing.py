"""Compare rearing conditions from their run logs: held-out accuracy, the probability that static
fools the digit unit (exact interval), the presentations a black-box search needs to fool it,
and what the independent digit judges say of what fooled it.

Every number is read from the logs (closedloop/experiments/rearing.py writes them): responses are
turned back into the network's probability of the digit through the readout the log names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from closedloop.analysis.fooling import fooling_rate, per_stimulus
from closedloop.analysis.judging import judge_stimuli
from closedloop.analysis.plots import figure, save
from closedloop.recording import open_run

JUDGED_STATIC = 64  # at most this many fooling static images of each kind go to the judges


def probability(run, responses) -> np.ndarray:
    """The network's probability of the digit, from responses in the log's readout."""
    readout = run.config["neuron"].get("readout", "probability")
    responses = np.asarray(responses, dtype=np.float64)
    return np.exp(responses) if readout == "log_probability" else responses


def network(run) -> dict:
    return run.config["neuron"]["network"]


def static_numbers(log: Path, threshold: float, confidence: float) -> dict:
    """How many static images drove p(digit) above `threshold`, and what the judges say of them."""
    with open_run(log) as run:
        table = per_stimulus(run)
        p = probability(run, table["response"])
        fooled = table.index.to_numpy()[p > threshold]
        rate, low, high = fooling_rate(len(fooled), len(table), confidence)
        judged, _ = judge_stimuli(run, run.rendered(fooled[:JUDGED_STATIC]) if len(fooled) else None,
                                  "fooling static")
        return {"network": network(run), "hits": len(fooled), "n": len(table), "rate": rate, "low": low,
                "high": high, "max_p": float(p.max()), "judges": judged}


def search_numbers(log: Path, threshold: float) -> dict:
    """When a search first drove p(digit) above `threshold` (presentations, in the order shown),
    its best image, and what the judges say of it."""
    with open_run(log) as run:
        trials = run.trials
        search = trials[trials["phase"] == "search"].sort_values("t_start", kind="stable")
        p = probability(run, search["response"])
        past = np.nonzero(p > threshold)[0]
        best = int(np.argmax(p))
        stimulus = int(search["stimulus"].iloc[best])
        image = run.rendered([stimulus])
        judged, _ = judge_stimuli(run, image, "best evolved image")
        return {"network": network(run), "presentations": len(search),
                "to_fool": int(past[0]) + 1 if len(past) else None, "best_p": float(p[best]),
                "best_stimulus": stimulus, "image": None if image is None else image[0], "judges": judged}


def compare(layout: dict[str, dict], out_dir: Path, settings) -> dict:
    """layout: condition -> {"static": {kind: log}, "evolve": {seed: log}}. Writes summary.csv
    (one row per condition), searches.csv (one row per search) and rearing.png."""
    static_cfg, search_cfg = settings.static, settings.evolve
    conditions, searches = [], []
    for name, logs in layout.items():
        row, judged_static = {"condition": name}, {}
        for kind, log in logs["static"].items():
            numbers = static_numbers(log, static_cfg.threshold, static_cfg.confidence)
            row.setdefault("test_accuracy", numbers["network"]["test_accuracy"])
            row.setdefault("classes", numbers["network"]["classes"])
            row.update({f"{kind}_{k}": numbers[k] for k in ("hits", "n", "rate", "low", "high", "max_p")})
            judged_static[kind] = numbers["judges"]
        found = []
        for seed, log in logs["evolve"].items():
            numbers = search_numbers(log, search_cfg.threshold)
            row.setdefault("test_accuracy", numbers["network"]["test_accuracy"])
            row.setdefault("classes", numbers["network"]["classes"])
            found.append({"condition": name, "seed": seed, **numbers})
        fooled = [s["to_fool"] for s in found if s["to_fool"] is not None]
        row["searches_fooled"] = f"{len(fooled)}/{len(found)}"
        row["median_to_fool"] = float(np.median(fooled)) if len(fooled) == len(found) and found else np.nan
        row["judge_accepts_best"] = _accepted([s["judges"] for s in found])
        fooled_static = sum(row.get(f"{kind}_hits", 0) for kind in logs["static"])
        row["judge_accepts_fooling_static"] = _accepted(list(judged_static.values())) if fooled_static else "none fooled"
        conditions.append(row)
        searches += found
    summary = pd.DataFrame(conditions)
    table = pd.DataFrame([{k: v for k, v in s.items() if k not in ("image", "network", "judges")}
                          | {"judges": _accepted([s["judges"]]),
                             "judge_heard": "; ".join(f"{k}: {v['heard'][0]}" for k, v in s["judges"].items())}
                          for s in searches])
    out_dir = Path(out_dir)
    summary.to_csv(out_dir / "summary.csv", index=False)
    table.to_csv(out_dir / "searches.csv", index=False)
    figure_path = save(_figure(summary, searches, static_cfg, search_cfg, settings.digit), out_dir / "rearing.png")
    lines = _lines(summary, searches, static_cfg, search_cfg, settings.digit)
    report = _page(out_dir, summary, table, figure_path, lines)
    lines += [f"summary: {out_dir / 'summary.csv'}", f"searches: {out_dir / 'searches.csv'}", f"figure: {figure_path}",
              f"report: {report}"]
    return {"lines": lines, "summary": str(out_dir / "summary.csv"), "figure": figure_path, "table": summary,
            "searches": table, "report": report}


def _page(out_dir: Path, summary: pd.DataFrame, searches: pd.DataFrame, figure: str, lines: list[str]) -> str:
    """rearing.html: the comparison's figure, key lines and tables, self-contained like a run's report."""
    import html

    from closedloop.analysis.report import STYLE, embed

    def table(frame):
        return frame.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.3g}", border=0)

    path = out_dir / "rearing.html"
    path.write_text(f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rearing: {html.escape(out_dir.name)}</title>
<style>{STYLE}</style></head><body>
<h1>rearing <code>{html.escape(out_dir.name)}</code>: {len(summary)} conditions</h1>
<p>Each condition's logs are in its folder; <code>closedloop analyze FOLDER</code> writes this page again.</p>
<ul>{"".join(f"<li>{html.escape(line)}</li>" for line in lines)}</ul>
<h2>Figure</h2>{embed(Path(figure))}
<h2>Conditions</h2><div style="overflow-x:auto">{table(summary)}</div>
<h2>Searches</h2><div style="overflow-x:auto">{table(searches)}</div>
</body></html>
""", encoding="utf-8")
    return str(path)


def _accepted(judged: list[dict]) -> str:
    """ "kind: accepted/of" per judge over several verdict sets; "no judge" when none answered."""
    totals: dict[str, list[int]] = {}
    for numbers in judged:
        for kind, verdict in numbers.items():
            total = totals.setdefault(kind, [0, 0])
            total[0] += verdict["accepted"]
            total[1] += verdict["of"]
    return "; ".join(f"{kind}: {a}/{n}" for kind, (a, n) in totals.items()) or "no judge"


def _lines(summary, searches, static_cfg, search_cfg, digit) -> list[str]:
    lines = [f"digit unit {digit}: fooled by static when p({digit}) > {static_cfg.threshold:g}; "
             f"by a search when p({digit}) > {search_cfg.threshold:g} within {search_cfg.budget} presentations"]
    for _, row in summary.iterrows():
        static = ", ".join(f"{kind} {row[f'{kind}_hits']}/{row[f'{kind}_n']} "
                           f"({row[f'{kind}_low']:.2g}-{row[f'{kind}_high']:.2g})" for kind in static_cfg.kinds)
        runs = [s for s in searches if s["condition"] == row["condition"]]
        needed = ", ".join(str(s["to_fool"]) if s["to_fool"] is not None else "not" for s in runs)
        lines.append(f"{row['condition']}: accuracy {row['test_accuracy']:.3f}; static fools {static}; "
                     f"searches fooled {row['searches_fooled']} (presentations: {needed}; best p "
                     + ", ".join(f"{s['best_p']:.4g}" for s in runs)
                     + f"); judges accept as a {digit}: the best images {row['judge_accepts_best']}, "
                     f"the fooling static (first {JUDGED_STATIC} of each kind) {row['judge_accepts_fooling_static']}")
    return lines


def _figure(summary, searches, static_cfg, search_cfg, digit):
    names = summary["condition"].tolist()
    seeds = sorted({s["seed"] for s in searches})
    x = np.arange(len(names))
    fig = figure(figsize=(max(11.0, 2.2 * len(names) + 4), 4.0 + 1.15 * len(seeds)), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=[4.0, 1.15 * max(len(seeds), 1)])
    accuracy_ax, static_ax, search_ax = top.subplots(1, 3)

    accuracy_ax.bar(x, summary["test_accuracy"], color="0.6")
    accuracy_ax.set_ylim(max(0.0, float(summary["test_accuracy"].min()) - 0.05), 1.0)
    accuracy_ax.set_ylabel("held-out test accuracy")

    kinds = static_cfg.kinds
    width = 0.8 / len(kinds)
    floor = 0.3 / max(int(summary[f"{kinds[0]}_n"].max()), 1)  # where a zero is drawn on the log axis
    for k, kind in enumerate(kinds):
        offset = x - 0.4 + width * (k + 0.5)
        rate, low, high = (summary[f"{kind}_{c}"].to_numpy(dtype=float) for c in ("rate", "low", "high"))
        shown = np.maximum(rate, floor)
        static_ax.errorbar(offset, shown, yerr=np.vstack([shown - np.maximum(low, floor), np.maximum(high, floor) - shown]),
                           fmt="o", color=f"C{k}", label=f"{kind} static", capsize=2, ms=4)
        zero = rate == 0
        static_ax.scatter(offset[zero], np.full(zero.sum(), floor), marker="v", color=f"C{k}", zorder=3)
    static_ax.set_yscale("log")
    static_ax.set_ylabel(f"P(static gives p({digit}) > {static_cfg.threshold:g})\n"
                         f"{static_cfg.confidence:.0%} exact interval; v: none seen", fontsize=8)
    static_ax.legend(fontsize=7)

    for s in searches:
        i = names.index(s["condition"])
        jitter = 0.3 * (seeds.index(s["seed"]) - (len(seeds) - 1) / 2) / max(len(seeds), 1)
        if s["to_fool"] is not None:
            search_ax.scatter(i + jitter, s["to_fool"], color="C3", s=18)
        else:
            search_ax.scatter(i + jitter, s["presentations"] * 1.3, marker="^", facecolor="none", edgecolor="k", s=22)
    search_ax.axhline(search_cfg.budget, color="k", ls=":", lw=1)
    search_ax.set_yscale("log")
    search_ax.set_xlim(-0.5, len(names) - 0.5)
    search_ax.set_ylabel(f"presentations until p({digit}) > {search_cfg.threshold:g}\n"
                         "^: not within the budget (dotted)", fontsize=8)
    for ax in (accuracy_ax, static_ax, search_ax):
        ax.set_xticks(x, names, rotation=30, ha="right", fontsize=8)

    bottom.suptitle("each search's best image (network input, 0 black to 1 white) and the judges' verdicts", fontsize=8)
    images = bottom.subplots(max(len(seeds), 1), len(names), squeeze=False)
    for ax in images.ravel():
        ax.set_axis_off()
    for s in searches:
        if s["image"] is not None:
            ax = images[seeds.index(s["seed"]), names.index(s["condition"])]
            ax.imshow(s["image"][0], cmap="gray", vmin=0, vmax=1)
            verdict = "; ".join(f"{kind}: {v['heard'][0]}" for kind, v in s["judges"].items()) or "no judge"
            ax.set_title(f"{s['condition']}, seed {s['seed']}: p {s['best_p']:.3g}\n{verdict}", fontsize=7)
    return fig
