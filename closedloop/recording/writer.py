"""Append-only HDF5 trial log, written in SWMR mode and flushed after every generation.

Layout (every object is an array, number or text; no pickles):

/                     attrs: format, format_version, package_version, protocol (YAML text), seed,
                      kind, created, modality, stimulus_shape, sample_rate, response_unit,
                      claim (JSON [category, value], what the unit is said to detect, or "")
/config               attrs: neuron, space, optimizer, experiment: resolved configuration, JSON
/status               int8 [1]: 0 running, 1 complete, 2 interrupted, 3 failed
/neuron/<name>        ground truth the neuron knows (receptive_field, ...)
/stimuli/z            (n, dim) float32        latent vectors, one row per stimulus shown
/stimuli/generation   (n,) int32
/stimuli/rendered     (n, *shape) float32     optional, compressed
/trials/<column>      (n_trials,)             stimulus, generation, repeat, phase, t_start,
                                              response, clean, spike_start, spike_count
/trials/state/<name>  (n_trials,) float64     the neuron's state variables
/spikes/times         (n_spikes,) float64     s from onset; trial k owns
                                              times[spike_start[k] : spike_start[k] + spike_count[k]]
/generations/<column> (n_generations,)        generation, presentations, best, mean, max,
                                              best_stimulus, wall_time and the optimizer's status
/generations/recommended (n_generations, dim) the optimizer's recommendation after each tell
/state/<name>         (n_generations, k)      neuron and optimizer state after each generation
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

import closedloop
from closedloop.errors import ClosedLoopError

FORMAT = "closedloop-run"
FORMAT_VERSION = 1
STATUS = {"running": 0, "complete": 1, "interrupted": 2, "failed": 3}
TRIAL_COLUMNS = {
    "stimulus": np.int64, "generation": np.int32, "repeat": np.int32, "phase": np.int8,
    "t_start": np.float64, "response": np.float64, "clean": np.float64,
    "spike_start": np.int64, "spike_count": np.int64,
}
# phases of a trial: the search itself, reference stimuli re-shown to track drift, a final re-test
PHASES = {"search": 0, "reference": 1, "retest": 2}
GENERATION_COLUMNS = {
    "generation": np.int32, "presentations": np.int64, "best": np.float64, "mean": np.float64,
    "max": np.float64, "best_stimulus": np.int64, "wall_time": np.float64,
}


def _resizable(group, name, dtype, shape=(), compress=False):
    return group.create_dataset(
        name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
        chunks=(max(1, min(1024, 65536 // max(1, int(np.prod(shape)) * 4))), *shape),
        **({"compression": "gzip", "compression_opts": 4} if compress else {}),
    )


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


def lock(path: Path) -> int:
    """Hold an exclusive lock beside the log while writing it, so no second process (a resume of
    a run that is still going, say) writes it too. The OS drops the lock when a writer dies."""
    fd = os.open(_lock_path(path), os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ClosedLoopError(f"{path}: is being written by another closedloop process; wait for it or stop it") from None
    return fd


def unlock(path: Path, fd: int) -> None:
    try:
        _lock_path(path).unlink()
    except FileNotFoundError:
        pass
    os.close(fd)


def _append(dataset, values):
    values = np.asarray(values, dtype=dataset.dtype)
    start = dataset.shape[0]
    dataset.resize(start + len(values), axis=0)
    dataset[start:] = values
    return start


class RunWriter:
    """Create a run log; every object is created up front, because SWMR forbids new ones later."""

    def __init__(self, path, *, protocol_text: str, seed: int, kind: str, configs: dict[str, dict],
                 dim: int, stimulus_shape: tuple[int, ...], modality: str, response_unit: str,
                 state_columns=(), status_columns=(), state_shapes: dict[str, int] | None = None,
                 record_rendered: bool = True, sample_rate: int | None = None,
                 neuron_arrays: dict[str, np.ndarray] | None = None, created: str | None = None,
                 claim: tuple | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.lock = lock(self.path)
        # built under a temporary name and renamed once in SWMR mode, so that a log that exists
        # is always readable and resumable, however early its writer is killed
        building = self.path.with_name(f".{self.path.name}.part")
        self.file = h5py.File(building, "w", libver="latest")
        f = self.file
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": closedloop.__version__,
            "protocol": protocol_text, "seed": seed, "kind": kind,
            "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "modality": modality, "stimulus_shape": np.asarray(stimulus_shape, dtype=np.int64),
            "sample_rate": sample_rate or 0, "response_unit": response_unit,
            "claim": json.dumps(list(claim)) if claim else "",
        })
        config = f.create_group("config")
        for role, value in configs.items():
            config.attrs[role] = json.dumps(value)
        f.create_dataset("status", data=np.array([STATUS["running"]], dtype=np.int8))
        known = f.create_group("neuron")  # ground truth the neuron knows, e.g. its receptive field
        for name, values in (neuron_arrays or {}).items():
            known.create_dataset(name, data=np.asarray(values))
        stimuli = f.create_group("stimuli")
        _resizable(stimuli, "z", np.float32, (dim,))
        _resizable(stimuli, "generation", np.int32)
        if record_rendered:
            _resizable(stimuli, "rendered", np.float32, tuple(stimulus_shape), compress=True)
        trials = f.create_group("trials")
        for name, dtype in TRIAL_COLUMNS.items():
            _resizable(trials, name, dtype)
        state = trials.create_group("state")
        for name in state_columns:
            _resizable(state, name, np.float64)
        _resizable(f.create_group("spikes"), "times", np.float64)
        generations = f.create_group("generations")
        for name, dtype in GENERATION_COLUMNS.items():
            _resizable(generations, name, dtype)
        for name in status_columns:
            _resizable(generations, name, np.float64)
        _resizable(generations, "recommended", np.float32, (dim,))
        saved = f.create_group("state")
        for name, width in (state_shapes or {}).items():
            _resizable(saved, name, np.float64, (width,))
        self._start()
        os.replace(building, self.path)

    def _start(self):
        f = self.file
        f.swmr_mode = True
        f.flush()
        self.state_columns = tuple(f["trials/state"])
        self.status_columns = tuple(name for name in f["generations"]
                                    if name not in GENERATION_COLUMNS and name != "recommended")
        self.n_stimuli = f["stimuli/z"].shape[0]
        self.started = time.perf_counter() - (float(f["generations/wall_time"][-1])
                                              if f["generations/wall_time"].shape[0] else 0.0)

    @classmethod
    def reopen(cls, path) -> "RunWriter":
        """Continue appending to a log that was closed cleanly (see copy_complete_generations)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.lock = lock(self.path)
        self.file = h5py.File(self.path, "a", libver="latest")
        self.file["status"][0] = STATUS["running"]
        self._start()
        return self

    def copy_complete_generations(self, run, generations: int) -> None:
        """Copy the first `generations` generations of another log (a reader's Run, opened in
        SWMR mode, so a crashed one works too) into this fresh one: whatever was in flight is
        left behind."""
        f, source = self.file, run.file
        trial_rows = int(np.sum(source["trials/generation"][()] < generations))
        stimulus_rows = int(np.sum(source["stimuli/generation"][()] < generations))
        ends = source["trials/spike_start"][:trial_rows] + source["trials/spike_count"][:trial_rows]
        spike_rows = int(ends.max()) if trial_rows else 0
        rows = {"stimuli": stimulus_rows, "trials": trial_rows, "spikes": spike_rows,
                "generations": generations, "state": generations}

        def copy(name, item):
            if isinstance(item, h5py.Dataset) and name.split("/")[0] in rows and name in f:
                _append(f[name], item[: rows[name.split("/")[0]]])

        source.visititems(copy)
        f.flush()

    def stimulus_means(self, phase: str = "search"):
        """Mean response to each stimulus so far (as the reader's Run.stimulus_means)."""
        from closedloop.recording.reader import means_by_stimulus

        f = self.file
        chosen = f["trials/phase"][()] == PHASES[phase]
        return means_by_stimulus(f["trials/stimulus"][()][chosen], f["trials/response"][()][chosen])

    def latents(self, index) -> np.ndarray:
        """Logged latent vectors of these stimuli (increasing indices)."""
        return self.file["stimuli/z"][np.asarray(index)].astype(np.float64)

    def add_stimuli(self, z: np.ndarray, generation: int, rendered: np.ndarray | None = None) -> np.ndarray:
        """Log latent vectors (and their renderings); returns their stimulus indices."""
        f = self.file
        start = _append(f["stimuli/z"], z)
        _append(f["stimuli/generation"], np.full(len(z), generation))
        if "rendered" in f["stimuli"] and rendered is not None:
            _append(f["stimuli/rendered"], rendered)
        self.n_stimuli = start + len(z)
        return np.arange(start, start + len(z))

    def add_trials(self, stimulus_index: np.ndarray, generation: int, trials, phase: str = "search") -> None:
        """Log every presentation of a batch, in the order they were presented."""
        f = self.file
        n, repeats = trials.responses.shape
        order = np.argsort(trials.t_start.ravel(), kind="stable")
        spike_times = trials.spike_times
        counts = (np.array([len(spike_times[k]) for k in order], dtype=np.int64) if spike_times is not None
                  else np.zeros(n * repeats, dtype=np.int64))
        start = f["spikes/times"].shape[0] + np.concatenate([[0], np.cumsum(counts)[:-1]])
        if spike_times is not None and counts.sum():
            _append(f["spikes/times"], np.concatenate([spike_times[k] for k in order]))
        columns = {
            "stimulus": np.repeat(np.asarray(stimulus_index), repeats)[order],
            "generation": np.full(n * repeats, generation),
            "repeat": np.tile(np.arange(repeats), n)[order],
            "phase": np.full(n * repeats, PHASES[phase]),
            "t_start": trials.t_start.ravel()[order],
            "response": trials.responses.ravel()[order],
            "clean": trials.clean.ravel()[order],
            "spike_start": start,
            "spike_count": counts,
        }
        for name, values in columns.items():
            _append(f[f"trials/{name}"], values)
        for name in self.state_columns:
            _append(f[f"trials/state/{name}"], np.asarray(trials.state[name], dtype=np.float64).ravel()[order])

    def add_generation(self, row: dict, recommended: np.ndarray, state: dict[str, np.ndarray] | None = None) -> None:
        f = self.file
        row = {**row, "wall_time": time.perf_counter() - self.started}
        for name in (*GENERATION_COLUMNS, *self.status_columns):
            _append(f[f"generations/{name}"], [row.get(name, np.nan)])
        _append(f["generations/recommended"], np.asarray(recommended)[None])
        for name, values in (state or {}).items():
            _append(f[f"state/{name}"], np.asarray(values, dtype=np.float64).reshape(1, -1))

    def flush(self) -> None:
        self.file.flush()

    def close(self, status: str = "complete") -> None:
        if self.file.id.valid:
            self.file["status"][0] = STATUS[status]
            self.file.flush()
            self.file.close()
            unlock(self.path, self.lock)
