"""Run a sweep's runs on local processes or on a Dask cluster, one thread per run.

Each task carries only text (the run's resolved protocol YAML, its source label, its log path)
and returns a flat row of numbers, so workers need nothing but closedloop installed and the
output directory on a shared file system.
"""

from __future__ import annotations

import os
import sys
import threading
import time

# Brian2 keeps global state (preferences, the seed of numpy's global generator): a Dask worker
# with several threads must still run one run at a time
ONE_RUN_PER_PROCESS = threading.Lock()
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS")


def limit_threads() -> None:
    """One thread per worker: numpy's BLAS, torch and Brian2 must not each take every core."""
    for name in THREAD_VARIABLES:
        os.environ[name] = "1"
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)  # BLAS pools already loaded before the variables were set
    except ImportError:
        pass
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)
    if "brian2" in sys.modules:
        sys.modules["brian2"].prefs.devices.cpp_standalone.openmp_threads = 1


def prepare_worker() -> None:
    """Import Brian2 on the worker's main thread: its import installs a SIGINT handler, which
    fails on the thread a Dask worker runs tasks on."""
    limit_threads()
    import importlib.util

    if threading.current_thread() is threading.main_thread() and importlib.util.find_spec("brian2"):
        import brian2  # noqa: F401

        limit_threads()


def run_one(task: dict) -> dict:
    """Run one protocol into its log and measure it; never raises (a failure is a row)."""
    limit_threads()
    from closedloop import protocol as protocol_module
    from closedloop.sweeps.measure import measure

    with ONE_RUN_PER_PROCESS:
        started, cpu_started = time.perf_counter(), time.process_time()
        try:
            protocol = protocol_module.parse(task["text"], task["source"], directory=task.get("directory") or None)
            experiment = protocol.experiment_cls(protocol)
            limit_threads()  # building the neuron may have imported torch or Brian2
            experiment.run(task["log"], progress=False, overwrite=True)  # an incomplete log is redone
            row = measure(task["log"], task["text"])
            row["error"] = ""
        except Exception as exc:  # noqa: BLE001 -- one failed run must not end the sweep
            row = {"status": "failed", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
        row["worker_time"] = time.perf_counter() - started
        row["cpu_time"] = time.process_time() - cpu_started
    row["index"] = task["index"]
    return row


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def run_local(tasks: list[dict], workers: int | None, on_done) -> None:
    """Spawned processes (never forked: Brian2 and torch state must not be copied)."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed

    workers = max(1, min(workers or default_workers(), len(tasks)))
    pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=limit_threads)
    try:
        futures = [pool.submit(run_one, task) for task in tasks]
        for future in as_completed(futures):
            on_done(future.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
