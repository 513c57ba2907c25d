"""Sweeps: grid expansion and validation, local processes, a Dask LocalCluster, restart."""

from __future__ import annotations

import os
import shutil

import h5py
import numpy as np
import pandas as pd
import pytest
import yaml

from closedloop import protocol as protocol_module
from closedloop.cli import main
from closedloop.errors import ProtocolError
from closedloop.recording import open_run
from closedloop.recording.writer import STATUS

BASE = {
    "kind": "evolve",
    "neuron": {"kind": "spiking", "size": 8, "front_end": {"orientation": 30, "spatial_frequency": 0.2, "sigma": 2},
               "window": 100.0, "dt": 0.2},
    "space": {"kind": "fourier", "size": 8, "max_frequency": 0.3},
    "optimizer": {"kind": "cmaes", "popsize": 6, "sigma0": 0.8},
    "generations": 2,
}


def write_sweep(tmp_path, name="sweep.yaml", **fields):
    sweep = {"kind": "sweep", "base": BASE, "grid": {"neuron.cell.noise_sigma": [0.02, 0.2]}, "seeds": 2,
             "output": str(tmp_path / "out"), **fields}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))
    return path


def load(path):
    protocol = protocol_module.load(path)
    return protocol.experiment_cls(protocol)


def test_grid_expands_to_every_combination_and_seed(tmp_path):
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(BASE))
    path = write_sweep(tmp_path, base="base.yaml", seeds=[3, 7], grid={
        "repeats": [1, 2, 4],
        "optimizer": [{"kind": "cmaes", "popsize": 6}, {"kind": "genetic", "popsize": 6}],
        "optimizer.popsize": [6, 8],
    })
    runs = load(path).runs
    assert len(runs) == 3 * 2 * 2 * 2
    assert sorted({r.seed for r in runs}) == [3, 7]
    genetic = [r for r in runs if r.data["optimizer"]["kind"] == "genetic"]
    # the whole section replaced the base's (no cmaes-only sigma0 left) before popsize was set in it
    assert len(genetic) == 12 and all("sigma0" not in r.data["optimizer"] for r in genetic)
    assert {r.data["optimizer"]["popsize"] for r in genetic} == {6, 8}
    assert all(r.data["repeats"] == r.params["repeats"] for r in runs)
    assert len({r.log.name for r in runs}) == len(runs)
    # names depend on the run's parameters, not on its place in the grid
    assert [r.log.name for r in load(path).runs] == [r.log.name for r in runs]
    first = protocol_module.parse(runs[0].text)
    assert first.seed == 3 and first.kind == "evolve"


@pytest.mark.parametrize("fields, message", [
    ({"grid": {"neuron.cell.noise_sigm": [0.1]}}, "neuron.cell.noise_sigm: unknown field; did you mean 'noise_sigma'"),
    ({"grid": {"optimizer.kind": ["cmaes", "genetic"]}}, "optimizer.sigma0: unknown field"),
    ({"grid": {"neuron.cell.noise_sigma": [0.1, -1]}}, "neuron.cell.noise_sigma: Input should be greater than"),
    ({"grid": {"optimizer": [{"kind": "genetic", "popsize": 4, "elites": 4}]}}, "optimizer: elites (4) must be fewer"),
    ({"grid": {"seed": [1, 2]}}, "grid.seed: cannot be swept"),
    ({"grid": {"repeats": []}}, "grid.repeats: expected a non-empty list"),
    ({"base": "missing.yaml"}, "base: no such protocol file"),
    ({"seeds": 0}, "seeds: expected a count >= 1"),
    ({"grid": {"repeats": [2, 2]}}, "two runs have the same parameters"),
    ({"grids": {}}, "grids: unknown field; did you mean 'grid'"),
])
def test_every_run_is_validated_before_any_starts(tmp_path, capsys, fields, message):
    path = write_sweep(tmp_path, **fields)
    with pytest.raises(ProtocolError) as caught:
        load(path)
    text = str(caught.value)
    assert message in text and text.startswith(str(path)) and "\n" not in text
    assert main(["sweep", str(path)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_fraction_of_optimum_where_the_neuron_knows_its_clean_response(tmp_path):
    from closedloop.sweeps.measure import measure

    data = {**BASE, "seed": 2, "neuron": {"kind": "lnp", "size": 8,
                                          "front_end": {"orientation": 30, "spatial_frequency": 0.2, "sigma": 2}},
            "generations": 4}
    protocol = protocol_module.from_dict(data, "lnp")
    protocol.experiment_cls(protocol).run(tmp_path / "lnp.h5", progress=False)
    row = measure(tmp_path / "lnp.h5")
    assert row["status"] == "complete" and 0 < row["best_clean_response"] <= 1
    # the LNP cell's clean response is the rectified cosine of stimulus and field, 1.0 at the field
    # itself: its fraction of the optimum is the best stimulus's correlation with the field
    assert row["fraction_of_optimum"] == pytest.approx(max(row["rf_correlation"], 0.0), abs=1e-5)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    """A 4-run sweep on 2 spawned local processes."""
    tmp_path = tmp_path_factory.mktemp("local")
    path = write_sweep(tmp_path)
    assert main(["sweep", str(path), "--workers", "2", "-q"]) == 0
    return path, tmp_path / "out"


@pytest.mark.slow
def test_local_sweep_writes_a_log_per_run_and_the_summary(local_sweep):
    path, out = local_sweep
    runs = load(path).runs
    table = pd.read_csv(out / "summary.csv")
    assert len(table) == 4 and list(table["run"]) == [0, 1, 2, 3]
    assert list(table["neuron.cell.noise_sigma"]) == [0.02, 0.02, 0.2, 0.2] and list(table["seed"]) == [0, 1, 0, 1]
    assert (table["status"] == "complete").all() and (table["presentations"] == 2 * 6).all()
    for spec, row in zip(runs, table.itertuples()):
        assert row.log == spec.log.name
        with open_run(out / spec.log.name) as run:
            assert run.status == "complete" and run.seed == spec.seed
            assert row.best_response == run.generations["best"].iloc[-1]
    # the spiking cell logs its drive, 1.0 at the optimum: the best stimulus reaches part of it
    assert table["fraction_of_optimum"].between(0, 1.0001).all()
    assert table["rf_correlation"].between(-1, 1).all() and table["recommended_rf_correlation"].notna().all()
    assert table["best_clean_response"].isna().all()  # the spiking cell does not know its clean rate
    assert (out / "summary.png").stat().st_size > 1000


@pytest.mark.slow
def test_restart_skips_complete_runs_and_reruns_the_rest(local_sweep, tmp_path, capsys):
    path, out = local_sweep
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    logs = sorted(copy.glob("run-*.h5"))
    os.remove(logs[0])
    with h5py.File(logs[1], "r+") as f:  # as if killed part-way
        f["status"][0] = STATUS["running"]
    untouched = {log: log.stat().st_mtime_ns for log in logs[2:]}
    sweep = write_sweep(tmp_path, name="again.yaml", output=str(copy))
    experiment = load(sweep)
    summary = experiment.run(copy, progress=False, workers=1)
    assert summary["skipped"] == 2 and summary["status"] == "complete"
    assert all(log.stat().st_mtime_ns == mtime for log, mtime in untouched.items())
    for log in logs[:2]:
        with open_run(log) as run:
            assert run.status == "complete"
    # `closedloop run` on a sweep file runs the sweep too: here, nothing left to do
    assert main(["run", str(sweep), "-q"]) == 0
    assert "4 already complete" in capsys.readouterr().out
    before = pd.read_csv(out / "summary.csv")
    after = pd.read_csv(copy / "summary.csv")
    # same protocol and seed give the same run, whichever process ran it
    pd.testing.assert_frame_equal(before.drop(columns=["wall_time", "cpu_time"]),
                                  after.drop(columns=["wall_time", "cpu_time"]))


@pytest.mark.slow
def test_the_same_sweep_runs_on_a_dask_local_cluster(local_sweep, tmp_path):
    distributed = pytest.importorskip("distributed")
    path, out = local_sweep
    sweep = write_sweep(tmp_path, output=str(tmp_path / "dask"))
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        assert main(["sweep", str(sweep), "--scheduler", cluster.scheduler_address, "-q"]) == 0
    local = pd.read_csv(out / "summary.csv")
    remote = pd.read_csv(tmp_path / "dask" / "summary.csv")
    assert len(remote) == 4 and (remote["status"] == "complete").all()
    for column in ("log", "best_response", "rf_correlation", "recommended_rf_correlation", "presentations"):
        np.testing.assert_array_equal(remote[column], local[column])


def test_sweep_command_rejects_bad_arguments(tmp_path, capsys):
    path = write_sweep(tmp_path)
    assert main(["sweep", "protocols/quickstart.yaml"]) == 2
    assert "kind: expected 'sweep'" in capsys.readouterr().err
    assert main(["sweep", str(path), "--workers", "0"]) == 2
    assert main(["sweep", str(path), "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"]) == 2
    assert "--workers: local processes only" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
