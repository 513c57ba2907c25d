"""Faults never lose or falsify a logged trial: a full disk, a file-size limit, racing resumes,
signals, killed writers; and the exit codes of docs/reliability.md."""

import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest

from closedloop.cli import main
from closedloop.errors import ClosedLoopError
from closedloop.recording import open_run
from test_resume import wait_for_generations

PROTOCOL = """
kind: evolve
seed: 5
neuron: {kind: lnp, size: 16}
space: {kind: fourier, size: 16, max_frequency: 0.3}
optimizer: {kind: cmaes, popsize: 12}
generations: 40
repeats: 2
reference: {count: 2}
retest: {top: 3, repeats: 4}
"""


def cli(*args, limit=None, **kwargs):
    """closedloop in its own process (optionally under a file-size limit, as `ulimit -f`)."""
    def limited():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.Popen([sys.executable, "-m", "closedloop.cli", *map(str, args)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            preexec_fn=limited if limit else None, **kwargs)


def finish(process, timeout=240):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err.strip()


def one_line(err):
    assert err.startswith("closedloop: ") and "\n" not in err and len(err) <= 300, err
    assert "Traceback" not in err


@pytest.fixture(scope="module")
def full(tmp_path_factory):
    """The same protocol run without a fault: what every faulted run must end up as."""
    folder = tmp_path_factory.mktemp("faults")
    (folder / "p.yaml").write_text(PROTOCOL)
    assert main(["run", str(folder / "p.yaml"), "--out", str(folder / "full.h5"), "-q"]) == 0
    return folder / "full.h5"


def same_trials(a, b, generations=None):
    """b holds exactly a's trials (all of them, or those of its first `generations` generations)."""
    with open_run(a) as x, open_run(b) as y:
        tx, ty = x.trials, y.trials
        if generations is not None:
            tx = tx[(tx["generation"] < generations) & (tx["phase"] != "retest")].reset_index(drop=True)
        assert tx.equals(ty)
        rows = len(y.z)
        np.testing.assert_array_equal(x.z[:rows], y.z)
        columns = [c for c in y.generations.columns if c != "wall_time"]
        assert x.generations[columns].iloc[: len(y.generations)].equals(y.generations[columns])


def stopped_by_a_fault(process, log, full):
    """One line, exit 3, the log readable by any HDF5 tool, marked failed, its generations intact."""
    code, out, err = finish(process)
    assert code == 3, err
    one_line(err)
    assert "closedloop resume" in err
    with h5py.File(log, "r") as f:  # plain h5py: closed cleanly, no SWMR mark left
        assert f["status"][0] == 3
    with open_run(log) as run:
        assert run.status == "failed"
        done = len(run.generations)
    assert 1 <= done < 40
    same_trials(full, log, done)
    assert not list(log.parent.glob(f".{log.name}*")), "a lock or partial file left behind"
    return done, err


def test_file_size_limit_stops_the_run_with_its_log_intact_and_resumable(full, tmp_path):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    log = tmp_path / "limited.h5"
    limit = full.stat().st_size // 2
    _, err = stopped_by_a_fault(cli("run", tmp_path / "p.yaml", "--out", log, "-q", limit=limit), log, full)
    assert "file-size limit" in err
    assert main(["resume", str(log), "-q"]) == 0  # no limit any more
    same_trials(full, log)


@pytest.fixture
def small_disk(tmp_path):
    """A 1.2 MB tmpfs (root only: CI runs as root), remounted larger to free space."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "disk"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1200k", "tmpfs", str(folder)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)])


def test_full_disk_stops_the_run_with_its_log_intact_and_resumable(full, tmp_path, small_disk):
    (tmp_path / "p.yaml").write_text(PROTOCOL)
    log = small_disk / "f.h5"
    done, err = stopped_by_a_fault(cli("run", tmp_path / "p.yaml", "--out", log, "-q"), log, full)
    assert "no space left" in err
    # nothing more fits; resume says so in one line and leaves the log as it was
    code, _, err = finish(cli("resume", log, "-q"))
    assert code == 3 and "no space left" in err, err
    one_line(err)
    with open_run(log) as run:
        assert run.status == "failed" and len(run.generations) == done
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)  # space freed
    code, _, err = finish(cli("resume", log, "-q"))
    assert code == 0, err
    same_trials(full, log)


def interrupted_copy(full, tmp_path, name, generations=12):
    """A copy of the run, stopped after `generations` generations as a kill would leave it."""
    from closedloop import protocol

    p = protocol.parse(PROTOCOL, str(tmp_path / "p.yaml"))
    experiment = p.experiment_cls(p)
    tell, told = experiment.optimizer.tell, []

    def tell_then_stop(z, scores):  # as a signal after `generations` generations would
        tell(z, scores)
        told.append(1)
        experiment.stop_requested = len(told) >= generations

    experiment.optimizer.tell = tell_then_stop
    assert experiment.run(tmp_path / name, progress=False)["status"] == "interrupted"
    with h5py.File(tmp_path / name, "r+") as f:
        f["status"][0] = 0  # "running": as a killed writer leaves it
    return tmp_path / name


@pytest.mark.parametrize("stagger", [0.0, 1.0])
def test_racing_resumes_exactly_one_proceeds(full, tmp_path, stagger):
    log = interrupted_copy(full, tmp_path, "r.h5")
    first = cli("resume", log, "-q")
    time.sleep(stagger)
    second = cli("resume", log, "-q")
    results = sorted([finish(first), finish(second)], key=lambda r: r[0])
    assert [code for code, _, _ in results] == [0, 2], results
    one_line(results[1][2])
    assert "being written by another closedloop process" in results[1][2] or "already complete" in results[1][2]
    same_trials(full, log)
    assert not (tmp_path / "r.h5.resume").exists() and not list(tmp_path.glob(".r.h5*"))


def test_unlock_never_removes_a_lock_it_no_longer_owns(tmp_path):
    from closedloop.recording.writer import lock, unlock

    path = tmp_path / "x.h5"
    mine = lock(path)
    (tmp_path / ".x.h5.lock").unlink()  # someone removed it; another process takes the path's lock
    other = subprocess.Popen(
        [sys.executable, "-c", "import sys; from pathlib import Path; from closedloop.recording.writer import lock; "
         f"lock(Path({str(path)!r})); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "held"
        unlock(path, mine)
        assert (tmp_path / ".x.h5.lock").exists()  # the other process's lock stays
        with pytest.raises(ClosedLoopError, match="being written by another closedloop process"):
            lock(path)
    finally:
        other.communicate("")


def test_a_writer_that_fails_to_start_releases_its_lock_and_partial_file(tmp_path):
    from closedloop.recording.writer import RunWriter, lock, unlock

    path = tmp_path / "x.h5"
    with pytest.raises(TypeError):
        RunWriter(path, protocol_text="kind: evolve\n", seed=0, kind="evolve", configs={"neuron": {"a": object()}},
                  dim=2, stimulus_shape=(4, 4), modality="image", response_unit="spikes")
    assert sorted(os.listdir(tmp_path)) == []
    unlock(path, lock(path))  # nobody holds it


def start_run(tmp_path, name):
    (tmp_path / "p.yaml").write_text(PROTOCOL.replace("generations: 40", "generations: 400"))
    return cli("run", tmp_path / "p.yaml", "--out", tmp_path / name, "-q")


@pytest.mark.parametrize("signum, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_after_the_generation_with_its_own_exit_code(tmp_path, signum, code):
    log = tmp_path / "s.h5"
    process = start_run(tmp_path, "s.h5")
    wait_for_generations(log, 2, process)
    process.send_signal(signum)
    returncode, out, err = finish(process)
    assert returncode == code, err
    assert f"continue with: closedloop resume {log}" in out
    with h5py.File(log, "r") as f:  # closed cleanly: any HDF5 tool opens it
        assert f["status"][0] == 2
    with open_run(log) as run:
        assert run.status == "interrupted" and 2 <= len(run.generations) < 400


def test_a_killed_log_opens_in_plain_h5py_once_closedloop_touched_it(full, tmp_path, capsys):
    log = tmp_path / "k.h5"
    process = start_run(tmp_path, "k.h5")
    wait_for_generations(log, 2, process)
    process.kill()
    process.wait()
    with pytest.raises(OSError, match="already open for write"):
        h5py.File(log, "r")
    copy = tmp_path / "k2.h5"
    shutil.copy(log, copy)
    assert main(["analyze", str(log)]) == 0
    with h5py.File(log, "r") as f:
        assert f["status"][0] == 0 and len(f["generations/best"]) >= 2
    assert main(["repair", str(copy)]) == 0
    assert "cleared the write marks" in capsys.readouterr().out
    with h5py.File(copy, "r") as f:
        assert f["status"][0] == 0
    assert main(["repair", str(copy)]) == 0 and "nothing to repair" in capsys.readouterr().out


def test_exit_codes(tmp_path, capsys):
    (tmp_path / "p.yaml").write_text(PROTOCOL.replace("generations: 40", "generations: 2"))
    assert main(["run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "a.h5"), "-q"]) == 0
    assert main(["run", str(tmp_path / "p.yaml"), "--set", "repeats=0"]) == 2
    assert main(["resume", str(tmp_path / "a.h5")]) == 2  # complete already
    from closedloop.errors import EXIT_FAILED, EXIT_SIGINT, EXIT_SIGTERM

    assert (EXIT_FAILED, EXIT_SIGINT, EXIT_SIGTERM) == (3, 130, 143)


@pytest.mark.slow
def test_numpy_scalars_reach_the_compiled_target_exactly():
    """Every value handed to the compiled Brian2 binary round-trips: numpy scalars give the very
    spikes Python numbers give, on both targets (the binary once read np.float64(...) as 0)."""
    from closedloop.neurons.brian_engine import Engine, Inputs
    from closedloop.neurons.cells.lif import LIF, LIFSettings

    cell = LIFSettings()
    rng = np.random.default_rng(3)
    currents, theta, start = np.linspace(0.05, 0.4, 50) * 1e-9, rng.normal(0, 1e-3, 50), rng.normal(0, 3e-11, 50)
    plain = Inputs(currents, theta, start, 3.5e-11, 9)
    scalars = Inputs(currents.astype(np.float64), theta, start, np.float64(3.5e-11), np.int64(9))
    quiet = Inputs(currents, theta, start, 0.0, 9)
    for target in ("standalone", "numpy"):  # the binary test_spiking builds: 50 cells, 100 ms
        engine = Engine(LIF(cell, 0).model, 0.1, 100.0, cell.noise_tau, target=target)
        counts, times = engine.simulate(plain, 1)
        numpy_counts, numpy_times = engine.simulate(scalars, 1)
        np.testing.assert_array_equal(counts, numpy_counts)
        assert all(np.array_equal(a, b) for a, b in zip(times, numpy_times))
        assert not np.array_equal(counts, engine.simulate(quiet, 1)[0])  # the noise is there
