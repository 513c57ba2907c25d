"""Crash safety and resume: a run killed at any point continues to the very same trials."""

import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from closedloop.cli import main
from closedloop.errors import LogError
from closedloop.recording import open_run

PROTOCOL = """
kind: evolve
seed: 11
neuron: {kind: spiking, size: 10, window: 100}
space: {kind: fourier, size: 10, max_frequency: 0.3}
optimizer: {kind: cmaes, popsize: 8}
generations: 20
repeats: 2
reference: {count: 2}
retest: {top: 3, repeats: 4}
"""


def same_run(a, b):
    with open_run(a) as x, open_run(b) as y:
        assert x.status == y.status == "complete"
        assert x.trials.equals(y.trials)
        np.testing.assert_array_equal(x.z, y.z)
        np.testing.assert_array_equal(x.file["spikes/times"][()], y.file["spikes/times"][()])
        columns = [c for c in x.generations.columns if c != "wall_time"]
        assert x.generations[columns].equals(y.generations[columns])
        np.testing.assert_array_equal(x.recommended, y.recommended)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("resume")
    (folder / "p.yaml").write_text(PROTOCOL)
    assert main(["run", str(folder / "p.yaml"), "--out", str(folder / "full.h5"), "-q"]) == 0
    return folder


def start(folder, name):
    return subprocess.Popen([sys.executable, "-m", "closedloop.cli", "run", str(folder / "p.yaml"), "--out",
                             str(folder / name), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_generations(path, count, process, timeout=120):
    """Poll the log while it is written (a second reader must never fail), until `count`."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                with open_run(path) as run:
                    if len(run.generations) >= count:
                        return
            except LogError:
                pass  # created but not yet initialised
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    raise TimeoutError


@pytest.mark.slow
@pytest.mark.parametrize("after", [0, 1, 6, 13])
def test_sigkill_then_resume_gives_the_same_trials(uninterrupted, after):
    folder, name = uninterrupted, f"killed-{after}.h5"
    process = start(folder, name)
    if after:
        wait_for_generations(folder / name, after, process)
    else:
        while not (folder / name).exists():
            time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    with open_run(folder / name) as run:  # readable after the kill
        assert run.status == "running"
        assert len(run.generations) >= after
    assert main(["resume", str(folder / name), "-q"]) == 0
    same_run(folder / "full.h5", folder / name)
    assert not (folder / (name + ".resume")).exists()


@pytest.mark.slow
def test_ctrl_c_stops_after_the_generation_and_says_how_to_resume(uninterrupted):
    folder = uninterrupted
    process = start(folder, "interrupted.h5")
    wait_for_generations(folder / "interrupted.h5", 3, process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err  # interrupted by SIGINT (docs/reliability.md)
    assert f"continue with: closedloop resume {folder / 'interrupted.h5'}" in out
    with open_run(folder / "interrupted.h5") as run:
        assert run.status == "interrupted" and 3 <= len(run.generations) < 20
    assert main(["resume", str(folder / "interrupted.h5"), "-q"]) == 0
    same_run(folder / "full.h5", folder / "interrupted.h5")


def test_resume_refuses_a_log_whose_replay_diverges(tmp_path):
    (tmp_path / "p.yaml").write_text(PROTOCOL.replace("generations: 20", "generations: 2"))
    assert main(["run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "a.h5"), "-q"]) == 0
    import h5py

    with h5py.File(tmp_path / "a.h5", "a") as f:
        f["status"][0] = 2
        f["stimuli/z"][5] += 1.0
    with pytest.raises(Exception, match="replaying the optimizer diverged from the log at generation 0"):
        from closedloop.commands.resume import execute

        execute(type("Args", (), {"log": str(tmp_path / "a.h5"), "quiet": True})())


def test_a_reader_sees_what_the_writer_appends(tmp_path):
    from closedloop import protocol

    p = protocol.parse(PROTOCOL.replace("generations: 20", "generations: 3"), "p.yaml")
    experiment = p.experiment_cls(p)
    seen = []
    present = experiment.neuron.present

    def present_and_read(stimuli, repeats):
        if (tmp_path / "live.h5").exists():
            reader.refresh()
            seen.append((len(reader.trials), len(reader.generations)))
        return present(stimuli, repeats)

    experiment.neuron.present = present_and_read
    reader = None
    experiment._open_log = experiment.open_log

    def open_and_attach(path, *args, **kwargs):
        nonlocal reader
        writer = experiment._open_log(path, *args, **kwargs)
        reader = open_run(path)
        return writer

    experiment.open_log = open_and_attach
    experiment.run(tmp_path / "live.h5", progress=False)
    reader.close()
    per_generation = 8 * 2 + 2 * 2  # search and reference presentations
    # the last call is the final re-test, after every generation is in
    assert seen == [(0, 0), (per_generation, 1), (2 * per_generation, 2), (3 * per_generation, 3)]


@pytest.mark.slow
def test_ctrl_c_during_a_brian2_simulation_stops_cleanly(tmp_path):
    (tmp_path / "t.yaml").write_text(
        "kind: tuning\nneuron: {kind: spiking, size: 16, target: numpy}\norientations: 24\nrepeats: 10\nbatch: 960\n")
    process = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "run", str(tmp_path / "t.yaml"), "--out",
                                str(tmp_path / "t.h5"), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_trials(tmp_path / "t.h5", process)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err  # interrupted by SIGINT
    assert "run it again to redo it" in out and "Simulation stop requested" not in err
    assert main(["run", str(tmp_path / "t.yaml"), "--out", str(tmp_path / "whole.h5"), "-q"]) == 0
    with open_run(tmp_path / "t.h5") as run, open_run(tmp_path / "whole.h5") as whole:
        assert run.status == "interrupted" and 0 < len(run.trials) < len(whole.trials)
        # whole batches only, none cut short: the trials logged are those of the uninterrupted run
        assert run.trials.equals(whole.trials.iloc[: len(run.trials)])


def wait_for_trials(path, process, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists():
            try:
                with open_run(path) as run:
                    if len(run.trials):
                        return
            except LogError:
                pass
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.02)
    raise TimeoutError
