"""closedloop as a library: paths in a protocol resolve beside its file, logs describe themselves
(units, descriptions, coded columns), and the one reader gives tables with units."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import closedloop
from closedloop.cli import main
from closedloop.errors import ClosedLoopError, ProtocolError
from closedloop.recording import open_run

ROOT = Path(__file__).resolve().parent.parent
NET = '''import torch


def build():
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(4, 2, 3))
'''


def own_network(folder: Path, module_line: str) -> Path:
    """A model file, its weights and a protocol naming both by paths relative to `folder`."""
    (folder / "nets").mkdir(parents=True)
    (folder / "nets" / "tiny.py").write_text(NET)
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(4, 2, 3))
    torch.save(net.state_dict(), folder / "nets" / "tiny.pt")
    protocol = folder / "tiny.yaml"
    protocol.write_text(f"""kind: evolve
neuron: {{kind: dnn, {module_line}, weights: nets/tiny.pt, input_shape: [1, 12, 12], layer: "2", channel: 1}}
space: {{kind: color_fourier, channels: 1, size: 12}}
optimizer: {{kind: random, popsize: 6}}
generations: 2
""")
    return protocol


@pytest.mark.parametrize("module_line", ["import: nets.tiny:build", "import: nets/tiny.py:build"])
def test_import_and_weights_resolve_beside_the_protocol_not_the_working_directory(tmp_path, monkeypatch, module_line):
    protocol = own_network(tmp_path / "project", module_line)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = elsewhere / "tiny.h5"
    assert main(["run", str(protocol), "--out", str(out), "-q"]) == 0
    with open_run(out) as run:
        neuron = run.config["neuron"]
        assert neuron["weights"] == str(tmp_path / "project" / "nets" / "tiny.pt")
        assert run.protocol_dir == str(tmp_path / "project")
        clean = run.trials["clean"].to_numpy()
        z = run.z[run.trials["stimulus"].to_numpy()]
        stimuli = run.build("space").render(z[:3].astype(np.float64))
    # the logged activations are those of the saved weights
    torch.manual_seed(3)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.ReLU(inplace=True), torch.nn.Conv2d(4, 2, 3))
    net.load_state_dict(torch.load(tmp_path / "project" / "nets" / "tiny.pt", weights_only=True))
    with torch.no_grad():
        expected = net(torch.as_tensor(stimuli, dtype=torch.float32))[:, 1].mean(dim=(1, 2)).double().numpy()
    np.testing.assert_allclose(clean[:3], expected, rtol=1e-5, atol=1e-6)


def test_a_space_of_the_wrong_shape_names_the_shape_and_the_space_that_gives_it(tmp_path):
    protocol = own_network(tmp_path, "import: nets.tiny:build")
    protocol.write_text(protocol.read_text().replace("{kind: color_fourier, channels: 1, size: 12}",
                                                     "{kind: fourier, size: 12}"))
    with pytest.raises(ProtocolError) as error:
        closedloop.experiment(str(protocol))
    message = str(error.value)
    assert "renders stimuli of shape (12, 12) but the neuron takes (1, 12, 12)" in message
    assert "use space: {kind: color_fourier, channels: 1, size: 12}" in message and "\n" not in message


LNP = {"kind": "evolve", "seed": 1, "neuron": {"kind": "lnp", "size": 8}, "space": {"kind": "fourier", "size": 8},
       "optimizer": {"kind": "cmaes", "popsize": 6}, "generations": 2, "reference": {"count": 1},
       "retest": {"top": 2, "repeats": 2}}


def test_every_dataset_of_a_log_says_its_units_and_meaning(tmp_path):
    run = closedloop.run(LNP, out=tmp_path / "lnp.h5", progress=False)
    run.close()
    with h5py.File(tmp_path / "lnp.h5", "r") as f:
        datasets = []
        f.visititems(lambda name, item: datasets.append(name) if isinstance(item, h5py.Dataset) else None)
        assert len(datasets) > 20
        for name in datasets:
            assert f[name].attrs["units"] and f[name].attrs["description"], name
        assert f["trials/response"].attrs["units"] == "spikes" and f["trials/t_start"].attrs["units"] == "s"
        assert f["trials/state/rate"].attrs["units"] == "Hz"
        assert h5py.check_enum_dtype(f["trials/phase"].dtype) == {"search": 0, "reference": 1, "retest": 2}
        assert h5py.check_enum_dtype(f["status"].dtype)["complete"] == f["status"][0]
    with open_run(tmp_path / "lnp.h5") as run:
        trials = run.trials
        assert set(trials["phase"]) == {"search", "reference", "retest"}
        assert trials.attrs["units"]["response"] == "spikes" and trials.attrs["units"]["rate"] == "Hz"
        assert trials.attrs["descriptions"]["clean"].startswith("noise-free")
        assert run.generations.attrs["units"]["wall_time"] == "s"
        assert set(run.saved_state) == {"neuron.clock", "neuron.calls"}
        assert run.saved_state["neuron.clock"].shape == (2, 1)


def test_old_logs_read_with_the_same_units_and_parameters_that_never_collide():
    with open_run(ROOT / "tests" / "fixtures" / "logs" / "tuning.h5") as run:  # written before units were logged
        assert "units" not in run.file["trials/response"].attrs
        trials = run.trials
        assert run.parameters == ["orientation", "spatial_frequency", "grating_phase"]
        assert trials.attrs["units"]["grating_phase"] == "deg" and trials.attrs["units"]["response"] == "spikes"
        assert list(trials["phase"].cat.categories) == ["search", "reference", "retest"]
    with open_run(ROOT / "tests" / "fixtures" / "logs" / "fooling.h5") as run:
        assert set(run.trials["source"]) <= {"white", "pink", "tv", "evolved"}


def test_version_and_global_flags_before_or_after_the_command(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"closedloop {closedloop.__version__}"
    protocol = tmp_path / "lnp.yaml"
    protocol.write_text("kind: evolve\nneuron: {kind: lnp, size: 8}\nspace: {kind: fourier, size: 8}\n"
                        "optimizer: {kind: random, popsize: 4}\ngenerations: 2\n")
    for args in (["-q", "run", str(protocol), "--out", str(tmp_path / "a.h5")],
                 ["run", str(protocol), "--out", str(tmp_path / "b.h5"), "-q", "--debug"],
                 ["--debug", "run", "-q", str(protocol), "--out", str(tmp_path / "c.h5")]):
        assert main(args) == 0, args
        assert "gen/s" not in capsys.readouterr().err  # no progress bar
    assert main(["analyze", "-q", str(tmp_path / "a.h5")]) == 0


def test_analyze_on_a_sweep_folder_summarises_its_logs_again(tmp_path, capsys):
    import shutil

    import pandas as pd

    folder = tmp_path / "sweep"
    shutil.copytree(ROOT / "tests" / "fixtures" / "logs" / "sweep-noise", folder)
    assert main(["analyze", str(folder)]) == 0
    assert "sweep: 2 runs" in capsys.readouterr().out
    table = pd.read_csv(folder / "summary.csv")
    assert sorted(table["repeats"]) == [1, 2] and (table["status"] == "complete").all()  # the swept field, found
    assert (folder / "summary.png").is_file() and (folder / "summary.html").is_file()
    assert main(["analyze", str(tmp_path)]) == 2  # a folder without run logs


SMALL_LNP = {"kind": "evolve", "neuron": {"kind": "lnp", "size": 8}, "space": {"kind": "fourier", "size": 8},
             "budget": 40, "generations": None}


class OneRowNet(torch.nn.Module):
    def forward(self, x):
        return torch.ones(1, 2)  # forgets the batch axis


def test_python_misuse_is_a_closedloop_error_and_never_overwrites_a_log(tmp_path):
    from closedloop.errors import ClosedLoopError

    log = tmp_path / "t.h5"
    closedloop.run(SMALL_LNP, out=log, progress=False, budget=np.int64(40)).close()  # numpy numbers are plain numbers
    before = log.read_bytes()
    with pytest.raises(ClosedLoopError, match="exists; a log is never overwritten unless you ask"):
        closedloop.run(SMALL_LNP, out=log, progress=False)
    assert log.read_bytes() == before
    closedloop.experiment(SMALL_LNP, neuron__size=9, space__size=9)
    assert SMALL_LNP["neuron"]["size"] == 8  # the caller's dict is left as it was
    run = closedloop.open_run(log)
    assert run.rendered([]).shape[0] == 0 and run.rendered(np.int64(3)).shape[0] == 1
    for wrong in ([40], [-1], [0.5], [[0, 1]]):  # 40 stimuli were shown: 0-39
        with pytest.raises(IndexError, match=r"stimulus numbers run from 0 to 39; got"):
            run.rendered(wrong)
    run.close()
    with pytest.raises(ClosedLoopError, match="this Run was closed"):
        run.trials
    for call, message in [
        (lambda: closedloop.evolve("zzz", "x"), "evolve: model: unknown zoo model 'zzz'"),
        (lambda: closedloop.evolve(None, ":0", input_shape=(1, 8, 8)), "expected a torch.nn.Module"),
        (lambda: closedloop.evolve(OneRowNet(), "2:abc", input_shape=(1, 8, 8)), "the channel after ':' must be"),
        (lambda: closedloop.evolve(OneRowNet(), ":0", input_shape=(1, 8, 8), out=tmp_path / "one.h5"),
         r"gives \(1,\) values for a batch of 2 stimuli"),
    ]:
        with pytest.raises(ProtocolError, match=message):
            call()
    assert not (tmp_path / "one.h5").exists()


def test_an_experiment_runs_once_and_replaces_a_log_only_when_asked(tmp_path):
    """A second run of one experiment would continue its neuron's and optimizer's state: not the
    same trials under the same seed, so it is refused; so is an existing log, unless asked."""
    from closedloop.errors import ClosedLoopError

    experiment = closedloop.experiment(SMALL_LNP)
    experiment.run(tmp_path / "a.h5", progress=False)
    with pytest.raises(ClosedLoopError, match="this experiment has run already"):
        experiment.run(tmp_path / "b.h5", progress=False)
    assert not (tmp_path / "b.h5").exists()
    before = (tmp_path / "a.h5").read_bytes()
    with pytest.raises(ClosedLoopError, match=r"a.h5: exists; a log is never overwritten unless you ask"):
        closedloop.experiment(SMALL_LNP).run(tmp_path / "a.h5", progress=False)
    assert (tmp_path / "a.h5").read_bytes() == before
    closedloop.experiment(SMALL_LNP).run(tmp_path / "a.h5", progress=False, overwrite=True)
    with open_run(tmp_path / "a.h5") as again, h5py.File(tmp_path / "b.h5", "w"):
        assert again.status == "complete"
    assert closedloop.experiment(SMALL_LNP).default_output() == Path("data/evolve.h5")  # not data/<python>.h5
    built = closedloop.experiment(SMALL_LNP)

    class Logged(type(built)):  # a kind from another package that extends evolve
        def run(self, path, progress=True, resume=False):
            return super().run(path, progress, resume)

    extended = Logged(built.protocol)
    assert extended.run(tmp_path / "c.h5", progress=False)["status"] == "complete"  # checked once, not refused
    with pytest.raises(ClosedLoopError, match="has run already"):
        extended.run(tmp_path / "d.h5", progress=False)


def test_two_modules_of_one_class_are_two_models(tmp_path):
    """Two torch.nn.Sequential in one notebook: each log names (and rebuilds) its own module."""
    torch.manual_seed(0)
    first, second = (torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)) for _ in range(2))
    logs = []
    for k, net in enumerate((first, second, first)):
        run = closedloop.evolve(net, "0:1", input_shape=(1, 8, 8), budget=40, progress=False, out=tmp_path / f"{k}.h5",
                                optimizer={"kind": "random", "popsize": 10})
        logs.append((run.config["neuron"]["model"], run.trials["response"].to_numpy()))
        with pytest.raises(ClosedLoopError, match="exists; a log is never overwritten"):
            closedloop.evolve(net, "0:1", input_shape=(1, 8, 8), budget=40, progress=False, out=tmp_path / f"{k}.h5")
        rebuilt = run.build("neuron")
        logged = run.trials.set_index("stimulus")["response"].sort_index().to_numpy()[:10]
        np.testing.assert_allclose(rebuilt.present(run.rendered(np.arange(10)), 1).responses[:, 0], logged, rtol=1e-5)
        run.close()
    assert [name for name, _ in logs] == ["Sequential", "Sequential-2", "Sequential"]
    with closedloop.evolve(first, "0:1", input_shape=(1, 8, 8), budget=20, progress=False, out=tmp_path / "noisy.h5",
                           optimizer={"kind": "random", "popsize": 10},
                           neuron={"position": [2, 2], "noise": {"kind": "gaussian", "sigma": 0.5}}) as noisy:
        assert noisy.config["neuron"]["position"] == [2, 2] and noisy.config["neuron"]["noise"]["sigma"] == 0.5
    assert not np.allclose(logs[0][1], logs[1][1])
    assert closedloop.evolve(second, "0:1", input_shape=(1, 8, 8), budget=40, progress=False, out=tmp_path / "0.h5",
                             overwrite=True, optimizer={"kind": "random", "popsize": 10}).config["neuron"]["model"] \
        == "Sequential-2"


def test_arguments_by_hand_are_checked_in_one_line():
    cell, space = closedloop.neuron("lnp", size=8), closedloop.space("fourier", size=8, max_frequency=0.25)
    for call, message in [
        (lambda: cell.present(np.zeros((8, 8)), 2), r"stimuli of shape \(8, 8\); expected a batch \(n, 8, 8\); one stimulus s: s\[None\]"),
        (lambda: cell.present(np.full((2, 8, 8), np.nan), 2), r"stimuli: NaN or Inf values in rows \[0, 1\]"),
        (lambda: cell.present(np.zeros((2, 8, 8)), "2"), "repeats: a whole number of at least 1, got '2'"),
        (lambda: cell.present(np.zeros((2, 8, 8)), 0), "repeats: a whole number of at least 1, got 0"),
        (lambda: space.render(np.full((1, space.dim), np.inf)), r"render: NaN or Inf latents in rows \[0\]"),
        (lambda: space.encode(np.zeros((8, 8))), r"encode: stimuli of shape \(8, 8\); expected a batch \(n, 8, 8\)"),
    ]:
        with pytest.raises(ValueError, match=message):
            call()
    assert space.render(np.zeros((0, space.dim))).shape == (0, 8, 8)
    assert cell.present(np.zeros((2, 8, 8)), np.int64(2)).responses.shape == (2, 2)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3))
    for call, message in [
        (lambda: closedloop.optimizer("cmaes", "fourier"), "optimizer: space: expected a space object"),
        (lambda: closedloop.run("protocols/quickstart"), "not a protocol file .*; did you mean protocols/quickstart.yaml"),
        (lambda: closedloop.run(cell), r"expected a protocol \(a .yaml file's path, YAML text or a dict\), got a LNPCell"),
        (lambda: closedloop.evolve(net, "0", input_shape=(1, 8, 8)), "unit: '0' has no ':'; for a module of your own"),
        (lambda: closedloop.evolve(net, input_shape=(1, 8, 8)), "unit: missing; for a module of your own"),
        (lambda: closedloop.evolve(net, ":0", input_shape=24), "input_shape: the shape of one stimulus as a tuple"),
        (lambda: closedloop.evolve("digits", "class3", input_shape=(3, 8, 8)), "the zoo model 'digits' takes \\(1, 8, 8\\)"),
        (lambda: closedloop.neuron("lnp", seed=1.5), "neuron: seed: a whole number of at least 0, got 1.5"),
        (lambda: closedloop.evolve(net, "0:1", input_shape=(1, 8, 8), neuron={"layer": "0"}), "neuron: layer: set by evolve's"),
        (lambda: closedloop.evolve(net, "0:1", input_shape=(1, 8, 8), neuron={"positon": [1, 1]}), "did you mean 'position'"),
    ]:
        with pytest.raises(ProtocolError, match=message):
            call()


@pytest.mark.parametrize("kind", ["cmaes", "genetic", "linear_model", "random", "finite_difference", "nevergrad"])
def test_role_objects_refuse_arguments_they_cannot_use_in_one_line(kind):
    """By hand, in a notebook: tell() with a score per row and every score finite, render() with a
    row per latent vector; a NaN score would otherwise steer the search without a word."""
    space = closedloop.space("fourier", size=8, max_frequency=0.25)
    search = closedloop.optimizer(kind, space, seed=0, **({"budget": 60} if kind == "nevergrad" else {}))
    z = search.ask()
    scores = np.linspace(0.0, 1.0, len(z))
    for args, message in [((z, scores[:-1]), rf"tell: scores of shape \({len(z) - 1},\) for {len(z)} latent vectors"),
                          ((z[:, :3], scores), rf"tell: latent vectors of shape \({len(z)}, 3\); expected \(n, {space.dim}\)"),
                          ((z, np.where(np.arange(len(z)) == 2, np.nan, scores)), r"NaN or Inf scores in rows \[2\]")]:
        with pytest.raises(ValueError, match=message):
            search.tell(*args)
    search.tell(z, scores)  # the refusals changed nothing: the right call still works
    assert search.ask().shape == z.shape
    with pytest.raises(ValueError, match=rf"render: latent vectors of shape \({space.dim},\); expected \(n, {space.dim}\)"):
        space.render(z[0])
    assert space.render(z[:1]).shape == (1, 8, 8)


@pytest.mark.parametrize("kind", ["cmaes", "finite_difference"])
def test_a_generation_optimizer_by_hand_is_told_each_ask_once_and_whole(kind):
    """pycma and finite differences learn from the generation their ask() returned: a tell before
    any ask, a second tell of it, or part of it is refused in one line (pycma's own errors and an
    AttributeError or array-split error before), and the right call still works after."""
    space = closedloop.space("fourier", size=8, max_frequency=0.25)
    search = closedloop.optimizer(kind, space, seed=0)
    assert search.tells_answer_asks and not closedloop.optimizer("genetic", space).tells_answer_asks
    with pytest.raises(ValueError, match=f"tell before ask: optimizer {kind} learns from the scores"):
        search.tell(np.zeros((search.popsize, space.dim)), np.zeros(search.popsize))
    z = search.ask()
    with pytest.raises(ValueError, match=f"tell: 3 latent vectors; optimizer {kind} learns from the scores of all "
                                         f"{len(z)} that ask"):
        search.tell(z[:3], np.arange(3.0))
    search.tell(z, np.arange(len(z), dtype=float))
    with pytest.raises(ValueError, match=r"the last ask\(\)'s latents were told already"):
        search.tell(z, np.arange(len(z), dtype=float))
    assert search.ask().shape == z.shape
    wrapped = closedloop.optimizer("regularized", space, seed=0, search={"kind": kind})
    with pytest.raises(ValueError, match="tell before ask: optimizer regularized"):
        wrapped.tell(np.zeros((wrapped.popsize, space.dim)), np.zeros(wrapped.popsize))


def test_nevergrad_by_hand_asks_for_a_budget_instead_of_failing_inside():
    space = closedloop.space("fourier", size=8, max_frequency=0.25)
    with pytest.raises(ValueError, match="nevergrad NGOpt: needs the budget; give budget=N"):
        closedloop.optimizer("nevergrad", space).ask()


def test_serve_schema_and_sweep_arguments_are_checked(tmp_path, capsys):
    (tmp_path / "n.yaml").write_text("kind: lnp\n")
    for args, message in [
        (["serve", tmp_path / "n.yaml", "--max-message", "nan"], "--max-message nan: expected a number of MB"),
        (["serve", tmp_path / "n.yaml", "--rig-seed", "-1"], "--rig-seed: "),
        (["serve", tmp_path / "n.yaml", "--bind", "tcp://127.0.0.1:99999"], "the port must be 1 to 65535"),
        (["sweep", tmp_path / "s.yaml", "--connect-timeout", "1e12"], "--connect-timeout 1000000000000.0: expected "
                                                                       "seconds above 0"),
        (["sweep", tmp_path / "s.yaml", "--connect-timeout", "nan"], "--connect-timeout nan: expected seconds"),
        (["sounds", tmp_path / "a.h5", "--every", "-2"], "--every -2: expected a whole number of generations"),
    ]:
        assert main([str(a) for a in args]) == 2
        assert message in capsys.readouterr().err
    (tmp_path / "schema.json").write_text("mine")
    assert main(["schema", str(tmp_path / "schema.json")]) == 2
    assert "exists; add --overwrite" in capsys.readouterr().err and (tmp_path / "schema.json").read_text() == "mine"
    (tmp_path / "sweep.yaml").write_text("kind: sweep\nbase: {kind: evolve, neuron: {kind: lnp, size: 8}, "
                                         "space: {kind: fourier, size: 8}, generations: 1}\n"
                                         f"grid: {{repeats: {list(range(1, 101))}}}\nseeds: 1000\n")
    assert main(["run", str(tmp_path / "sweep.yaml"), "--out", str(tmp_path / "sweep")]) == 2
    assert "100,000 runs (grid x seeds); a sweep holds at most 10,000" in capsys.readouterr().err
    assert not (tmp_path / "sweep").exists()
