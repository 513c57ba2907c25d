"""Analysis of run logs: one module per protocol kind, each with `analyze(run, out_dir)`.

`analyze` returns the key numbers (a dict), writes its figures and a self-contained HTML report
beside the log (RUN.html); `report_run` prints them.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from closedloop import registry
from closedloop.analysis.report import write_report
from closedloop.errors import ClosedLoopError, LogError
from closedloop.recording import open_run


def analysis_module(run):
    """The analysis of the run's protocol kind: the module its experiment class names."""
    try:
        experiment = registry.lookup("experiment", run.kind)
    except KeyError:
        raise LogError(f"{run.path}: the log's protocol kind {run.kind!r} is not one this closedloop knows") from None
    name = experiment.analysis or f"closedloop.analysis.{run.kind}"
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ClosedLoopError(f"{run.path}: the analysis of {run.kind!r} runs ({name}) cannot be imported: "
                              f"{exc}") from None


def analyze(path, out_dir=None) -> dict:
    path = Path(path)
    out_dir = Path(out_dir) if out_dir else path.with_suffix("")
    with open_run(path) as run:
        module = analysis_module(run)
        run.trials, run.generations  # a damaged table is refused before anything is written
        out_dir.mkdir(parents=True, exist_ok=True)
        numbers = module.analyze(run, out_dir)
        numbers["report"] = write_report(run, numbers, path.with_suffix(".html"))
        numbers.setdefault("lines", []).append(f"report: {numbers['report']}")
        return numbers


def report_run(path, echo=print) -> dict:
    """Analyse the log and print its key numbers: what a run returns is what its report shows."""
    numbers = analyze(path)
    for line in numbers.pop("lines", []):
        echo(line)
    return numbers
