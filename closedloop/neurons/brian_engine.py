"""Batched Brian2 simulation of N independent cells for one presentation window.

Two ways to run the same Brian2 network:

- `standalone` (default when a C++ compiler works): Brian2's cpp_standalone device builds the
  network ONCE per (model, N, dt, window, threads) into a binary kept in `cache_dir()`; every
  presentation batch then runs that binary with its per-neuron values given as run arguments
  (`group.I_stim=<file>` ...), so drifting state never forces a recompile. The build records a
  small manifest (binary, result file names), so a warm cache needs no code generation at all.
- `numpy`: Brian2's runtime mode, no compiler needed; fine for small batches and tests.

Noise is drawn by a counter-based generator: a 64-bit hash (splitmix64 finaliser) of
(seed, neuron index, time step), whose four 16-bit fields summed give an Irwin-Hall(4) variate
scaled to unit variance (excess kurtosis -0.3; the OU filter over tau/dt ~ 200 steps makes the
noise current Gaussian to within a fraction of a percent). It costs a few ns, needs no
per-thread state (so results do not depend on the number of OpenMP threads), and the numpy
implementation below returns bit-identical numbers.
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
from pathlib import Path

import numpy as np

from closedloop.neurons.brian_models import CellModel, parse_quantity

_GOLDEN, _MIX1, _MIX2 = 0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB
_UNIFORM_SALT = 0xD1B54A32D192ED03

_CPP_HASH = """
static inline uint64_t closedloop_mix(int32_t i, int64_t step, int32_t seed, uint64_t salt) {
    uint64_t x = (((uint64_t)(uint32_t)seed << 32) | (uint64_t)(uint32_t)i) ^ salt;
    x += (uint64_t)step * 0x9E3779B97F4A7C15ULL;
    x ^= x >> 30; x *= 0xBF58476D1CE4E5B9ULL;
    x ^= x >> 27; x *= 0x94D049BB133111EBULL;
    return x ^ (x >> 31);
}
"""
_CPP_NORMAL = _CPP_HASH + """
static inline double noise_normal(int32_t i, int64_t step, int32_t seed) {
    const uint64_t x = closedloop_mix(i, step, seed, 0ULL);
    const double s = (double)((x & 0xFFFFULL) + ((x >> 16) & 0xFFFFULL) + ((x >> 32) & 0xFFFFULL) + (x >> 48));
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772;
}
"""
_CPP_UNIFORM = """
static inline double spike_uniform(int32_t i, int64_t step, int32_t seed) {
    return (double)(closedloop_mix(i, step, seed, 0xD1B54A32D192ED03ULL) >> 11) * (1.0 / 9007199254740992.0);
}
"""
_CPP_EXP = """
static inline double hazard_exp(double x) {
    double t = x * 1.4426950408889634;
    t = t < -1000.0 ? -1000.0 : (t > 1000.0 ? 1000.0 : t);
    const double n = floor(t);
    const double g = (t - n) * 0.6931471805599453;
    const double p = 1.0 + g * (1.0 + g * (0.5 + g * (1.0 / 6 + g * (1.0 / 24 + g * (1.0 / 120 + g * (1.0 / 720 + g * (1.0 / 5040)))))));
    union { double d; int64_t i; } scale;
    scale.i = ((int64_t)n + 1023) << 52;
    return p * scale.d;
}
"""


def hazard_exp_numpy(x) -> np.ndarray:
    """exp(x) to ~2e-6 relative error as 2^n * poly(f): the same formula as the C++ version, which
    is ~4x faster than libm's exp in Brian2's (scalar) threshold loop."""
    t = np.clip(np.asarray(x, dtype=np.float64) * 1.4426950408889634, -1000.0, 1000.0)
    n = np.floor(t)
    g = (t - n) * 0.6931471805599453
    p = 1.0 + g * (1.0 + g * (0.5 + g * (1.0 / 6 + g * (1.0 / 24 + g * (1.0 / 120 + g * (1.0 / 720 + g * (1.0 / 5040)))))))
    return p * np.ldexp(1.0, n.astype(np.int64))


def _mix(i, step, seed, salt: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        i = np.asarray(i).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        seed = np.asarray(seed).astype(np.int64).astype(np.uint64) & np.uint64(0xFFFFFFFF)
        x = ((seed << np.uint64(32)) | i) ^ np.uint64(salt)
        x = x + np.asarray(step).astype(np.int64).astype(np.uint64) * np.uint64(_GOLDEN)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(_MIX1)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(_MIX2)
        return x ^ (x >> np.uint64(31))


def noise_normal_numpy(i, step, seed) -> np.ndarray:
    x = _mix(i, step, seed, 0)
    m = np.uint64(0xFFFF)
    s = ((x & m) + ((x >> np.uint64(16)) & m) + ((x >> np.uint64(32)) & m) + (x >> np.uint64(48))).astype(np.float64)
    return (s * (1.0 / 65536.0) - 2.0) * 1.7320508075688772


def spike_uniform_numpy(i, step, seed) -> np.ndarray:
    return (_mix(i, step, seed, _UNIFORM_SALT) >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _functions():
    from brian2 import Function

    def brian_function(numpy_fn, name, cpp, dependencies=None):
        def vectorised(i, step, seed):
            return numpy_fn(i, step, seed) * np.ones(np.shape(i))
        vectorised.__name__ = name
        function = Function(vectorised, arg_units=[1, 1, 1], return_unit=1,
                            arg_types=["integer", "integer", "integer"], return_type="float")
        function.implementations.add_numpy_implementation(vectorised, discard_units=True)
        function.implementations.add_implementation("cpp", cpp, name=name, dependencies=dependencies)
        return function

    normal = brian_function(noise_normal_numpy, "noise_normal", _CPP_NORMAL)
    uniform = brian_function(spike_uniform_numpy, "spike_uniform", _CPP_UNIFORM, {"noise_normal": normal})
    fast_exp = Function(hazard_exp_numpy, arg_units=[1], return_unit=1, arg_types=["float"], return_type="float")
    fast_exp.implementations.add_numpy_implementation(hazard_exp_numpy, discard_units=True)
    fast_exp.implementations.add_implementation("cpp", _CPP_EXP, name="hazard_exp")
    return normal, uniform, fast_exp


def cache_dir() -> Path:
    """Compiled-code cache, outside the repository and shared by every run."""
    root = os.environ.get("CLOSEDLOOP_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "closedloop")
    path = Path(root) / "brian2"
    path.mkdir(parents=True, exist_ok=True)
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
        import brian2

        text = json.dumps([repr(self), brian2.__version__, _CPP_NORMAL, _CPP_UNIFORM, _CPP_EXP, "v6"])
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
    normal, uniform, fast_exp = _functions()
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


class NumpySimulator:
    """Brian2 runtime mode: a fresh network for each batch (no compiler needed)."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def run(self, inputs: Inputs) -> tuple[np.ndarray, np.ndarray]:
        import brian2 as b2

        b2.prefs.core.stop_on_keyboard_interrupt = False  # Ctrl-C is the experiment's: it stops after the generation
        b2.prefs.codegen.target = "numpy"
        b2.prefs.logging.std_redirection = False
        group, monitor, namespace = _network(self.layout, b2)
        group.I_stim = inputs.I_stim * b2.amp
        group.theta = inputs.theta * b2.volt
        group.I_noise = inputs.I_noise * b2.amp
        group.noise_sigma = inputs.noise_sigma * b2.amp
        group.noise_seed = inputs.seed
        network = b2.Network(group, monitor)
        network.run(self.layout.window_ms * b2.ms, namespace=namespace)
        return np.asarray(monitor.i[:], dtype=np.int64), np.asarray(monitor.t[:] / b2.second)


class StandaloneSimulator:
    """A cpp_standalone binary built once per layout, re-run with per-batch run arguments."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.project = cache_dir() / f"standalone-{layout.key()}"
        self.manifest = self._load_or_build()
        self.workdir = Path(tempfile.mkdtemp(prefix="closedloop-run-"))
        self._cleanup = weakref.finalize(self, shutil.rmtree, str(self.workdir), True)

    def _load_or_build(self) -> dict:
        from brian2.utils.filelock import FileLock

        manifest_path = self.project / "closedloop-manifest.json"
        with FileLock(str(self.project) + ".lock"):
            if manifest_path.is_file() and (self.project / "main").is_file():
                return json.loads(manifest_path.read_text())
            manifest = self._build()
            manifest_path.write_text(json.dumps(manifest))
            return manifest

    def _build(self) -> dict:
        import brian2 as b2
        from brian2.devices.device import all_devices

        b2.prefs.core.stop_on_keyboard_interrupt = False
        previous = b2.get_device()
        standalone = all_devices["cpp_standalone"]
        b2.set_device(standalone, build_on_run=False, directory=str(self.project))
        try:
            # one thread builds plain code: OpenMP with one thread only adds barriers
            b2.prefs.devices.cpp_standalone.openmp_threads = self.layout.threads if self.layout.threads > 1 else 0
            b2.prefs.logging.std_redirection = False
            group, monitor, namespace = _network(self.layout, b2)
            network = b2.Network(group, monitor)
            network.run(self.layout.window_ms * b2.ms, namespace=namespace)
            from brian2.codegen.cpp_prefs import get_compiler_and_args

            with _compiler_output_to(self.project.parent / f"{self.project.name}.log"):
                standalone.build(compile=False, run=False, directory=str(self.project), with_output=False)
                for source in (self.project / "code_objects").glob("cells_spike_thresholder_codeobject*.cpp"):
                    source.write_text(split_threshold_loop(source.read_text()))
                standalone.compile_source(str(self.project), get_compiler_and_args()[0], False, False)
            names = {}
            names["spikes.i"] = standalone.get_array_filename(monitor.variables["i"])
            names["spikes.t"] = standalone.get_array_filename(monitor.variables["t"])
        finally:
            standalone.reinit()
            b2.set_device(all_devices["runtime"] if previous is standalone else previous)
            b2.prefs.devices.cpp_standalone.openmp_threads = 0
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


_SIMULATORS: dict[tuple[str, Layout], object] = {}
_BROKEN: list[str] = []  # why the standalone build failed in this process, if it did


def standalone_size(n: int) -> int:
    """Cells in the binary built for a batch of n: at least 64, then powers of two up to 1024, then
    multiples of 1024, so that a few builds serve every batch size (the extra cells get no input
    and their spikes are dropped; a cell's noise depends only on its index, not on the padding)."""
    if n <= 64:
        return 64
    if n <= 1024:
        return 1 << (n - 1).bit_length()
    return -(-n // 1024) * 1024


def simulator(layout: Layout, target: str):
    """One simulator per (target, layout), kept for the life of the process."""
    if target == "auto":
        target = "standalone" if compiler_works() else "numpy"
    key = (target, layout)
    if key not in _SIMULATORS:
        _SIMULATORS[key] = StandaloneSimulator(layout) if target == "standalone" else NumpySimulator(layout)
    return _SIMULATORS[key]


def simulate(layout: Layout, inputs: Inputs, target: str = "auto") -> tuple[np.ndarray, list[np.ndarray]]:
    """Spike counts (N,) and spike times (s after onset) of each neuron."""
    n = layout.n
    if target == "auto":
        target = "standalone" if compiler_works() and not _BROKEN else "numpy"
        if target == "standalone":
            try:
                simulator(replace(layout, n=standalone_size(n)), target)
            except RuntimeError as exc:  # the build failed: say so once, then stay in runtime mode
                _BROKEN.append(str(exc))
                warnings.warn(f"Brian2 standalone build failed, using the numpy target: {str(exc)[:300]}")
                target = "numpy"
    if target == "standalone" and standalone_size(n) != n:
        size = standalone_size(n)
        pad = size - n
        inputs = replace(inputs, I_stim=np.concatenate([inputs.I_stim, np.zeros(pad)]),
                         theta=np.concatenate([inputs.theta, np.zeros(pad)]),
                         I_noise=np.concatenate([inputs.I_noise, np.zeros(pad)]))
        layout = replace(layout, n=size)
    index, times = simulator(layout, target).run(inputs)
    keep = index < n
    index, times = index[keep], times[keep]
    counts = np.bincount(index, minlength=n)
    order = np.lexsort((times, index))
    return counts, np.split(times[order], np.cumsum(counts)[:-1])
