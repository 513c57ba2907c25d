"""sweep: one base protocol run over a grid of field values x seeds, each run with its own log.

    kind: sweep
    base: quickstart.yaml          # or an inline protocol mapping; a path is relative to this file
    grid:
      neuron.cell.noise_sigma: [0.02, 0.05]
      repeats: [1, 2]
      optimizer: [{kind: cmaes}, {kind: genetic}]   # whole sections, when kinds take other fields
    seeds: 3                       # or a list [0, 5, 9]

Every run's protocol is validated (and its components built once) before any run starts. Logs
go to <output>/run-<hash of the run's protocol>.h5, so a restarted sweep finds, and skips, the
runs already complete; summary.csv and summary.png are rewritten at the end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import Field
from tqdm.auto import tqdm

from closedloop.component import ProtocolPath, Settings
from closedloop.errors import ClosedLoopError, write_error
from closedloop.experiments.base import Experiment
from closedloop.registry import register


class SweepSettings(Settings):
    base: dict[str, Any] | ProtocolPath = Field(description="the protocol every run starts from, or its path")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="dotted field path -> values")
    seeds: int | list[int] | None = Field(None, description="a count (0..N-1) or a list; default the base's seed")
    output: str | None = Field(None, description="directory of the run logs; default data/<sweep name>")

    @property
    def seed(self) -> int:  # a sweep draws nothing itself
        return 0


@register("experiment", "sweep")
class Sweep(Experiment):
    Config = SweepSettings
    roles = ()
    writes_directory = True

    def __init__(self, protocol):
        super().__init__(protocol)
        from closedloop.errors import ProtocolError
        from closedloop.sweeps.grid import expand

        seeds = self.settings.seeds
        if isinstance(seeds, int) and seeds < 1 or isinstance(seeds, list) and not seeds:
            raise ProtocolError(f"{protocol.source}: seeds: expected a count >= 1 or a non-empty list")
        self.runs = expand(protocol.source, self.settings.base, self.settings.grid, seeds, self.default_output(),
                           protocol.directory)

    def default_output(self) -> Path:
        if self.settings.output:
            return Path(self.settings.output)
        return Path("data") / Path(self.protocol.source).stem

    def run(self, path=None, progress: bool = True, workers: int | None = None, scheduler=None,
            connect_timeout: float = 10.0) -> dict:
        out_dir = Path(path) if path is not None else self.default_output()
        runs = [self._relocate(spec, out_dir) for spec in self.runs]
        client = None
        if scheduler is not None and not all(_complete(spec.log) for spec in runs):
            client = _connect(scheduler, connect_timeout)  # before anything is written
        try:
            out_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(out_dir, exc, "cannot create the sweep's folder") from None
        try:
            return self._run(out_dir, runs, progress, workers, client)
        finally:
            if client is not None and client is not scheduler:
                client.close()

    def _run(self, out_dir, runs, progress, workers, client) -> dict:
        from closedloop.sweeps import execute, summary
        from closedloop.sweeps.measure import measure

        rows, pending = {}, []
        for spec in runs:
            if _complete(spec.log):
                rows[spec.index] = {**measure(spec.log, spec.text), "error": ""}
            else:
                pending.append({"index": spec.index, "text": spec.text, "source": spec.source, "log": str(spec.log),
                                "directory": spec.directory})
        bar = tqdm(total=len(runs), initial=len(rows), desc=f"sweep {out_dir.name}", unit="run",
                   disable=not progress)

        def done(row):
            rows[row["index"]] = row
            bar.update()

        try:
            if pending and client is not None:
                from closedloop.sweeps.dask import run_dask

                run_dask(pending, client, done)
            elif pending:
                execute.run_local(pending, workers, done)
        finally:
            bar.close()
        frame = summary.table(runs, rows)
        written = summary.write(frame, list(self.settings.grid), out_dir)
        failed = int((frame["status"] != "complete").sum())
        return {"status": "failed" if failed else "complete", "output": str(out_dir), "runs": len(runs),
                "skipped": len(runs) - len(pending), "failed": failed, "table": frame, **written}

    @staticmethod
    def _relocate(spec, out_dir: Path):
        from dataclasses import replace

        return replace(spec, log=out_dir / spec.log.name)

    def report(self, out, summary: dict, echo=print) -> None:
        from closedloop.sweeps.summary import report

        report(summary, echo)


def _connect(scheduler, timeout: float):
    try:
        from closedloop.sweeps.dask import connect
    except ImportError:
        raise ClosedLoopError("--scheduler needs dask.distributed: pip install 'closedloop[extras]'") from None
    return connect(scheduler, timeout)


def _complete(log: Path) -> bool:
    if not log.is_file():
        return False
    from closedloop.errors import ClosedLoopError
    from closedloop.recording import open_run

    try:
        with open_run(log) as run:
            return run.status == "complete"
    except (ClosedLoopError, OSError, KeyError, ValueError):
        return False
