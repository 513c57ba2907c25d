"""Read a run log into tables; works on a run that is still being written (SWMR)."""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from closedloop.errors import LogError
from closedloop.recording.writer import FORMAT, FORMAT_VERSION, PHASES, STATUS


def _open(path: Path) -> h5py.File:
    if not path.is_file():
        raise LogError(f"{path}: no such run log")
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
    """One run log. Tables are read on first use; `refresh()` re-reads a growing log."""

    def __init__(self, path):
        self.path = Path(path)
        self.file = _open(self.path)
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
        except LogError:
            self.file.close()
            raise
        except (OSError, KeyError, RuntimeError) as exc:
            self.file.close()
            raise LogError(f"{self.path}: damaged run log ({exc})") from None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.file.id.valid:
            self.file.close()

    def refresh(self):
        """See what a writer appended since the log was opened (SWMR)."""
        self.file.visititems(lambda name, item: item.refresh() if isinstance(item, h5py.Dataset) else None)
        self.__dict__.pop("trials", None)
        self.__dict__.pop("generations", None)

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
        return {role: json.loads(text) for role, text in self.file["config"].attrs.items()}

    @cached_property
    def trials(self) -> pd.DataFrame:
        """One row per presentation, in presentation order."""
        group = self.file["trials"]
        paths = [f"trials/{name}" for name in group if isinstance(group[name], h5py.Dataset)]
        paths += [f"trials/state/{name}" for name in group.get("state", {})]
        n = min(self.file[path].shape[0] for path in paths)  # a batch may be half-appended while written
        table = {path.rsplit("/", 1)[1]: self._read(path)[:n] for path in paths}
        frame = pd.DataFrame(table)
        frame["phase"] = pd.Categorical.from_codes(frame["phase"], categories=list(PHASES))
        return frame

    @cached_property
    def generations(self) -> pd.DataFrame:
        group = self.file["generations"]
        columns = [name for name in group if group[name].ndim == 1]
        # a generation counts once all its rows are in: its summary, recommendation and saved state
        per_generation = [group[name] for name in group] + list(self.file.get("state", {}).values())
        n = min(dataset.shape[0] for dataset in per_generation)
        return pd.DataFrame({name: self._read(f"generations/{name}")[:n] for name in columns})

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
        return np.nonzero(self.stimulus_generation == generation)[0]

    @property
    def recommended(self) -> np.ndarray:
        return self._read("generations/recommended")

    def rendered(self, index=None) -> np.ndarray | None:
        """Stimuli as presented, if the run recorded them."""
        if "rendered" not in self.file["stimuli"]:
            return None
        data = self.file["stimuli/rendered"]
        if index is None:
            return data[()]
        # HDF5 reads rows by increasing, distinct index: read those, then put them in the asked order
        unique, inverse = np.unique(np.atleast_1d(index), return_inverse=True)
        return data[unique][inverse]

    def spike_times(self, trial: int) -> np.ndarray:
        start = int(self.file["trials/spike_start"][trial])
        count = int(self.file["trials/spike_count"][trial])
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

    def state(self, name: str) -> np.ndarray:
        return self._read(f"state/{name}")

    def stimulus_means(self, phase: str = "search") -> pd.DataFrame:
        """Mean, spread, count and standard error of the responses to each stimulus."""
        trials = self.trials[self.trials["phase"] == phase]
        return means_by_stimulus(trials["stimulus"].to_numpy(), trials["response"].to_numpy())

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
        generations = self.generations
        if generations.empty or not np.isfinite(generations["best"].iloc[-1]):
            return None
        last = generations.iloc[-1]
        return {"response": float(last["best"]), "stimulus": int(last["best_stimulus"]), "retested": False}


def means_by_stimulus(stimulus: np.ndarray, response: np.ndarray) -> pd.DataFrame:
    """Mean, standard deviation, count and standard error of the mean of the responses to each
    stimulus, indexed by stimulus."""
    grouped = pd.Series(response, index=pd.Index(stimulus, name="stimulus")).groupby(level=0)
    table = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()})
    table["sem"] = table["std"] / np.sqrt(table["n"])
    return table


def open_run(path) -> Run:
    return Run(path)
