"""Analysis of run logs: one module per protocol kind, each with `analyze(run, out_dir)`.

`analyze` returns the key numbers (a dict), writes its figures and a self-contained HTML report
beside the log (RUN.html); `report_run` prints them.
"""

from __future__ import annotations

import importlib
import shutil
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


def figures_folder(log) -> Path:
    """Where a log's figures and sounds go: beside it, named as the log without its suffix."""
    log = Path(log)
    return log.with_suffix("") if log.suffix else log.with_name(f"{log.name}-figures")


def check_report_places(log) -> None:
    """Before a run: refuse a log whose figures folder or report page cannot be made (a file where
    the folder goes, a folder where the page goes), which would leave the run logged, its report lost."""
    folder, page = figures_folder(log), Path(log).with_suffix(".html")
    if folder.exists() and not folder.is_dir():
        raise ClosedLoopError(f"{folder}: a file, where the run's figures folder goes; move it or give another --out")
    if page.is_dir():
        raise ClosedLoopError(f"{page}: a folder, where the run's report goes; move it or give another --out")


def analyze(path, out_dir=None) -> dict:
    path = Path(path)
    out_dir = Path(out_dir) if out_dir else figures_folder(path)
    with open_run(path) as run:
        module = analysis_module(run)
        run.trials, run.generations, run.claim  # a damaged table or attribute is refused before anything is written
        created = not out_dir.exists()
        out_dir.mkdir(parents=True, exist_ok=True)
        try:
            numbers = module.analyze(run, out_dir)
            numbers["report"] = write_report(run, numbers, path.with_suffix(".html"))
        except BaseException:
            if created:  # nothing half-written: a folder this analysis made goes with it
                shutil.rmtree(out_dir, ignore_errors=True)
            raise
        numbers.setdefault("lines", []).append(f"report: {numbers['report']}")
        return numbers


def report_run(path, echo=print) -> dict:
    """Analyse the log and print its key numbers: what a run returns is what its report shows."""
    numbers = analyze(path)
    for line in numbers.pop("lines", []):
        echo(line)
    return numbers
