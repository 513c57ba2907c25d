"""Bad input: one line naming the file, the field and what is expected; exit 2; nothing written."""

import os

import h5py
import numpy as np
import pytest
import yaml

from closedloop.cli import main
from closedloop.neurons.base import Neuron, Trials
from closedloop.registry import register
from closedloop.spaces.images import PixelSpace

GOOD = {
    "kind": "evolve", "seed": 1,
    "neuron": {"kind": "spiking", "size": 8, "window": 50},
    "space": {"kind": "pixels", "size": 8},
    "optimizer": {"kind": "random", "popsize": 4},
    "generations": 2,
}


def variant(**changes):
    data = yaml.safe_load(yaml.safe_dump(GOOD))
    for dotted, value in changes.items():
        node = data
        *parents, last = dotted.split("__")
        for part in parents:
            node = node[part]
        if value is DELETE:
            del node[last]
        else:
            node[last] = value
    return yaml.safe_dump(data)


DELETE = object()

PROTOCOLS = [
    ("kind: evolve\nneuron: {kind: spiking\n", "YAML syntax error"),
    ("- a\n- b\n", "expected a mapping of fields at the top level, got a list"),
    ("", "expected a mapping of fields at the top level, got nothing"),
    (variant(kind=DELETE), "kind: required field missing"),
    (variant(kind="evolv"), "kind: unknown kind 'evolv'; did you mean 'evolve'?"),
    (variant(neuron__kind="spikng"), "neuron.kind: unknown kind 'spikng'; did you mean 'spiking'?"),
    (variant(optimizer__kind="cma"), "optimizer.kind: unknown kind 'cma'"),
    (variant(space__kind="pixel"), "space.kind: unknown kind 'pixel'; did you mean 'pixels'?"),
    (variant(generation=3), "generation: unknown field; did you mean 'generations'?"),
    (variant(neuron__cell={"tau_mm": 10}), "neuron.cell.tau_mm: unknown field; did you mean 'tau_m'?"),
    (variant(repeats="two"), "repeats: Input should be a valid integer"),
    (variant(repeats=0), "repeats: Input should be greater than or equal to 1"),
    (variant(seed=-1), "seed: Input should be greater than or equal to 0"),
    (variant(generations=0), "generations: Input should be greater than or equal to 1"),
    (variant(budget=-3), "budget: Input should be greater than or equal to 1"),
    (variant(generations=None), "give generations or budget"),
    (variant(aggregate="max"), "aggregate: expected one of mean, median, got 'max'"),
    (variant(aggregate="Mean"), "aggregate: expected one of mean, median, got 'Mean'; did you mean 'mean'?"),
    (variant(space__size=10), "space: pixels renders stimuli of shape (10, 10) but the neuron takes (8, 8); "
                              "use space: {kind: fourier, size: 8} (or pixels)"),
    (variant(neuron="spiking"), "neuron: expected a mapping with a 'kind', got a string"),
    (variant(neuron=DELETE), "neuron: required section missing"),
    (variant(space=DELETE), "space: required section missing"),
    (variant(optimizer__kind="cmaes", optimizer__popsize=1), "optimizer.popsize: Input should be greater than or equal to 2"),
    (variant(space__kind="fourier", space__alpha=-1), "space.alpha: Input should be greater than or equal to 0"),
    (variant(space__kind="fourier", space__max_frequency=2), "space.max_frequency: Input should be less than or equal to 0.75"),
    (variant(neuron__front_end={"spatial_frequency": 0}), "neuron.front_end.spatial_frequency: Input should be greater than 0"),
    (variant(neuron__cell={"tau_m": -5}), "neuron.cell.tau_m: Input should be greater than 0"),
    (variant(neuron__target="gpu"), "neuron.target: expected one of auto, standalone, numpy, got 'gpu'"),
    (variant(neuron__front_end={"kind": "gabr"}), "neuron.front_end: kind: unknown kind 'gabr'; did you mean 'gabor'?"),
    (variant(neuron__front_end={"kind": "dog", "polarity": "of"}),
     "neuron.front_end.polarity: expected one of on, off, got 'of'; did you mean 'off'?"),
    (variant(optimizer={"kind": "genetic", "popsize": 4, "elites": 4}), "optimizer: elites (4) must be fewer than popsize (4)"),
    (variant(seed_stimuli={"images": ["mona_lisa"]}), "seed_stimuli.images: unknown picture 'mona_lisa'"),
    (variant(seed_stimuli={"run": "missing.h5"}), "/missing.h5: no such run log"),  # beside the protocol
    (variant(optimizer__popsize="4x"), "optimizer.popsize: Input should be a valid integer"),
    (variant(neuron__size=1), "neuron.size: Input should be greater than or equal to 2"),
    (variant(budget=3), "budget: 3 presentations are fewer than one generation (4 stimuli x 1 repeats = 4)"),
    (variant(optimizer={"kind": "finite_difference"}, seed_stimuli={"images": ["camera"]}),
     "seed_stimuli: optimizer 'finite_difference' searches from its own starting point"),
    (variant() + "generations: 500\n", "line 14, column 1: duplicate key 'generations' (YAML would keep only the last)"),
    (variant(neuron__front_end={"center": [100, 100]}),
     "neuron: front_end: no pixel of the 8x8 image sees the receptive field; put its center inside the image"),
    (variant(neuron={"kind": "lnp", "size": 8, "front_end": {"sigma": 1e-9}}), "no pixel of the 8x8 image sees"),
    (variant(neuron={"kind": "lnp", "size": 8, "field": "dog", "front_end": {"sigma": 1e-9}}), "no pixel of the 8x8"),
]


def run_cli(args, tmp_path, capsys):
    before = set(os.listdir(tmp_path))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.err.strip(), set(os.listdir(tmp_path)) - before


@pytest.mark.parametrize("text, message", PROTOCOLS, ids=[m[:40] for _, m in PROTOCOLS])
def test_malformed_protocol(tmp_path, capsys, monkeypatch, text, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.yaml").write_text(text)
    code, err, new = run_cli(["run", "bad.yaml"], tmp_path, capsys)
    assert code == 2
    assert err.startswith("closedloop: error: bad.yaml: ") and "\n" not in err, err
    assert message in err, err
    assert not new, f"wrote {new}"


def test_the_log_never_replaces_its_own_protocol(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(variant())
    code, err, new = run_cli(["run", "p.yaml", "--out", "p.yaml", "--overwrite"], tmp_path, capsys)
    assert code == 2 and err == "closedloop: error: p.yaml: is the protocol itself; give the log another path"
    assert not new and (tmp_path / "p.yaml").read_text() == variant()


def test_a_run_whose_report_cannot_be_written_is_refused_before_it_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(variant())
    (tmp_path / "a.html").mkdir()
    (tmp_path / "b").write_text("mine")
    for out, message in [("a.h5", "a.html: a folder, where the run's report goes"),
                         ("b.h5", "b: a file, where the run's figures folder goes")]:
        code, err, new = run_cli(["run", "p.yaml", "--out", out], tmp_path, capsys)
        assert code == 2 and err == f"closedloop: error: {message}; move it or give another --out" and not new


def test_a_cache_that_cannot_be_made_is_said_before_the_log_is(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(variant())
    (tmp_path / "cache").write_text("a file, not a folder")
    monkeypatch.setenv("CLOSEDLOOP_CACHE", str(tmp_path / "cache"))
    code, err, new = run_cli(["run", "p.yaml", "--out", "p.h5"], tmp_path, capsys)
    assert code == 2 and not new, (err, new)
    assert err.startswith("closedloop: error: p.yaml: neuron: ") and "cache/brian2: the cache of compiled programs " \
        "cannot be made (Not a directory); set CLOSEDLOOP_CACHE to a writable folder" in err


def test_an_out_that_is_a_folder_is_refused(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(variant())
    (tmp_path / "logs").mkdir()
    for out in ("logs", "new/"):
        code, err, new = run_cli(["run", "p.yaml", "--out", out, "--overwrite"], tmp_path, capsys)
        assert code == 2 and f"--out {out}: a folder; the log is a file: --out " in err and not new, (err, new)


def test_a_folder_or_device_is_named_as_such_not_as_missing(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").mkdir()
    (tmp_path / "log.h5").mkdir()
    for args, message in [(["run", "p.yaml"], "p.yaml: a folder, not a protocol file"),
                          (["run", "/dev/null"], "/dev/null: not a regular file (a device or a pipe), not a protocol file"),
                          (["resume", "log.h5"], "log.h5: a folder, not a run log")]:
        code, err, new = run_cli(args, tmp_path, capsys)
        assert code == 2 and err == f"closedloop: error: {message}" and not new, err


def test_missing_and_unreadable_protocol_files(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err, new = run_cli(["run", "nowhere.yaml"], tmp_path, capsys)
    assert (code, err) == (2, "closedloop: error: nowhere.yaml: no such protocol file") and not new
    (tmp_path / "binary.yaml").write_bytes(b"\xff\xfe\x00kind")
    code, err, new = run_cli(["run", "binary.yaml"], tmp_path, capsys)
    assert code == 2 and "binary.yaml: cannot read protocol file" in err and new == set()


@pytest.fixture(scope="module")
def good_log(tmp_path_factory):
    path = tmp_path_factory.mktemp("logs") / "good.h5"
    (path.parent / "good.yaml").write_text(variant())
    assert main(["run", str(path.parent / "good.yaml"), "--out", str(path), "-q"]) == 0
    return path


def damaged_logs(tmp_path, good_log):
    text = tmp_path / "text.h5"
    text.write_text("not hdf5 at all")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(good_log.read_bytes()[:3000])
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["x"] = np.arange(3)
    newer = tmp_path / "newer.h5"
    newer.write_bytes(good_log.read_bytes())
    with h5py.File(newer, "a") as f:
        f.attrs["format_version"] = 99
    gutted = tmp_path / "gutted.h5"
    gutted.write_bytes(good_log.read_bytes())
    with h5py.File(gutted, "a") as f:
        del f["trials"]
    return [
        (tmp_path / "absent.h5", "no such run log"),
        (text, "not an HDF5 file"),
        (truncated, "cannot be opened as HDF5"),
        (foreign, "not a closedloop run log"),
        (newer, "log format version 99 is newer than this closedloop reads"),
        (gutted, "damaged run log: group '/trials' is missing"),
    ]


@pytest.mark.parametrize("command", ["analyze", "resume"])
@pytest.mark.parametrize("case", range(6))
def test_damaged_log(tmp_path, capsys, good_log, command, case):
    path, message = damaged_logs(tmp_path, good_log)[case]
    code, err, new = run_cli([command, str(path)], tmp_path, capsys)
    assert code == 2 and "\n" not in err and f"{path}: {message}" in err, err
    assert not new


def test_resume_of_a_complete_run_is_refused(capsys, good_log):
    assert main(["resume", str(good_log)]) == 2
    assert "already complete" in capsys.readouterr().err


def test_resume_of_a_run_still_being_written_is_refused(tmp_path, capsys, good_log):
    import subprocess
    import sys

    path = tmp_path / "live.h5"
    path.write_bytes(good_log.read_bytes())
    with h5py.File(path, "a") as f:
        f["status"][0] = 0
    holder = subprocess.Popen(  # another process holds the lock, as a running writer does
        [sys.executable, "-c", "import sys; from pathlib import Path; from closedloop.recording.writer import lock; "
         f"lock(Path({str(path)!r})); print('held', flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert main(["resume", str(path)]) == 2
        assert "is being written by another closedloop process" in capsys.readouterr().err
    finally:
        holder.communicate("")


@register("space", "test_nan_space")
class NaNSpace(PixelSpace):
    def render(self, z):
        images = super().render(z)
        images[1, 0, 0] = np.nan
        return images


@register("neuron", "test_nan_neuron")
class NaNNeuron(Neuron):
    Config = PixelSpace.Config

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.size, config.size)

    def present(self, stimuli, repeats):
        responses = np.ones((len(stimuli), repeats))
        responses[2] = np.inf
        return Trials(responses=responses, t_start=np.arange(responses.size).reshape(responses.shape))


@pytest.mark.parametrize("changes, message", [
    ({"space__kind": "test_nan_space"}, "space test_nan_space: stimuli of generation 0: 1 NaN or Inf values (in rows [1])"),
    ({"neuron": {"kind": "test_nan_neuron", "size": 8}}, "neuron test_nan_neuron: responses of generation 0: 1 NaN or Inf"),
])
def test_nan_is_caught_and_named(tmp_path, capsys, changes, message):
    text = variant(**changes).replace("size: 8\n  window: 50", "size: 8")
    (tmp_path / "p.yaml").write_text(text)
    code = main(["run", str(tmp_path / "p.yaml"), "--out", str(tmp_path / "p.h5"), "-q"])
    err = capsys.readouterr().err
    assert code == 3 and message in err, err
    from closedloop.recording import open_run

    with open_run(tmp_path / "p.h5") as run:
        assert run.status == "failed" and len(run.trials) == 0
