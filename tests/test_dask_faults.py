"""Sweeps on Dask: a wrong or silent scheduler address fails in one line within the timeout and
writes nothing; workers that join late, restart or die lose no run. Real Dask processes on
loopback."""

import http.server
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from closedloop.cli import main

distributed = pytest.importorskip("distributed")
DASK = str(Path(sys.executable).with_name("dask"))

BASE = {"kind": "evolve", "neuron": {"kind": "spiking", "size": 8, "window": 100.0, "dt": 0.2, "target": "numpy"},
        "space": {"kind": "fourier", "size": 8, "max_frequency": 0.3},
        "optimizer": {"kind": "cmaes", "popsize": 6, "sigma0": 0.8}, "generations": 3}


def write_sweep(tmp_path, seeds=2):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({"kind": "sweep", "base": BASE, "grid": {"neuron.cell.noise_sigma": [0.02, 0.2]},
                                    "seeds": seeds, "output": str(tmp_path / "out")}))
    return path


def silent_server():
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    return server.getsockname()[1]


def http_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


@pytest.mark.parametrize("server", [silent_server, http_server], ids=["silent", "http"])
def test_a_scheduler_address_that_is_no_scheduler_fails_in_one_line(tmp_path, capsys, server):
    sweep = write_sweep(tmp_path)
    started = time.perf_counter()
    code = main(["sweep", str(sweep), "--scheduler", f"tcp://127.0.0.1:{server()}", "--connect-timeout", "1", "-q"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("closedloop: error: --scheduler tcp://127.0.0.1:") and "\n" not in err, err
    assert "no Dask scheduler answered within 1 s" in err
    assert time.perf_counter() - started < 60
    assert not (tmp_path / "out").exists()


def start_worker(scheduler_file):
    return subprocess.Popen([DASK, "worker", "--scheduler-file", str(scheduler_file), "--nthreads", "1",
                             "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def worker_processes(nanny):
    import psutil

    return psutil.Process(nanny.pid).children(recursive=True)


@pytest.mark.slow
def test_workers_that_join_late_restart_or_die_lose_no_run(tmp_path):
    scheduler_file = tmp_path / "scheduler.json"
    processes = [subprocess.Popen([DASK, "scheduler", "--scheduler-file", str(scheduler_file), "--host", "127.0.0.1",
                                   "--port", "0", "--no-dashboard"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)]
    try:
        deadline = time.time() + 60
        while not scheduler_file.exists() and time.time() < deadline:
            time.sleep(0.1)
        address = json.loads(scheduler_file.read_text())["address"]
        sweep = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "sweep", str(write_sweep(tmp_path)),
                                  "--scheduler", address, "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True)
        processes.append(sweep)
        time.sleep(1.0)
        first = start_worker(scheduler_file)  # joins after the sweep started
        processes.append(first)
        out = tmp_path / "out"
        while not (out.exists() and any(name.startswith(".run-") for name in os.listdir(out))):
            assert sweep.poll() is None, sweep.communicate()
            assert time.time() < deadline + 120, "no run started"
            time.sleep(0.05)
        processes.append(start_worker(scheduler_file))  # a second one joins mid-sweep
        for child in worker_processes(first):  # the first worker dies with a run in flight; its nanny restarts it
            child.send_signal(signal.SIGKILL)
        stdout, stderr = sweep.communicate(timeout=300)
        assert sweep.returncode == 0, stdout + stderr
        import pandas as pd

        table = pd.read_csv(out / "summary.csv")
        assert len(table) == 4 and (table["status"] == "complete").all(), table
        assert table["best_response"].notna().all() and (table["presentations"] == 3 * 6).all()
    finally:
        for process in reversed(processes):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
