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

Every dataset carries `units` ("1": dimensionless; "n/a": a code or an internal state) and a
`description`; coded datasets (status, trials/phase) are HDF5 enums whose names any HDF5 client
shows, and /stimuli/z names its columns when the stimuli are parametric (`columns`, `units`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import h5py
import numpy as np

import closedloop
from closedloop.errors import ClosedLoopError, write_error
from closedloop.recording.room import make_room, release_room

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
STATUS_TYPE = h5py.enum_dtype(STATUS, basetype="i1")
PHASE_TYPE = h5py.enum_dtype(PHASES, basetype="i1")
GENERATION_COLUMNS = {
    "generation": np.int32, "presentations": np.int64, "best": np.float64, "mean": np.float64,
    "max": np.float64, "best_stimulus": np.int64, "wall_time": np.float64,
}
RESPONSE = "{response}"  # stands for the run's response unit (spikes, activation, ...)
# units and description of every dataset the writer makes (the reader falls back on these for logs
# written before datasets carried them)
DESCRIPTIONS = {
    "status": ("n/a", "state of the run: running, complete, interrupted or failed"),
    "stimuli/z": ("1", "latent vector of each stimulus shown, one row per stimulus"),
    "stimuli/generation": ("1", "generation each stimulus was made for (-1: reference stimuli, made before)"),
    "stimuli/rendered": ("1", "each stimulus as presented: luminance deviation from mean gray, pixel value "
                              "in the neuron's input range, or sound pressure re full scale"),
    "trials/stimulus": ("1", "index of the presented stimulus (row of /stimuli/z)"),
    "trials/generation": ("1", "generation (evolve) or call to the neuron (other protocols) of the presentation"),
    "trials/repeat": ("1", "repeat number of the stimulus within its call"),
    "trials/phase": ("n/a", "search, reference (re-shown to track drift) or retest (the final re-test)"),
    "trials/t_start": ("s", "onset of the presentation on the session clock"),
    "trials/response": (RESPONSE, "measured response to the presentation"),
    "trials/clean": (RESPONSE, "noise-free expected response where the neuron knows it, else NaN"),
    "trials/spike_start": ("1", "first row of /spikes/times of the presentation"),
    "trials/spike_count": ("1", "number of spikes in the presentation window"),
    "spikes/times": ("s", "spike times after their presentation's onset; trial k owns "
                          "times[spike_start[k] : spike_start[k] + spike_count[k]]"),
    "generations/generation": ("1", "generation number"),
    "generations/presentations": ("1", "presentations of the search so far"),
    "generations/best": (RESPONSE, "best score (aggregated over repeats) of any stimulus so far"),
    "generations/mean": (RESPONSE, "mean score of the generation's stimuli"),
    "generations/max": (RESPONSE, "best score of the generation's stimuli"),
    "generations/best_stimulus": ("1", "stimulus of the best score so far (row of /stimuli/z)"),
    "generations/wall_time": ("s", "wall-clock time since the run started, at the end of the generation"),
    "generations/recommended": ("1", "the optimizer's recommended latent vector after the generation"),
    "neuron/receptive_field": ("1", "the neuron's true linear receptive field, unit norm, on the stimulus grid"),
    "neuron/optimal_stimulus": ("1", "the stimulus the neuron responds to most, where it is known"),
}


def parameter_columns(space: dict) -> list[tuple[str, str, list | None]]:
    """The columns of a parametric space's latent vector (a logged `space` configuration with
    `parameters`, as tuning, fooling, ... write it): (column name, unit, category names or None).
    A parameter named like a trial column is prefixed with the stimulus family (a grating's
    `phase` is `grating_phase`); one whose values index a list the space logs under its plural
    (`source` -> `sources`) is categorical."""
    names = list(space.get("parameters") or [])
    units = list(space.get("units") or [])
    family = space.get("family") or "stimulus"
    columns = []
    for k, name in enumerate(names):
        listed = space.get(f"{name}s") if name != "parameter" else None  # "parameters" lists the names
        categories = list(listed) if isinstance(listed, list) else None
        column = f"{family}_{name}" if name in TRIAL_COLUMNS else name
        columns.append((column, units[k] if k < len(units) else ("n/a" if categories else "1"), categories))
    return columns


def describe(path: str, unit: str | None = None, response_unit: str = "") -> tuple[str, str]:
    """(units, description) of a dataset of the log, by its path: the table above, else what its
    group says of it (a state variable, the optimizer's status, ground truth); `unit` is what
    the writer knows (a state variable's declared unit)."""
    known_unit, text = DESCRIPTIONS.get(path, (None, None))
    group, _, name = path.rpartition("/")
    if text is None:
        text = {"trials/state": f"the neuron's state variable {name} at the presentation",
                "generations": f"the optimizer's {name} after the generation",
                "state": f"{name} after each generation, as `closedloop resume` restores it",
                "neuron": f"what the neuron knows of itself: {name}"}.get(group, name)
        known_unit = "1" if group == "generations" else "n/a"
    unit = known_unit if unit is None else unit
    if unit == RESPONSE:
        unit = response_unit or "n/a"
    return unit, text


def _resizable(group, name, dtype, shape=(), compress=False):
    return group.create_dataset(
        name, shape=(0, *shape), maxshape=(None, *shape), dtype=dtype,
        chunks=(max(1, min(1024, 65536 // max(1, int(np.prod(shape)) * 4))), *shape),
        **({"compression": "gzip", "compression_opts": 4} if compress else {}),
    )


def label(f: h5py.File, response_unit: str, state_units: dict[str, str],
          latent_columns: list[tuple[str, str, list | None]]) -> None:
    """Give every dataset of a new log its `units` and `description` (before SWMR starts)."""
    def each(name, item):
        if isinstance(item, h5py.Dataset):
            declared = state_units.get(name.rsplit("/", 1)[-1]) if name.startswith("trials/state/") else None
            item.attrs["units"], item.attrs["description"] = describe(name, declared, response_unit)

    f.visititems(each)
    if latent_columns:
        z = f["stimuli/z"]
        z.attrs["columns"] = [name for name, _, _ in latent_columns]
        z.attrs["units"] = [unit for _, unit, _ in latent_columns]
        z.attrs["description"] = "parameters of each stimulus shown, one row per stimulus: " + ", ".join(
            name for name, _, _ in latent_columns)
        for name, _, categories in latent_columns:
            if categories:
                z.attrs[f"{name}_categories"] = list(categories)


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


_HELD: dict[str, list[int]] = {}  # lock file -> [descriptor, holds]: a process may take its own lock again


def lock(path: Path) -> int:
    """Hold an exclusive lock beside the log while writing it, so no second process (a resume of
    a run that is still going, say) writes it too. The OS drops the lock when a writer dies.
    Re-entrant within a process: `resume` holds it across the rebuild, the swap and the run."""
    where = _lock_path(Path(path))
    key = os.path.abspath(where)
    if key in _HELD:
        _HELD[key][1] += 1
        return _HELD[key][0]
    while True:
        try:
            fd = os.open(where, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            raise write_error(path, exc, "cannot write the run log here") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ClosedLoopError(f"{path}: is being written by another closedloop process; wait for it or "
                                  f"stop it") from None
        # the holder before us may have removed the file between our open and our lock: then we
        # hold a lock on a file nobody else can find, and must take the one at the path
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(where))
        except FileNotFoundError:
            same = False
        if same:
            _HELD[key] = [fd, 1]
            return fd
        os.close(fd)


def unlock(path: Path, fd: int) -> None:
    """Give up one hold of the lock; the last removes the lock file (only while it is still ours)
    and then closes it, so no other process ever holds a lock on a file that is gone."""
    key = os.path.abspath(_lock_path(Path(path)))
    held = _HELD.get(key)
    if held is None or held[0] != fd:
        return
    held[1] -= 1
    if held[1]:
        return
    del _HELD[key]
    try:
        if os.path.samestat(os.fstat(fd), os.stat(key)):
            os.unlink(key)
    except OSError:
        pass  # gone already, or a read-only folder: the lock goes with the descriptor
    os.close(fd)


def is_locked(path: Path) -> bool:
    """True while a closedloop process (this one or another) writes the log."""
    if os.path.abspath(_lock_path(Path(path))) in _HELD:
        return True
    try:
        fd = os.open(_lock_path(Path(path)), os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except BlockingIOError:
        return True
    finally:
        os.close(fd)


@contextmanager
def holding(path: Path):
    """The log's lock for the duration of a block (see lock)."""
    fd = lock(path)
    try:
        yield fd
    finally:
        unlock(path, fd)


# room asked for each commit beyond the chunks it touches: object headers, chunk indexes, the
# superblock (the most a commit of the test protocols grew a log by beyond its chunks was under 16 kB)
METADATA_BYTES = 64 * 1024


class RunWriter:
    """Create a run log; every object is created up front, because SWMR forbids new ones later.

    Appends are kept in memory and written as one unit by `flush()` (once per generation), after
    room for all of it was made (recording/room.py): a full disk or a file-size limit stops the
    run before a byte of the generation is written, so every generation flushed before is intact.
    """

    def __init__(self, path, *, protocol_text: str, seed: int, kind: str, configs: dict[str, dict],
                 dim: int, stimulus_shape: tuple[int, ...], modality: str, response_unit: str,
                 state_columns=(), status_columns=(), state_shapes: dict[str, int] | None = None,
                 record_rendered: bool = True, sample_rate: int | None = None,
                 neuron_arrays: dict[str, np.ndarray] | None = None, created: str | None = None,
                 claim: tuple | None = None, protocol_dir: str = "", state_units: dict[str, str] | None = None,
                 latent_columns: list[tuple[str, str, list | None]] | None = None):
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(self.path.parent, exc, "cannot create the folder of the run log") from None
        self.lock = lock(self.path)
        # built under a temporary name and renamed once in SWMR mode, so that a log that exists
        # is always readable and resumable, however early its writer is killed
        building = self.path.with_name(f".{self.path.name}.part")
        self.file, self._room = None, None
        try:
            self._room = os.open(building, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o644)
            neuron_arrays = {name: np.asarray(values) for name, values in (neuron_arrays or {}).items()}
            make_room(self._room, self.path, METADATA_BYTES + len(protocol_text.encode()) + sum(
                values.nbytes for values in neuron_arrays.values()) + sum(map(len, map(str, configs.values()))),
                "a new run log")
            self.file = h5py.File(building, "w", libver="latest")
            self._create(protocol_text, seed, kind, configs, dim, stimulus_shape, modality, response_unit,
                         state_columns, status_columns, state_shapes, record_rendered, sample_rate,
                         neuron_arrays, created, claim, protocol_dir, state_units, latent_columns)
            self._start()
            os.replace(building, self.path)
        except BaseException as exc:
            self._abandon()
            building.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise write_error(self.path, exc, "cannot create the run log") from None
            raise

    def _create(self, protocol_text, seed, kind, configs, dim, stimulus_shape, modality, response_unit,
                state_columns, status_columns, state_shapes, record_rendered, sample_rate, neuron_arrays,
                created, claim, protocol_dir, state_units, latent_columns):
        f = self.file
        f.attrs.update({
            "format": FORMAT, "format_version": FORMAT_VERSION, "package_version": closedloop.__version__,
            "protocol": protocol_text, "seed": seed, "kind": kind,
            "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "modality": modality, "stimulus_shape": np.asarray(stimulus_shape, dtype=np.int64),
            "sample_rate": sample_rate or 0, "response_unit": response_unit,
            "claim": json.dumps(list(claim)) if claim else "",
            "protocol_dir": protocol_dir,  # where paths in the protocol resolve (beside its file)
        })
        config = f.create_group("config")
        for role, value in configs.items():
            config.attrs[role] = json.dumps(value)
        f.create_dataset("status", data=np.array([STATUS["running"]]), dtype=STATUS_TYPE)
        known = f.create_group("neuron")  # ground truth the neuron knows, e.g. its receptive field
        for name, values in neuron_arrays.items():
            known.create_dataset(name, data=values)
        stimuli = f.create_group("stimuli")
        _resizable(stimuli, "z", np.float32, (dim,))
        _resizable(stimuli, "generation", np.int32)
        if record_rendered:
            _resizable(stimuli, "rendered", np.float32, tuple(stimulus_shape), compress=True)
        trials = f.create_group("trials")
        for name, dtype in TRIAL_COLUMNS.items():
            _resizable(trials, name, PHASE_TYPE if name == "phase" else dtype)
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
        label(f, response_unit, state_units or {}, latent_columns or [])

    def _start(self):
        f = self.file
        f.swmr_mode = True
        f.flush()
        # the appendable datasets stay open: a dataset closed with data in its chunk cache would
        # write it while being freed, where h5py can only warn that the write failed
        self.datasets: dict[str, h5py.Dataset] = {}

        def keep(name, item):
            if isinstance(item, h5py.Dataset) and item.maxshape and item.maxshape[0] is None:
                self.datasets[name] = item

        f.visititems(keep)
        self.pending: dict[str, list[np.ndarray]] = {}
        self.rows = {name: dataset.shape[0] for name, dataset in self.datasets.items()}
        self.state_columns = tuple(f["trials/state"])
        self.status_columns = tuple(name for name in f["generations"]
                                    if name not in GENERATION_COLUMNS and name != "recommended")
        self.n_stimuli = self.rows["stimuli/z"]
        wall = self.datasets["generations/wall_time"]
        self.started = time.perf_counter() - (float(wall[-1]) if wall.shape[0] else 0.0)
        if self._room is None:
            self._room = os.open(self.file.filename, os.O_WRONLY)

    @classmethod
    def reopen(cls, path) -> "RunWriter":
        """Continue appending to a log that was closed cleanly (see copy_complete_generations)."""
        self = cls.__new__(cls)
        self.path = Path(path)
        self.lock = lock(self.path)
        self.file, self._room = None, None
        try:
            self.file = h5py.File(self.path, "a", libver="latest")
            self.file["status"][0] = STATUS["running"]
            self._start()
        except BaseException as exc:
            self._abandon()
            if isinstance(exc, OSError):
                raise write_error(self.path, exc, "cannot reopen the run log") from None
            raise
        return self

    def _append(self, name: str, values) -> int:
        """Queue rows for `name`; returns the row the first of them will have."""
        dataset = self.datasets[name]
        values = np.asarray(values, dtype=dataset.dtype).reshape(-1, *dataset.shape[1:])
        start = self.rows[name]
        self.pending.setdefault(name, []).append(values)
        self.rows[name] = start + len(values)
        return start

    def copy_complete_generations(self, run, generations: int) -> None:
        """Copy the first `generations` generations of another log (a reader's Run, opened in
        SWMR mode, so a crashed one works too) into this fresh one: whatever was in flight is
        left behind."""
        source = run.file
        trial_rows = int(np.sum(source["trials/generation"][()] < generations))
        stimulus_rows = int(np.sum(source["stimuli/generation"][()] < generations))
        ends = source["trials/spike_start"][:trial_rows] + source["trials/spike_count"][:trial_rows]
        spike_rows = int(ends.max()) if trial_rows else 0
        rows = {"stimuli": stimulus_rows, "trials": trial_rows, "spikes": spike_rows,
                "generations": generations, "state": generations}

        def copy(name, item):
            if isinstance(item, h5py.Dataset) and name.split("/")[0] in rows and name in self.datasets:
                self._append(name, item[: rows[name.split("/")[0]]])

        source.visititems(copy)
        self.flush()

    def stimulus_means(self, phase: str = "search"):
        """Mean response to each stimulus so far (as the reader's Run.stimulus_means)."""
        from closedloop.recording.reader import means_by_stimulus

        self.flush()
        chosen = self.datasets["trials/phase"][()] == PHASES[phase]
        return means_by_stimulus(self.datasets["trials/stimulus"][()][chosen],
                                 self.datasets["trials/response"][()][chosen])

    def latents(self, index) -> np.ndarray:
        """Logged latent vectors of these stimuli (increasing indices)."""
        self.flush()
        return self.datasets["stimuli/z"][np.asarray(index)].astype(np.float64)

    def add_stimuli(self, z: np.ndarray, generation: int, rendered: np.ndarray | None = None) -> np.ndarray:
        """Log latent vectors (and their renderings); returns their stimulus indices."""
        start = self._append("stimuli/z", z)
        self._append("stimuli/generation", np.full(len(z), generation))
        if "stimuli/rendered" in self.datasets and rendered is not None:
            self._append("stimuli/rendered", rendered)
        self.n_stimuli = start + len(z)
        return np.arange(start, start + len(z))

    def add_trials(self, stimulus_index: np.ndarray, generation: int, trials, phase: str = "search") -> None:
        """Log every presentation of a batch, in the order they were presented."""
        n, repeats = trials.responses.shape
        order = np.argsort(trials.t_start.ravel(), kind="stable")
        spike_times = trials.spike_times
        counts = (np.array([len(spike_times[k]) for k in order], dtype=np.int64) if spike_times is not None
                  else np.zeros(n * repeats, dtype=np.int64))
        start = self.rows["spikes/times"] + np.concatenate([[0], np.cumsum(counts)[:-1]])
        if spike_times is not None and counts.sum():
            self._append("spikes/times", np.concatenate([spike_times[k] for k in order]))
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
            self._append(f"trials/{name}", values)
        for name in self.state_columns:
            self._append(f"trials/state/{name}", np.asarray(trials.state[name], dtype=np.float64).ravel()[order])

    def add_generation(self, row: dict, recommended: np.ndarray, state: dict[str, np.ndarray] | None = None) -> None:
        row = {**row, "wall_time": time.perf_counter() - self.started}
        for name in (*GENERATION_COLUMNS, *self.status_columns):
            self._append(f"generations/{name}", [row.get(name, np.nan)])
        self._append("generations/recommended", np.asarray(recommended)[None])
        for name, values in (state or {}).items():
            self._append(f"state/{name}", np.asarray(values, dtype=np.float64).reshape(1, -1))

    def bytes_needed(self) -> int:
        """At most how much the pending rows add to the file: every chunk they touch, written anew
        (a compressed chunk moves when rewritten), and room for the metadata."""
        total = METADATA_BYTES
        for name, parts in self.pending.items():
            dataset = self.datasets[name]
            start, count = dataset.shape[0], sum(len(part) for part in parts)
            if not count:
                continue
            chunk = dataset.chunks[0]
            touched = (start + count - 1) // chunk - start // chunk + 1
            if start % chunk and dataset.compression is None:
                touched -= 1  # the last chunk is there already and is rewritten in place
            chunk_bytes = int(np.prod(dataset.chunks)) * dataset.dtype.itemsize
            total += touched * (chunk_bytes + chunk_bytes // 100 + 1024) + 1024
        return total

    def flush(self) -> None:
        """Write every pending row as one unit, or nothing when there is no room for all of it."""
        if not self.pending:
            return
        make_room(self._room, self.path, self.bytes_needed(), "the next generation")
        try:
            for name, parts in self.pending.items():
                dataset, values = self.datasets[name], np.concatenate(parts)
                start = dataset.shape[0]
                dataset.resize(start + len(values), axis=0)
                dataset[start:] = values
            self.file.flush()
        except OSError as exc:
            self.pending.clear()
            self.damaged = True
            raise write_error(self.path, exc, "writing the run log failed") from None
        self.pending.clear()

    damaged = False  # a write failed half-way: the last generation may be incomplete

    def close(self, status: str = "complete") -> None:
        """Mark the log `status` and close it. A complete log is flushed first; otherwise rows not
        flushed (a generation in flight) are dropped: a log holds whole generations only."""
        if self.file is None or not self.file.id.valid:
            return
        if status == "complete":
            try:
                self.flush()
            except BaseException:
                self.close("failed")
                raise
        self.pending.clear()
        try:
            self.file["status"][0] = STATUS[status]  # a byte written in place: needs no room
            self.file.flush()
        except OSError:
            self.damaged = True
        finally:
            self._abandon()
            release_room(self.path)

    def _abandon(self) -> None:
        """Close the file and the lock whatever state they are in."""
        try:
            if self.file is not None and self.file.id.valid:
                self.__dict__.pop("datasets", None)
                self.file.close()
        except Exception:  # noqa: BLE001 -- a failed write is reported by its caller
            self.damaged = True
        finally:
            if self._room is not None:
                os.close(self._room)
                self._room = None
            if getattr(self, "lock", None) is not None:
                unlock(self.path, self.lock)
                self.lock = None
