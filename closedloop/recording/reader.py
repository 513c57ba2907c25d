"""Read a run log into tables; works on a run that is still being written (SWMR)."""

from __future__ import annotations

import difflib
import json
import os
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from closedloop.errors import ClosedLoopError, LogError, not_found, reason, shorten
from closedloop.recording.writer import (FORMAT, FORMAT_VERSION, GENERATION_COLUMNS, PHASES, STATUS, TRIAL_COLUMNS,
                                         describe, parameter_columns)


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise LogError(not_found(path, "run log"))
    if not h5py.is_hdf5(path):
        raise LogError(f"{path}: not an HDF5 file (truncated, or not a closedloop run log)")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        # a log still being written, or whose writer was killed, is marked open for (SWMR) write:
        # read it as an SWMR reader. Anything else fails fast here, because an SWMR open of a
        # truncated file retries its reads for minutes.
        if "already open for write" not in str(exc):
            raise LogError(f"{path}: cannot be opened as HDF5 ({_first_line(exc)})") from None
    try:
        return h5py.File(path, "r", libver="latest", swmr=True)
    except OSError as exc:
        raise LogError(f"{path}: cannot be opened as HDF5 ({_first_line(exc)})") from None


def _first_line(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


class Run:
    """One run log, read: `open_run(path)` or what `closedloop.run(...)` returns.

    Attributes hold what the log holds; methods (with parentheses) select or compute.

        run.trials        one row per presentation (stimulus, generation, repeat, phase, t_start,
                          response, clean, spike count, the neuron's state variables and, for
                          parametric stimuli, their parameters), a pandas DataFrame; units and
                          descriptions of its columns in run.trials.attrs["units"] / ["descriptions"]
        run.generations   one row per generation (best, mean, max, presentations, optimizer status)
        run.z             the latent vector of every stimulus; run.parameters names its columns
                          when the stimuli are parametric (tuning, fooling, ...)
        run.rendered(index)   the stimuli as presented (logged, or rendered again from z)
        run.saved_state   the neuron's and optimizer's state after each generation (for resume)
        run.config, run.protocol, run.seed, run.status, run.claim, run.response_unit, ...
        run.stimulus_means(), run.optimum(), run.best_per_generation(), run.ground_truth()
        run.numbers       the analysis' key numbers, when it was analysed (closedloop.run does)

    Tables are read on first use; each access gives a copy, yours to edit. `refresh()` re-reads a
    log that is still being written. Close it (or use `with open_run(path) as run:`) to release the file.
    """

    _numbers: dict | None = None

    def __init__(self, path):
        self.path = Path(path)
        self._file = _open(self.path)
        try:
            attrs = self.file.attrs
            if attrs.get("format") != FORMAT:
                raise LogError(f"{self.path}: not a closedloop run log (no '{FORMAT}' format attribute)")
            version = int(attrs.get("format_version", 0))
            if version > FORMAT_VERSION:
                raise LogError(f"{self.path}: log format version {version} is newer than this closedloop "
                               f"reads ({FORMAT_VERSION}); upgrade closedloop")
            for group in ("stimuli", "trials", "generations", "config"):
                if group not in self.file:
                    raise LogError(f"{self.path}: damaged run log: group '/{group}' is missing")
            self._check_layout()
        except LogError:
            self.file.close()
            raise
        except (OSError, KeyError, RuntimeError, ValueError, TypeError) as exc:
            self.file.close()
            raise LogError(f"{self.path}: damaged run log ({reason(exc)})") from None

    def _check_layout(self):
        """Every attribute and dataset the readers rely on is there, of the right kind and shape,
        so that a damaged log is refused here in one line, not deep inside an analysis."""
        attrs = self.file.attrs
        for name, kinds in (("protocol", str), ("kind", str), ("seed", (int, np.integer))):
            if not isinstance(attrs.get(name), kinds):
                raise LogError(f"{self.path}: damaged run log: attribute '{name}' is missing or not "
                               f"{'text' if kinds is str else 'a number'}")
        from closedloop import registry

        kind = attrs["kind"]
        if kind not in registry.names("experiment") or registry.lookup("experiment", kind).writes_directory:
            raise LogError(f"{self.path}: damaged run log: attribute 'kind' is {shorten(repr(kind), 40)}, not a "
                           f"kind of run this closedloop logs")
        for role, text in self.file["config"].attrs.items():
            try:
                if not isinstance(json.loads(text), dict):
                    raise ValueError
            except (ValueError, TypeError):
                raise LogError(f"{self.path}: damaged run log: configuration '{role}' is not a JSON "
                               f"mapping") from None
        expected = {"status": 1, "stimuli/z": 2, "stimuli/generation": 1, "spikes/times": 1,
                    "generations/recommended": 2,
                    **{f"trials/{name}": 1 for name in TRIAL_COLUMNS},
                    **{f"generations/{name}": 1 for name in GENERATION_COLUMNS}}
        expected.update({f"trials/state/{name}": 1 for name in self.file["trials"].get("state", {})})
        expected.update({f"state/{name}": 2 for name in self.file.get("state", {})})
        for name, ndim in expected.items():
            item = self.file.get(name)
            if not isinstance(item, h5py.Dataset):
                raise LogError(f"{self.path}: damaged run log: dataset '/{name}' is missing")
            if item.ndim != ndim or item.dtype.kind not in "iuf" or (name == "status" and item.shape != (1,)):
                raise LogError(f"{self.path}: damaged run log: dataset '/{name}' has shape {item.shape} "
                               f"and type {item.dtype}, not a {ndim}-D numeric array")
        if self.file["generations/recommended"].shape[1] != self.file["stimuli/z"].shape[1]:
            raise LogError(f"{self.path}: damaged run log: '/generations/recommended' and '/stimuli/z' "
                           f"differ in width")

    def __repr__(self) -> str:
        if not self._file.id.valid:
            return f"<closedloop Run {str(self.path)!r} (closed)>"
        neuron = self.config.get("neuron", {}).get("kind", "?")
        return (f"<closedloop Run {str(self.path)!r}: {self.kind} of a {neuron} neuron, {self.status}, "
                f"{self.file['trials/response'].shape[0]} presentations, {len(self._generations)} generations>")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    @property
    def file(self) -> h5py.File:
        """The open HDF5 file (read-only, SWMR)."""
        if not self._file.id.valid:
            raise ClosedLoopError(f"{self.path}: this Run was closed; open the log again (open_run)")
        return self._file

    def close(self):
        if self._file.id.valid:
            self._file.close()

    def refresh(self):
        """See what a writer appended since the log was opened (SWMR)."""
        self.file.visititems(lambda name, item: item.refresh() if isinstance(item, h5py.Dataset) else None)
        self.__dict__.pop("_trials", None)
        self.__dict__.pop("_generations", None)

    def describe(self, path: str) -> tuple[str, str]:
        """(units, description) of a dataset of the log, e.g. "trials/response": its attributes,
        or for a log written before datasets carried them, what this closedloop writes."""
        attrs = self.file[path].attrs if path in self.file else {}
        unit, text = describe(path, None, self.response_unit)
        value = attrs.get("units", unit)
        return (value if isinstance(value, str) else unit), str(attrs.get("description", text))

    def _read(self, name: str) -> np.ndarray:
        try:
            return self.file[name][()]
        except (OSError, KeyError, RuntimeError) as exc:
            raise LogError(f"{self.path}: damaged run log: cannot read '{name}' ({exc})") from None

    @property
    def protocol(self) -> str:
        return str(self.file.attrs["protocol"])

    @property
    def seed(self) -> int:
        return int(self.file.attrs["seed"])

    @property
    def kind(self) -> str:
        return str(self.file.attrs["kind"])

    @property
    def status(self) -> str:
        code = int(self._read("status")[0])
        return {v: k for k, v in STATUS.items()}.get(code, "unknown")

    @property
    def modality(self) -> str:
        return str(self.file.attrs.get("modality", "image"))

    @property
    def sample_rate(self) -> int:
        return int(self.file.attrs.get("sample_rate", 0))

    @property
    def response_unit(self) -> str:
        return str(self.file.attrs.get("response_unit", ""))

    @property
    def claim(self) -> tuple | None:
        """What the unit is said to detect, e.g. ("digit", 3), for independent judges; None if nothing."""
        text = str(self.file.attrs.get("claim", ""))
        try:
            value = json.loads(text) if text else None
        except ValueError:
            raise LogError(f"{self.path}: damaged run log: unreadable 'claim' attribute") from None
        return tuple(value) if isinstance(value, list) and len(value) == 2 else None

    @cached_property
    def config(self) -> dict[str, dict]:
        return {role: json.loads(text) for role, text in self.file["config"].attrs.items()}  # checked on opening

    @property
    def numbers(self) -> dict:
        """The key numbers of the run's analysis (what its report shows)."""
        if self._numbers is None:
            raise ClosedLoopError(f"{self.path}: this Run was not analysed, so it has no numbers: open it with "
                                  f"closedloop.open_run(path, analyse=True), or use closedloop.run (which analyses)")
        return self._numbers

    @numbers.setter
    def numbers(self, value: dict | None):
        self._numbers = value  # None: not analysed

    @property
    def trials(self) -> pd.DataFrame:
        """One row per presentation, in presentation order, with the stimulus parameters joined
        when the stimuli are parametric; units and descriptions in `.attrs`. A copy: editing it
        changes nothing the Run or its analyses see."""
        return self._trials.copy()

    @property
    def generations(self) -> pd.DataFrame:
        """One row per complete generation; units and descriptions in `.attrs`. A copy, as `trials`."""
        return self._generations.copy()

    @cached_property
    def _trials(self) -> pd.DataFrame:
        group = self.file["trials"]
        logged = [name for name in group if isinstance(group[name], h5py.Dataset)]
        paths = [f"trials/{name}" for name in [*[c for c in TRIAL_COLUMNS if c in logged],
                                               *[c for c in logged if c not in TRIAL_COLUMNS]]]
        paths += [f"trials/state/{name}" for name in group.get("state", {})]
        n = min(self.file[path].shape[0] for path in paths)  # a batch may be half-appended while written
        table = {path.rsplit("/", 1)[1]: self._read(path)[:n] for path in paths}
        n = self._check_rows("trials", n, {
            "the stimulus index is out of range": (table["stimulus"] < 0) | (table["stimulus"] >= len(self.file["stimuli/z"])),
            "the phase is not one of search, reference, retest": ~np.isin(table["phase"], list(PHASES.values())),
            "the response is NaN or Inf": ~np.isfinite(table["response"]),
            "the spikes lie outside '/spikes/times'": (table["spike_start"] < 0) | (table["spike_count"] < 0)
            | (table["spike_start"] + table["spike_count"] > len(self.file["spikes/times"])),
        })
        frame = pd.DataFrame({name: values[:n] for name, values in table.items()})
        frame["phase"] = pd.Categorical.from_codes(frame["phase"], categories=list(PHASES))
        units = {path.rsplit("/", 1)[1]: self.describe(path) for path in paths}
        columns = self._parameter_columns()
        if columns and n:
            z = self.z[frame["stimulus"].to_numpy()]
            for k, (name, unit, categories) in enumerate(columns):
                values = z[:, k].astype(np.float64)
                if categories:
                    frame[name] = pd.Categorical.from_codes(values.astype(int), categories=categories)
                else:
                    frame[name] = values
                units[name] = (unit, f"stimulus parameter {name}")
        return _with_units(frame, units)

    @cached_property
    def _generations(self) -> pd.DataFrame:
        group = self.file["generations"]
        columns = [name for name in group if group[name].ndim == 1]
        columns = [*[c for c in GENERATION_COLUMNS if c in columns], *[c for c in columns if c not in GENERATION_COLUMNS]]
        # a generation counts once all its rows are in: its summary, recommendation and saved state
        per_generation = [group[name] for name in group] + list(self.file.get("state", {}).values())
        n = min(dataset.shape[0] for dataset in per_generation)
        table = {name: self._read(f"generations/{name}")[:n] for name in columns}
        best = table["best_stimulus"]
        n = self._check_rows("generations", n, {
            "the best stimulus is out of range": (best < -1) | (best >= len(self.file["stimuli/z"]))})
        frame = pd.DataFrame({name: values[:n] for name, values in table.items()})
        return _with_units(frame, {name: self.describe(f"generations/{name}") for name in columns})

    def _check_rows(self, table: str, n: int, problems: dict) -> int:
        """The rows to use: all of them, or, while the log is still written, those before the first
        row a reader may see half-written; a closed or abandoned log with a bad row is refused."""
        for what, bad in problems.items():
            if np.any(bad):
                rows = np.nonzero(bad)[0]
                if self.status == "running" and self._writer_alive():
                    n = min(n, int(rows[0]))
                    continue
                raise LogError(f"{self.path}: damaged run log: in {len(rows)} rows of '/{table}' {what} "
                               f"(first: row {rows[0]})")
        return n

    def _writer_alive(self) -> bool:
        from closedloop.recording.writer import is_locked

        return is_locked(self.path)

    @property
    def parameters(self) -> list[str]:
        """Names of the stimulus parameters (the columns of `z`) when the stimuli are parametric,
        as they appear in `trials`; empty for a searched latent space."""
        return [name for name, _, _ in self._parameter_columns()]

    def _parameter_columns(self) -> list[tuple[str, str, list | None]]:
        attrs = self.file["stimuli/z"].attrs
        if "columns" not in attrs:  # a log written before /stimuli/z named its columns
            return parameter_columns(self.config.get("space", {}))
        names = [str(name) for name in attrs["columns"]]
        units = [str(unit) for unit in np.atleast_1d(attrs.get("units", ["1"] * len(names)))]
        return [(name, unit, [str(c) for c in attrs[f"{name}_categories"]] if f"{name}_categories" in attrs else None)
                for name, unit in zip(names, units)]

    @property
    def protocol_dir(self) -> str:
        """The folder where relative paths of the run's protocol resolved ("" for older logs)."""
        return str(self.file.attrs.get("protocol_dir", ""))

    @property
    def created(self) -> str:
        return str(self.file.attrs.get("created", ""))

    @property
    def z(self) -> np.ndarray:
        return self._read("stimuli/z")

    @property
    def stimulus_generation(self) -> np.ndarray:
        """The generation each logged stimulus was made for (-1: reference stimuli, made before)."""
        return self._read("stimuli/generation")

    def stimuli_of_generation(self, generation: int) -> np.ndarray:
        """The stimuli made for a generation (-1: the reference stimuli, when the run showed some)."""
        made = self.stimulus_generation
        low = -1 if np.any(made == -1) else 0
        generation = self._number(generation, "generations", low, int(made.max()) + 1 if made.size else 0)
        return np.nonzero(made == generation)[0]

    @property
    def recommended(self) -> np.ndarray:
        return self._read("generations/recommended")

    def rendered(self, index=None) -> np.ndarray | None:
        """The stimuli as presented (all, or these indices in this order): as logged or, when the
        run did not record them, rendered again from their latents by the run's space (rendering
        is deterministic, so these are the stimuli shown). None when neither is possible."""
        if index is not None:
            index = self._stimulus_indices(index)
        if "rendered" in self.file["stimuli"]:
            data = self.file["stimuli/rendered"]
            if index is None:
                return data[()]
            # HDF5 reads rows by increasing, distinct index: read those, then put them in the asked order
            unique, inverse = np.unique(index, return_inverse=True)
            return data[unique][inverse]
        space = self._space()
        if space is None:
            return None
        z = self.z if index is None else self.z[index]
        return np.asarray(space.render(z.astype(np.float64)))

    def _stimulus_indices(self, index) -> np.ndarray:
        """Stimulus numbers as a 1-d integer array, or an IndexError that names the valid range."""
        count = len(self.file["stimuli/z"])
        indices = np.atleast_1d(np.asarray(index))
        if indices.size == 0:
            return indices.astype(np.int64)
        if indices.ndim != 1 or indices.dtype.kind not in "iu" or indices.min() < 0 or indices.max() >= count:
            shown = np.array2string(indices, threshold=6)
            raise IndexError(f"{self.path}: stimulus numbers run from 0 to {count - 1}; got {shown}")
        return indices.astype(np.int64)

    def _number(self, value, what: str, low: int, end: int) -> int:
        """`value` as an int from `low` to `end - 1`, or an IndexError that names the valid range."""
        # a whole float too: a row of a table (run.generations.iloc[-1]) holds its integers as floats
        whole = (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) or (
            isinstance(value, (float, np.floating)) and float(value).is_integer())
        if whole and low <= value < end:
            return int(value)
        valid = f"{what} run from {low} to {end - 1}" if end > low else f"no {what} are logged yet"
        raise IndexError(f"{self.path}: {valid}; got {int(value) if whole else shorten(repr(value), 40)}")

    def _unknown(self, what: str, value, valid) -> ClosedLoopError:
        close = difflib.get_close_matches(value, valid, n=1) if isinstance(value, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        return ClosedLoopError(f"{self.path}: unknown {what} {shorten(repr(value), 40)}{hint} "
                               f"(one of: {', '.join(valid)})")

    def _space(self):
        if "_space_built" not in self.__dict__:
            space = None
            if self.config.get("space", {}).get("kind") != "parameters":  # a stand-in that cannot render
                try:
                    space = self.build("space")
                except (ClosedLoopError, KeyError, ValueError, NotImplementedError):
                    space = None
            self.__dict__["_space_built"] = space
        return self.__dict__["_space_built"]

    def build(self, role: str, allowed_imports=()):
        """A role (space, neuron, optimizer) of the run, built again from its logged protocol. A log
        never runs code by itself: a section that imports a module needs it named in `allowed_imports`."""
        from closedloop import protocol as protocol_module

        protocol = protocol_module.parse(self.protocol, f"{self.path} (its protocol)",
                                         allowed_imports=allowed_imports, directory=self.protocol_dir or None)
        if not isinstance(role, str) or role not in protocol.sections:
            raise self._unknown("role", role, list(protocol.sections))
        return protocol.build(role)

    def spike_times(self, trial: int) -> np.ndarray:
        """The spike times of a presentation (a row of `trials`)."""
        trials = self._trials
        trial = self._number(trial, "trial numbers", 0, len(trials))
        start, count = int(trials["spike_start"].iat[trial]), int(trials["spike_count"].iat[trial])
        return self.file["spikes/times"][start:start + count]

    def ground_truth(self) -> dict[str, np.ndarray]:
        """What the neuron knew about itself (receptive_field, optimal_stimulus, optimum_response...)."""
        group = self.file.get("neuron")
        return {} if group is None else {name: self._read(f"neuron/{name}") for name in group}

    @property
    def receptive_field(self) -> np.ndarray | None:
        return self.ground_truth().get("receptive_field")

    @property
    def state_columns(self) -> list[str]:
        """The neuron's per-trial state variables (columns of `trials`)."""
        return list(self.file["trials"].get("state", {}))

    @property
    def saved_state(self) -> dict[str, np.ndarray]:
        """The neuron's and optimizer's state after each generation ("neuron.clock", ...), one
        row per generation: what `closedloop resume` restores."""
        return {name: self._read(f"state/{name}") for name in self.file.get("state", {})}

    def stimulus_means(self, phase: str = "search") -> pd.DataFrame:
        """Mean, spread, count and standard error of the responses to each stimulus."""
        if not isinstance(phase, str) or phase not in PHASES:
            raise self._unknown("phase", phase, list(PHASES))
        trials = self._trials[self._trials["phase"] == phase]
        means = means_by_stimulus(trials["stimulus"].to_numpy(), trials["response"].to_numpy())
        unit = self.response_unit
        return _with_units(means, {"mean": (unit, "mean response"), "std": (unit, "standard deviation"),
                                   "n": ("1", "presentations"), "sem": (unit, "standard error of the mean")})

    def best_per_generation(self) -> list[int]:
        """The stimulus with the highest mean search response in each generation."""
        means = self.stimulus_means()
        means["generation"] = self.stimulus_generation[means.index.to_numpy()]
        return [int(group["mean"].idxmax()) for _, group in means.groupby("generation")]

    def optimum(self) -> dict | None:
        """The run's best stimulus and response: the best re-tested mean when the run re-tested its
        top stimuli (a mean over many repeats, not a lucky maximum), else the best search score."""
        retest = self.stimulus_means("retest")
        if len(retest):
            top = retest["mean"].idxmax()
            return {"response": float(retest.loc[top, "mean"]), "stimulus": int(top), "retested": True,
                    "sem": float(retest.loc[top, "sem"]), "repeats": int(retest.loc[top, "n"]),
                    "candidates": int(len(retest))}
        generations = self._generations
        if generations.empty or not np.isfinite(generations["best"].iloc[-1]):
            return None
        last = generations.iloc[-1]
        return {"response": float(last["best"]), "stimulus": int(last["best_stimulus"]), "retested": False}


def _with_units(frame: pd.DataFrame, units: dict[str, tuple[str, str]]) -> pd.DataFrame:
    frame.attrs["units"] = {name: unit for name, (unit, _) in units.items()}
    frame.attrs["descriptions"] = {name: text for name, (_, text) in units.items()}
    return frame


def means_by_stimulus(stimulus: np.ndarray, response: np.ndarray) -> pd.DataFrame:
    """Mean, standard deviation, count and standard error of the mean of the responses to each
    stimulus, indexed by stimulus."""
    grouped = pd.Series(response, index=pd.Index(stimulus, name="stimulus")).groupby(level=0)
    table = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()})
    table["sem"] = table["std"] / np.sqrt(table["n"])
    return table


def open_run(path) -> Run:
    """The run log at `path`, read (see Run)."""
    if not isinstance(path, (str, os.PathLike)):
        raise LogError(f"open_run: expected the path of a run log (a str or Path), got {shorten(repr(path), 60)}")
    return Run(path)
