"""One self-contained HTML page per run: key numbers, figures (embedded PNG), protocol, config."""

from __future__ import annotations

import base64
import html
import json
from datetime import datetime, timezone
from pathlib import Path

STYLE = """body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
table{border-collapse:collapse}td,th{border-bottom:1px solid #ddd;padding:3px 10px;text-align:left}
pre{background:#f6f6f6;padding:.8em;overflow-x:auto}img{max-width:100%}h1{font-size:1.4em}"""


def key_numbers(numbers: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Scalar entries of an analysis result, nested dicts flattened to dotted names."""
    rows = []
    for name, value in numbers.items():
        if name in ("lines", "figure", "figures", "report"):
            continue
        label = f"{prefix}{name}"
        if isinstance(value, dict):
            if len(value) <= 40:
                rows += key_numbers(value, f"{label}.")
        elif isinstance(value, (int, float, str, bool)) or value is None:
            rows.append((label, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows


def figures_of(numbers: dict) -> list[Path]:
    paths = [numbers.get("figure")] + list(numbers.get("figures", []))
    return [Path(p) for p in paths if p and Path(p).is_file()]


def embed(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<figure><img alt="{html.escape(path.stem)}" src="data:image/png;base64,{data}"></figure>'


def render(run, numbers: dict) -> str:
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in key_numbers(numbers))
    summary = html.escape("\n".join(numbers.get("lines", [])))
    config = html.escape(json.dumps(run.config, indent=2))
    when = datetime.now(timezone.utc).isoformat(timespec="seconds")
    status = html.escape(run.status)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(run.kind)}: {html.escape(run.path.name)}</title>
<style>{STYLE}</style></head><body>
<h1>{html.escape(run.kind)} run <code>{html.escape(run.path.name)}</code> ({status})</h1>
<p>Log {html.escape(str(run.path))}, created {html.escape(run.created)};
report written {when}{' while the run was still being written' if status == 'running' else ''}.</p>
<h2>Summary</h2><pre>{summary}</pre>
<h2>Key numbers</h2><table><tr><th>quantity</th><th>value</th></tr>{rows}</table>
<h2>Figures</h2>{''.join(embed(p) for p in figures_of(numbers))}
<h2>Protocol</h2><pre>{html.escape(run.protocol)}</pre>
<h2>Configuration (resolved)</h2><pre>{config}</pre>
</body></html>
"""


def write_report(run, numbers: dict, path) -> str:
    path = Path(path)
    path.write_text(render(run, numbers), encoding="utf-8")
    return str(path)
