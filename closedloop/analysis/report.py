"""One self-contained HTML page per run: key numbers with their units, every figure of the
analysis (embedded PNG), a player for every sound it wrote (embedded WAV), protocol, config."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}
td.unit{color:#666}pre{background:#f6f6f6;padding:.8em;overflow-x:auto}img{max-width:100%}h1{font-size:1.4em}
figure{margin:1em 0}figcaption{font-size:.9em;color:#444}.sounds{display:flex;flex-wrap:wrap;gap:1em}"""
NOT_NUMBERS = ("lines", "figure", "figures", "report", "units", "sounds")
RESPONSE = "{response} per presentation"
# units of the numbers the analyses share, by name; an analysis adds its own in numbers["units"]
UNITS = {
    "presentations": "presentations", "generations": "generations", "stimuli": "stimuli", "blocks": "blocks",
    "grid_points": "grid points", "sessions": "sessions", "hits": "stimuli", "n": "stimuli", "of": "stimuli",
    "accepted": "stimuli", "best_response": RESPONSE, "best_clean_response": RESPONSE, "mean_response": RESPONSE,
    "peak_response": RESPONSE, "retest_best_response": RESPONSE, "retest_sem": RESPONSE, "threshold": RESPONSE,
    "reference_optimum": RESPONSE, "rate": "probability", "low": "probability", "high": "probability",
    "f0": "Hz", "hnr_db": "dB", "voiced_fraction": "fraction of frames", "periodicity": "0 to 1",
    "spectral_flatness": "0 (tone) to 1 (white noise)", "fano_factor": "variance / mean",
    "fano_factor_within_blocks": "variance / mean", "relative_response_sd": "fraction of the mean",
    "reliability": "0 to 1 (Spearman-Brown)", "split_half_r": "Pearson r", "presentations_to_best": "presentations",
    "retest_best_stimulus": "stimulus index", "stc_filters": "filters",
}


def unit_of(label: str, numbers: dict, response_unit: str) -> str:
    """The unit of a key number: what the analysis says, else the shared table; correlations are r."""
    own = numbers.get("units", {})
    parts = label.split(".")
    unit = own.get(label, own.get(parts[-1], UNITS.get(parts[-1])))
    if unit is None and (parts[-1].endswith("correlation") or any(p.endswith("correlation") for p in parts[:-1])):
        unit = "Pearson r"
    return (unit or "").replace("{response}", response_unit or "response")


def key_numbers(numbers: dict, prefix: str = "", response_unit: str = "",
                root: dict | None = None) -> list[tuple[str, str, str]]:
    """(name, value, unit) of the scalar entries of an analysis result, nested dicts flattened to
    dotted names."""
    root = numbers if root is None else root
    rows = []
    for name, value in numbers.items():
        if not prefix and name in NOT_NUMBERS:
            continue
        label = f"{prefix}{name}"
        if isinstance(value, dict):
            if len(value) <= 40:
                rows += key_numbers(value, f"{label}.", response_unit, root)
        elif isinstance(value, (int, float, str, bool)) or value is None:
            text = f"{value:.4g}" if isinstance(value, float) else str(value)
            rows.append((label, text, unit_of(label, root, response_unit) if not isinstance(value, str) else ""))
    return rows


def figures_of(numbers: dict) -> list[Path]:
    paths = [numbers.get("figure")] + list(numbers.get("figures", []))
    return list(dict.fromkeys(Path(p) for p in paths if p and Path(p).is_file()))


def embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def player(label: str, path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return (f'<figure><figcaption>{html.escape(label)}</figcaption>'
            f'<audio controls preload="auto" src="data:audio/wav;base64,{data}"></audio></figure>')


def render(run, numbers: dict) -> str:
    rows = "".join(f'<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td><td class="unit">{html.escape(u)}</td></tr>'
                   for k, v, u in key_numbers(numbers, response_unit=run.response_unit))
    summary = html.escape("\n".join(numbers.get("lines", [])))
    config = html.escape(json.dumps(run.config, indent=2))
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    status = html.escape(run.status)
    sounds = [(label, Path(path)) for label, path in numbers.get("sounds", {}).items() if Path(path).is_file()]
    listen = (f'<h2>Listen</h2><div class="sounds">{"".join(player(label, path) for label, path in sounds)}</div>'
              if sounds else "")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.kind)}: {html.escape(run.path.name)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(run.kind)} run <code>{html.escape(run.path.name)}</code> ({status})</h1>
<p>Log {html.escape(str(run.path))}, created {html.escape(run.created)};
report written {when}{' while the run was still being written' if status == 'running' else ''}.</p>
<h2>Summary</h2><pre>{summary}</pre>
<h2>Key numbers</h2><table><tr><th>quantity</th><th>value</th><th>unit</th></tr>{rows}</table>
<h2>Figures</h2>{''.join(embed(p) for p in figures_of(numbers))}
{listen}
<h2>Protocol</h2><pre>{html.escape(run.protocol)}</pre>
<h2>Configuration (resolved)</h2><pre>{config}</pre>
</body></html>
"""


def write_report(run, numbers: dict, path) -> str:
    path = Path(path)
    path.write_text(render(run, numbers), encoding="utf-8")
    return str(path)
