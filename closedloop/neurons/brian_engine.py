"""Batched Brian2 simulation of N independent cells for one presentation window.

Two ways to run the same Brian2 network:

- `standalone` (default when a C++ compiler works): Brian2's cpp_standalone device builds the
  network ONCE per (model, N, dt, window, threads) into a binary kept in `cache_dir()`; every
  presentation batch then runs that binary with its per-neuron values given as run arguments
  (`group.I_stim=<file>` ...), so drifting state never forces a recompile. The build records a
  small manifest (binary, result file names), so a warm cache needs no code generation at all.
- `numpy`: Brian2's runtime mode, no compiler needed; fine for small batches and tests.

Each spiking cell owns an `Engine`: it chooses the target (`Engine.resolve_target`, the only place
that does) and keeps its simulators for its own life. Brian2's global preferences are set only
inside `brian_prefs`, which restores them, so a simulation leaves Brian2 as it found it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import warnings
import weakref
from contextlib import contextmanager
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from closedloop.neurons.brian_noise import CPP_CODE, brian_functions
from closedloop.neurons.cells.base import CellModel, parse_quantity


def cache_dir() -> Path:
    """Compiled-code cache, outside the repository and shared by every run."""
    root = os.environ.get("CLOSEDLOOP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "closedloop")
    path = Path(root) / "brian2"
    try:
        path.mkdir(parents=True, exist_ok=True)
        writable = os.access(path, os.W_OK | os.X_OK)
    except OSError as exc:
        writable, reason = False, exc.strerror
    else:
        reason = "not writable"
    if not writable:
        raise ValueError(f"{path}: the cache of compiled programs cannot be made ({reason}); set CLOSEDLOOP_CACHE "
                         f"to a writable folder, or target: numpy")
    return path


@dataclass(frozen=True)
class Layout:
    """Everything that is fixed at build time."""

    model: CellModel
    n: int
    dt_ms: float
    window_ms: float
    noise_tau_ms: float
    threads: int = 1

    def key(self) -> str:
        # the installed version, read without importing brian2 (a cached binary runs without it)
        text = json.dumps([repr(self), version("brian2"), *CPP_CODE, "v6"])
        return hashlib.sha256(text.encode()).hexdigest()[:20]


@dataclass
class Inputs:
    """Per-neuron values of one batch (SI units: A, V); the seed fixes all noise."""

    I_stim: np.ndarray
    theta: np.ndarray
    I_noise: np.ndarray
    noise_sigma: float  # A
    seed: int


def _network(layout: Layout, b2):
    """The Brian2 objects, identical for both ways of running."""
    normal, uniform, fast_exp = brian_functions()
    model = layout.model
    # The OU noise current is integrated in the cell's own update loop (no extra pass over the
    # neurons): Euler, with the kick scaled so that the stationary SD is exactly noise_sigma; its
    # correlation time is then tau_noise to within dt / (2 tau_noise).
    equations = model.equations + """
dI_noise/dt = -I_noise / tau_noise + noise_sigma * noise_kick * noise_normal(i, t_in_timesteps, noise_seed) : amp
I_stim : amp
theta : volt
noise_sigma : amp (shared)
noise_seed : integer (shared)
"""
    namespace = {**model.namespace(), "noise_normal": normal, "spike_uniform": uniform,
                 "hazard_exp": fast_exp,
                 "tau_noise": layout.noise_tau_ms * b2.ms,
                 "noise_kick": float(np.sqrt(1 - (1 - layout.dt_ms / layout.noise_tau_ms) ** 2) / layout.dt_ms) / b2.ms}
    refractory = parse_quantity(model.refractory, "refractory")
    try:
        group = b2.NeuronGroup(layout.n, equations, threshold=model.threshold, reset=model.reset or None,
                               refractory=refractory if refractory != 0 else False, method=model.method,
                               namespace=namespace, dt=layout.dt_ms * b2.ms, name="cells")
        for name, value in model.initial_values().items():
            setattr(group, name, value)
    except Exception as exc:  # Brian2 reports bad equations with several kinds of exception
        raise ValueError(f"cell: Brian2 rejects the model: {str(exc).splitlines()[0]}") from None
    monitor = b2.SpikeMonitor(group, name="spikes")
    return group, monitor, namespace


# Ctrl-C is the experiment's (it stops after the generation), not Brian2's
RUNTIME_PREFS = {"core.stop_on_keyboard_interrupt": False, "codegen.target": "numpy", "logging.std_redirection": False}


@contextmanager
def brian_prefs(changes: dict[str, Any]):
    """Brian2 with the given global preferences (full dotted names), every one of them restored
    to its previous value on the way out, so a simulation leaves Brian2 as it found it."""
    import brian2 as b2

    saved = {name: b2.prefs[name] for name in changes}
    try:
        for name, value in changes.items():
            b2.prefs[name] = value
        yield b2
    finally:
        for name, value in saved.items():
            b2.prefs[name] = value


class NumpySimulator:
    """Brian2 runtime mode: a fresh network for each batch (no compiler needed)."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def run(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        with brian_prefs(RUNTIME_PREFS) as b2:
            group, monitor, namespace = _network(self.layout, b2)
            group.I_stim = inputs.I_stim * b2.amp
            group.theta = inputs.theta * b2.volt
            group.I_noise = inputs.I_noise * b2.amp
            group.noise_sigma = inputs.noise_sigma * b2.amp
            group.noise_seed = inputs.seed
            network = b2.Network(group, monitor)
            network.run(self.layout.window_ms * b2.ms, namespace=namespace)
            return np.asarray(monitor.i[:], dtype=np.int64), np.asarray(monitor.t[:] / b2.second)

    def check(self) -> None:
        """Run the model for one time step: a ValueError with Brian2's first line if it cannot."""
        with brian_prefs(RUNTIME_PREFS) as b2:
            group, monitor, namespace = _network(self.layout, b2)
            try:
                b2.Network(group, monitor).run(self.layout.dt_ms * b2.ms, namespace=namespace)
            except Exception as exc:  # Brian2 reports bad models with several kinds of exception
                raise ValueError(f"cell: Brian2 cannot run the model: {str(exc).splitlines()[0]}") from None


class StandaloneSimulator:
    """A cpp_standalone binary built once per layout, re-run with per-batch run arguments."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.project = self.project_dir(layout)
        self.manifest = self._load_or_build()
        self.workdir = Path(tempfile.mkdtemp(prefix="closedloop-run-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.workdir), True)

    @staticmethod
    def project_dir(layout: Layout) -> Path:
        return cache_dir() / f"standalone-{layout.key()}"

    @classmethod
    def is_built(cls, layout: Layout) -> bool:
        """Whether the binary for this layout is in the cache (a run would not wait for a build)."""
        project = cls.project_dir(layout)
        return (project / "closedloop-manifest.json").is_file() and (project / "main").is_file()

    def _load_or_build(self) -> dict:
        manifest_path = self.project / "closedloop-manifest.json"
        if self.is_built(self.layout):  # the manifest is written whole, last: no lock, no brian2 import
            return json.loads(manifest_path.read_text())
        from brian2.utils.filelock import FileLock

        with FileLock(str(self.project) + ".lock"):
            if self.is_built(self.layout):  # another process built it meanwhile
                return json.loads(manifest_path.read_text())
            manifest = self._build()
            partial = manifest_path.with_suffix(".tmp")
            partial.write_text(json.dumps(manifest))
            os.replace(partial, manifest_path)
            return manifest

    def _build(self) -> dict:
        from brian2.devices.device import all_devices

        # one thread builds plain code: OpenMP with one thread only adds barriers
        prefs = {"core.stop_on_keyboard_interrupt": False, "logging.std_redirection": False,
                 "devices.cpp_standalone.openmp_threads": self.layout.threads if self.layout.threads > 1 else 0}
        with brian_prefs(prefs) as b2:
            previous = b2.get_device()
            standalone = all_devices["cpp_standalone"]
            b2.set_device(standalone, build_on_run=False, directory=str(self.project))
            try:
                return self._build_on(standalone, b2)
            finally:
                standalone.reinit()
                b2.set_device(all_devices["runtime"] if previous is standalone else previous)

    def _build_on(self, standalone, b2) -> dict:
        from brian2.codegen.cpp_prefs import get_compiler_and_args

        group, monitor, namespace = _network(self.layout, b2)
        network = b2.Network(group, monitor)
        network.run(self.layout.window_ms * b2.ms, namespace=namespace)
        with _compiler_output_to(self.project.parent / f"{self.project.name}.log"):
            standalone.build(compile=False, run=False, directory=str(self.project), with_output=False)
            for source in (self.project / "code_objects").glob("cells_spike_thresholder_codeobject*.cpp"):
                source.write_text(split_threshold_loop(source.read_text()))
            standalone.compile_source(str(self.project), get_compiler_and_args()[0], False, False)
        names = {"spikes.i": standalone.get_array_filename(monitor.variables["i"]),
                 "spikes.t": standalone.get_array_filename(monitor.variables["t"])}
        return {"files": names, "threads": self.layout.threads}

    def run(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        work = self.workdir
        args = [str(self.project / "main"), "--results_dir", str(work) + os.sep]
        arrays = {"I_stim": inputs.I_stim, "theta": inputs.theta, "I_noise": inputs.I_noise}
        for name, values in arrays.items():
            path = work / f"{name}.dat"
            np.ascontiguousarray(values, dtype=np.float64).tofile(path)
            args.append(f"cells.{name}={path}")
        # repr of a Python float round-trips through the binary's strtod; a numpy scalar's would not
        args += [f"cells.noise_sigma={float(inputs.noise_sigma)!r}", f"cells.noise_seed={int(inputs.seed)}"]
        env = {**os.environ, "OMP_NUM_THREADS": str(self.layout.threads), "OMP_WAIT_POLICY": "active" if self.layout.threads > 1 else "passive"}
        # its own session: a Ctrl-C meant for the experiment must not kill the simulation in flight
        done = subprocess.run(args, cwd=self.project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                              start_new_session=True)
        if done.returncode:
            raise RuntimeError(f"Brian2 standalone run failed in {self.project}: "
                               f"{done.stderr.decode(errors='replace').strip()[-300:]}")
        files = self.manifest["files"]
        index = np.fromfile(work / files["spikes.i"], dtype=np.int32).astype(np.int64)
        times = np.fromfile(work / files["spikes.t"], dtype=np.float64)
        return index, times


_LOOP_START = "    long _count = 0;\n    for(size_t _idx=0; _idx<N; _idx++)\n"
_FIRE_BLOCK = re.compile(r"\n([ \t]*)if\(_cond\) \{\n(?P<body>(?:.*\n)*?)[ \t]*\}\n[ \t]*\}\n")


def split_threshold_loop(code: str) -> str:
    """Brian2's thresholder tests each cell and appends it to the spike list in one loop, which the
    compiler cannot vectorise (the append is sequential), so the hash and exp of the escape noise
    ran scalar. Split it: a vectorisable loop that stores each cell's condition, then a cheap scan
    that appends. Same spikes in the same order; code that does not have the expected shape is
    left as it is."""
    match = _FIRE_BLOCK.search(code)
    if (match is None or code.count("if(_cond)") != 1 or "_count++" not in match.group("body")
            or code.count(_LOOP_START) != 1):
        return code
    # the scan reads 8 flags at a time (spikes are rare); the 8 padding flags stay 0
    split = (f"\n{match.group(1)}_closedloop_fire[_idx] = _cond;\n    }}\n"
             f"    for(size_t _base=0; _base<N; _base+=8)\n    {{\n"
             f"        uint64_t _word;\n"
             f"        __builtin_memcpy(&_word, _closedloop_fire + _base, 8);\n"
             f"        if(!_word) continue;\n"
             f"        for(size_t _idx=_base; _idx<_base+8; _idx++)\n"
             f"        if(_closedloop_fire[_idx]) {{\n{match.group('body')}        }}\n    }}\n")
    code = code[:match.start()] + split + code[match.end():]
    # with OpenMP (threads > 1) the vector loop is shared like Brian2's state update; without, the pragma is ignored
    return code.replace(_LOOP_START, "    static char _closedloop_fire[N + 8];\n    long _count = 0;\n"
                        "    #pragma omp parallel for schedule(static)\n    for(size_t _idx=0; _idx<N; _idx++)\n", 1)


@contextmanager
def _compiler_output_to(path: Path):
    """Send the compiler's output (written by make to fds 1 and 2) to a file, shown on failure."""
    import sys

    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        except Exception as exc:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            tail = Path(path).read_text(errors="replace")[-600:]
            raise RuntimeError(f"Brian2 standalone build failed ({exc}); compiler output:\n{tail}") from exc
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def compiler_works() -> bool:
    """Whether Brian2 can build standalone code here (a C++ compiler on the path)."""
    return shutil.which(os.environ.get("CXX", "g++")) is not None or shutil.which("c++") is not None


def standalone_size(n: int) -> int:
    """Cells in the binary built for a batch of n: 64, 256 or 1024, then multiples of 1024, so that
    a few builds serve every batch size (the extra cells get no input and their spikes are dropped;
    a cell's noise depends only on its index, not on the padding). The steps are coarse on
    purpose: a spiking cell's first batch carries 64 calibration cells besides its stimuli, and
    it must fall in the same binary as the batches after it, or every run would simulate that
    first batch in numpy mode (importing Brian2) for want of a binary no later call builds."""
    for size in (64, 256, 1024):
        if n <= size:
            return size
    return -(-n // 1024) * 1024


AUTO_NUMPY_CALLS = 2  # target auto: calls run in numpy mode while the binary is not built yet


class Engine:
    """Runs the batches of one cell model: chooses the Brian2 target (`resolve_target`, the only
    place it is chosen) and keeps one simulator per (target, batch size) for its own life."""

    def __init__(self, model: CellModel, dt_ms: float, window_ms: float, noise_tau_ms: float, threads: int = 1,
                 target: str = "auto"):
        self.template = Layout(model, 0, dt_ms, window_ms, noise_tau_ms, threads)
        self.requested = target
        if target != "numpy":
            cache_dir()  # a cache that cannot be made is said now, before a run opens its log
        self.broken: str | None = None  # why a standalone build failed, if one did
        self._simulators: dict[tuple[str, int], NumpySimulator | StandaloneSimulator] = {}

    def layout(self, n: int) -> Layout:
        return replace(self.template, n=n)

    def resolve_target(self, n: int, call: int) -> str:
        """"numpy" or "standalone" for the `call`-th batch (counted from 1) of n cells.

        auto: standalone when a C++ compiler is found and no build has failed, except that the
        first AUTO_NUMPY_CALLS calls run in numpy mode while the binary for their size is not
        built yet, so that a short use never waits for a compiler. Both targets give the same
        spikes (the same counter-based noise and formulas), so the choice never shows in a log."""
        if self.requested != "auto":
            return self.requested
        if self.broken is not None or not compiler_works():
            return "numpy"
        if call <= AUTO_NUMPY_CALLS and not StandaloneSimulator.is_built(self.layout(standalone_size(n))):
            return "numpy"
        return "standalone"

    def simulator(self, n: int, target: str) -> NumpySimulator | StandaloneSimulator:
        """The simulator for exactly n cells, built or loaded on first use."""
        key = (target, n)
        if key not in self._simulators:
            layout = self.layout(n)
            self._simulators[key] = StandaloneSimulator(layout) if target == "standalone" else NumpySimulator(layout)
        return self._simulators[key]

    def simulate(self, inputs: Inputs, call: int) -> tuple[np.ndarray, list[np.ndarray]]:
        """Spike counts (N,) and spike times (s after onset) of each cell."""
        n = len(inputs.I_stim)
        simulator = None
        if self.resolve_target(n, call) == "standalone":
            size = standalone_size(n)
            try:
                simulator = self.simulator(size, "standalone")
            except RuntimeError as exc:
                if self.requested != "auto":
                    raise
                self.broken = str(exc)  # said once: auto stays in numpy mode from now on
                warnings.warn(f"Brian2 standalone build failed, using the numpy target: {str(exc)[:300]}")
            else:
                pad = np.zeros(size - n)
                inputs = replace(inputs, I_stim=np.concatenate([inputs.I_stim, pad]),
                                 theta=np.concatenate([inputs.theta, pad]), I_noise=np.concatenate([inputs.I_noise, pad]))
        if simulator is None:
            simulator = self.simulator(n, "numpy")
        index, times = simulator.run(inputs)
        keep = index < n
        index, times = index[keep], times[keep]
        counts = np.bincount(index, minlength=n)
        order = np.lexsort((times, index))
        return counts, np.split(times[order], np.cumsum(counts)[:-1])

    def check(self) -> None:
        """Run the model for one time step (numpy mode), so that mistakes surface at load time."""
        NumpySimulator(self.layout(1)).check()
