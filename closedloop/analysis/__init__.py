"""Analysis of run logs: one module per protocol kind, each with `analyze(run, out_dir)`.

`analyze` returns the key numbers (a dict), writes its figures and a self-contained HTML report
beside the log (RUN.html); `report_run` prints them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from closedloop.analysis.report import write_report
from closedloop.recording import open_run


def analyze(path, out_dir=None) -> dict:
    path = Path(path)
    out_dir = Path(out_dir) if out_dir else path.with_suffix("")
    with open_run(path) as run:
        try:
            module = importlib.import_module(f"closedloop.analysis.{run.kind}")
        except ModuleNotFoundError:
            module = importlib.import_module("closedloop.analysis.evolve")
        out_dir.mkdir(parents=True, exist_ok=True)
        numbers = module.analyze(run, out_dir)
        numbers["report"] = write_report(run, numbers, path.with_suffix(".html"))
        numbers.setdefault("lines", []).append(f"report: {numbers['report']}")
        return numbers


def report_run(path, summary=None, echo=print) -> dict:
    numbers = analyze(path)
    for line in numbers.pop("lines", []):
        echo(line)
    return numbers
