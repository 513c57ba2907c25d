"""A neuron over the wire (docs/rig.md): real ZeroMQ sockets on loopback, real neurons behind them."""

import json
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import yaml
import zmq

from closedloop import protocol as protocol_module
from closedloop.cli import main
from closedloop.errors import ClosedLoopError, NeuronStopped
from closedloop.recording import open_run
from closedloop.rig import wire
from closedloop.rig.server import Server, load_neuron
from closedloop.rig.simulator import Rig, RigSettings

pytestmark = pytest.mark.timeout(600)  # a hang fails with a traceback, it never holds up CI
ROOT = Path(__file__).resolve().parents[1]
LNP = {"kind": "lnp", "size": 10}
PROTOCOL = {"kind": "evolve", "seed": 5, "space": {"kind": "fourier", "size": 10, "max_frequency": 0.3},
            "optimizer": {"kind": "cmaes", "popsize": 6}, "generations": 6, "repeats": 2}


@contextmanager
def serving(tmp_path, neuron=LNP, bind="tcp://127.0.0.1:*", **options):
    """A real server on loopback in a thread; yields (endpoint, server)."""
    path = tmp_path / "neuron.yaml"
    path.write_text(yaml.safe_dump({**neuron, "seed": PROTOCOL["seed"]}))
    unit, description = load_neuron(path)
    rig = Rig(RigSettings(**options.pop("rig", {})))
    server = Server(unit, description, bind=bind, rig=rig, **options)
    endpoint = server.bind()
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    try:
        yield endpoint, server
    finally:
        stop.set()
        thread.join(30)
        server.close()


def write_protocol(folder, name, neuron, **changes):
    path = folder / name
    path.write_text(yaml.safe_dump({**PROTOCOL, "neuron": neuron, **changes}))
    return path


def run(protocol, out) -> int:
    return main(["run", str(protocol), "--out", str(out), "-q", "--overwrite"])


def same_trials(local, remote):
    """The remote log holds the local log's trials, column for column, plus the rig's columns."""
    with open_run(local) as x, open_run(remote) as y:
        assert x.status == y.status == "complete"
        common = [c for c in x.trials.columns]
        assert y.trials[common].equals(x.trials)
        assert {"rig_trial", "rig_time", "rig_session", "rig_drops"} <= set(y.trials.columns)
        np.testing.assert_array_equal(x.z, y.z)
        np.testing.assert_array_equal(x.file["spikes/times"][()], y.file["spikes/times"][()])
        columns = [c for c in x.generations.columns if c != "wall_time"]
        assert y.generations[columns].equals(x.generations[columns])
        return y.trials


def ask(endpoint, frames, timeout_ms=20000):
    """One raw request on a fresh REQ socket: what any client (MATLAB, C) would send."""
    with zmq.Context() as context, context.socket(zmq.REQ) as socket:
        socket.linger = 0
        socket.connect(endpoint)
        socket.send_multipart(frames)
        assert socket.poll(timeout_ms), "no answer"
        return wire.decode(socket.recv_multipart(), 1 << 30)


def test_wire_round_trip_and_refusals():
    arrays = {"a": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.array([[1, 0]], dtype=np.uint8)}
    header, decoded = wire.decode(wire.encode({"type": "present", "request": 3}, arrays), 1 << 20)
    assert header["type"] == "present" and header["version"] == wire.VERSION
    for name, value in arrays.items():
        np.testing.assert_array_equal(decoded[name], value)
        assert decoded[name].dtype == value.dtype
    good = wire.encode({"type": "x", "request": 1}, {"a": np.zeros(4)})
    head = json.loads(good[0])
    cases = {
        "malformed": [[b"\xff\xfe"], [b"[1, 2]"], [good[0]], [good[0], b"short"],
                      [json.dumps({**head, "request": -1}).encode(), good[1]],
                      [json.dumps({**head, "arrays": [{"name": "a", "dtype": "complex", "shape": [4]}]}).encode(),
                       good[1]]],
        "version": [[json.dumps({**head, "version": 99}).encode(), good[1]]],
        "oversized": [[good[0], bytes(64)] * 1000],
    }
    for code, messages in cases.items():
        for frames in messages:
            with pytest.raises(wire.WireError) as caught:
                wire.decode(frames, 10_000)
            assert caught.value.code == code, (frames[0][:60], str(caught.value))
    assert wire.is_loopback("tcp://127.0.0.1:5555") and wire.is_loopback("tcp://[::1]:*")
    assert wire.is_loopback("tcp://localhost:5") and wire.is_loopback("ipc:///tmp/x")
    for address in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://10.0.0.5:5555", "tcp://127.0.0.1;10.0.0.5:5",
                    "tcp://eth0:5555", "udp://127.0.0.1:5"):
        assert not wire.is_loopback(address), address


def test_server_answers_bad_messages_with_errors_and_keeps_serving(tmp_path):
    with serving(tmp_path, max_bytes=200_000) as (endpoint, _):
        hello = json.dumps({"protocol": wire.PROTOCOL, "version": wire.VERSION, "type": "hello",
                            "request": 1}).encode()
        present = {"protocol": wire.PROTOCOL, "version": wire.VERSION, "type": "present", "request": 2, "repeats": 1}
        stimulus = np.zeros((1, 10, 10))
        spec = [{"name": "stimuli", "dtype": "float64", "shape": [1, 10, 10]}]
        bad = {
            "malformed": [b"not json at all"],
            "version": [json.dumps({"protocol": wire.PROTOCOL, "version": 2, "type": "hello", "request": 1}).encode()],
            "oversized": [hello, bytes(300_000)],
            "no_session": [json.dumps({**present, "arrays": spec}).encode(), stimulus.tobytes()],
        }
        for code, frames in bad.items():
            header, _ = ask(endpoint, frames)
            assert (header["type"], header["code"]) == ("error", code), header
        header, arrays = ask(endpoint, [hello])
        assert header["type"] == "hello" and header["stimulus_shape"] == [10, 10]
        assert header["has_gradient"] is False and header["modality"] == "image"
        assert header["state_columns"] == ["rate"] and set(arrays) >= {"state/clock", "state/calls", "truth/receptive_field"}
        session = {**present, "session": header["session"]}
        wrong_shape = [{"name": "stimuli", "dtype": "float64", "shape": [1, 10, 11]}]
        for frames, code in [([json.dumps({**session, "arrays": wrong_shape}).encode(), np.zeros(110).tobytes()],
                              "bad_request"),
                             ([json.dumps({**session, "type": "dance", "request": 3}).encode()], "unknown_type")]:
            header, _ = ask(endpoint, frames)
            assert (header["type"], header["code"]) == ("error", code), header
        frames = [json.dumps({**session, "request": 4, "repeats": 3, "arrays": spec}).encode(), stimulus.tobytes()]
        first, arrays = ask(endpoint, frames)
        again, repeated = ask(endpoint, frames)  # the same request again: the same answer, shown once
        assert first["type"] == again["type"] == "present"
        np.testing.assert_array_equal(arrays["rig_trial"], repeated["rig_trial"])
        np.testing.assert_array_equal(arrays["rig_trial"], [[1, 2, 3]])
        assert arrays["responses"].shape == (1, 3) and repeated["state/calls"][0] == 1


def test_client_reports_a_server_it_cannot_use(tmp_path):
    """A server speaking another version, or garbage: one clear error, never a traceback."""
    answers = {"version": lambda header: wire.encode({"type": "hello", "request": header["request"]}),
               "garbage": lambda header: [b"\x00garbage"]}
    for name, answer in answers.items():
        with zmq.Context() as context, context.socket(zmq.REP) as socket:
            port = socket.bind_to_random_port("tcp://127.0.0.1")
            replies = []

            def serve():
                if socket.poll(30000):
                    header = json.loads(socket.recv_multipart()[0])
                    frames = answer(header)
                    if name == "version":
                        frames[0] = frames[0].replace(b'"version": 1', b'"version": 7')
                    socket.send_multipart(frames)
                    replies.append(header)

            thread = threading.Thread(target=serve, daemon=True)
            thread.start()
            protocol = write_protocol(tmp_path, f"{name}.yaml", {"kind": "remote", "address": f"tcp://127.0.0.1:{port}",
                                                                 "timeout": 30})
            with pytest.raises(ClosedLoopError) as caught:
                loaded = protocol_module.load(protocol)
                loaded.experiment_cls(loaded)
            thread.join(30)
            assert replies and replies[0]["version"] == wire.VERSION
            assert ("version 7" in str(caught.value)) if name == "version" else isinstance(caught.value, NeuronStopped)


def test_no_server_is_reported_after_connect_timeout_not_the_run_timeout(tmp_path, capsys):
    """Nothing listens: the first hello gives up after connect_timeout (default 30 s), not after the
    10 minutes a rig may take to answer a batch; nothing is logged."""
    with zmq.Context() as context, context.socket(zmq.REP) as socket:
        port = socket.bind_to_random_port("tcp://127.0.0.1")  # a free port, closed again before the run
    remote = write_protocol(tmp_path, "r.yaml", {"kind": "remote", "address": f"tcp://127.0.0.1:{port}",
                                                "connect_timeout": 1.5})
    started = time.monotonic()
    assert run(remote, tmp_path / "r.h5") == NeuronStopped.exit_code
    assert time.monotonic() - started < 20
    assert "no answer to hello within 1.5 s (neuron.connect_timeout); is the server running?" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


def test_loopback_only_without_keys(tmp_path, capsys):
    (tmp_path / "n.yaml").write_text(yaml.safe_dump(LNP))
    assert main(["serve", str(tmp_path / "n.yaml"), "--bind", "tcp://0.0.0.0:5999"]) == 2
    assert "not a loopback address" in capsys.readouterr().err
    remote = write_protocol(tmp_path, "r.yaml", {"kind": "remote", "address": "tcp://192.0.2.1:5555"})
    assert run(remote, tmp_path / "r.h5") == 2  # refused before any connection is tried
    assert "neuron: address: tcp://192.0.2.1:5555 is not a loopback address" in capsys.readouterr().err
    assert not (tmp_path / "r.h5").exists()


def test_curve_keys_let_in_only_key_holders(tmp_path):
    keys = tmp_path / "keys"
    assert main(["keys", str(keys)]) == 0
    assert main(["keys", str(keys)]) == 2  # never overwritten
    with serving(tmp_path, keys=keys) as (endpoint, _):
        local = write_protocol(tmp_path, "local.yaml", LNP, generations=2)
        remote = write_protocol(tmp_path, "remote.yaml", {"kind": "remote", "address": endpoint, "keys": str(keys)},
                                generations=2)
        assert run(local, tmp_path / "local.h5") == 0
        assert run(remote, tmp_path / "remote.h5") == 0
        same_trials(tmp_path / "local.h5", tmp_path / "remote.h5")
        stranger = tmp_path / "stranger"
        assert main(["keys", str(stranger)]) == 0  # a key pair the server does not know
        (stranger / "server.key").write_bytes((keys / "server.key").read_bytes())
        for neuron in ({"kind": "remote", "address": endpoint, "timeout": 1.5},
                       {"kind": "remote", "address": endpoint, "timeout": 1.5, "keys": str(stranger)}):
            refused = write_protocol(tmp_path, "refused.yaml", neuron, generations=2)
            assert run(refused, tmp_path / "refused.h5") == NeuronStopped.exit_code
            assert not (tmp_path / "refused.h5").exists()


def test_dropped_trials_are_shown_again_across_rig_restarts(tmp_path):
    """A rig that drops a fifth of its trials, answers late and restarts every 4th request: every
    trial logged once, with its true response (noise-free cell), the drops counted."""
    clean = {**LNP, "noise": "none"}
    local = write_protocol(tmp_path, "local.yaml", clean)
    assert run(local, tmp_path / "local.h5") == 0
    rig = {"drop": 0.2, "restart_every": 4, "latency": 0.005, "jitter": 0.01, "seed": 1}
    with serving(tmp_path, clean, rig=rig) as (endpoint, server):
        remote = write_protocol(tmp_path, "remote.yaml", {"kind": "remote", "address": endpoint, "retry": 0.3})
        assert run(remote, tmp_path / "remote.h5") == 0
        restarts = server.rig.restarts
    with open_run(tmp_path / "local.h5") as x, open_run(tmp_path / "remote.h5") as y:
        assert y.status == "complete"
        np.testing.assert_array_equal(x.z, y.z)  # the same search: no response was missing or made up
        keys = ["stimulus", "repeat", "phase"]
        trials = y.trials.sort_values(keys, ignore_index=True)
        expected = x.trials.sort_values(keys, ignore_index=True)
        assert not trials.duplicated(keys).any() and trials[keys].equals(expected[keys])
        np.testing.assert_allclose(trials["response"], expected["response"], rtol=1e-12, atol=1e-12)
    assert trials["rig_drops"].sum() > 0 and trials["rig_drops"].max() >= 1
    assert restarts >= 2 and trials["rig_session"].nunique() == restarts + 1
    assert trials.groupby("rig_session")["rig_trial"].apply(lambda ids: ids.is_unique).all()


def test_timeout_leaves_the_run_interrupted_and_resume_finishes_it(tmp_path, capsys):
    local = write_protocol(tmp_path, "local.yaml", LNP)
    assert run(local, tmp_path / "local.h5") == 0
    with serving(tmp_path, rig={"stall_after": 3}) as (endpoint, _):
        remote = write_protocol(tmp_path, "remote.yaml", {"kind": "remote", "address": endpoint, "timeout": 4,
                                                          "retry": 0.3})
        assert run(remote, tmp_path / "remote.h5") == NeuronStopped.exit_code
    assert "no answer to present within 4 s" in capsys.readouterr().err
    with open_run(tmp_path / "remote.h5") as log:
        assert log.status == "interrupted" and len(log.generations) == 3
    with serving(tmp_path, bind=endpoint):  # the rig is back, at the same address
        assert main(["resume", str(tmp_path / "remote.h5"), "-q"]) == 0
    same_trials(tmp_path / "local.h5", tmp_path / "remote.h5")


def test_a_rig_written_from_the_spec_alone(tmp_path):
    """examples/minimal_rig.py imports nothing from closedloop: the format is enough to drive a search."""
    rig = subprocess.Popen([sys.executable, str(ROOT / "examples" / "minimal_rig.py"), "--bind", "tcp://127.0.0.1:*"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = rig.stdout.readline()
        assert "rig ready on" in line, rig.stderr.read()
        neuron = {"kind": "remote", "address": line.split()[-1]}
        protocol = write_protocol(tmp_path, "rig.yaml", neuron, space={"kind": "fourier", "size": 16})
        assert run(protocol, tmp_path / "rig.h5") == 0
    finally:
        rig.kill()
        rig.wait(30)
    with open_run(tmp_path / "rig.h5") as log:
        trials = log.trials
        assert log.status == "complete" and len(trials) == 6 * 6 * 2
        assert sorted(trials["rig_trial"]) == list(range(1, len(trials) + 1))
        assert (trials["rig_session"] == 1).all() and np.isnan(trials["clean"]).all()
        assert trials["rig_time"].is_monotonic_increasing  # logged in the order the rig showed them
        assert log.config["neuron"]["served"]["neuron"]["rig"] == "examples/minimal_rig.py"


def start_server(neuron_file, bind, *options):
    process = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "serve", str(neuron_file), "--bind", bind,
                                *options],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = process.stdout.readline()  # printed once bound
    assert "serving" in line, process.stderr.read()
    return process, line.split(" on ")[1].split()[0]


@pytest.mark.slow
def test_quickstart_through_remote_equals_the_local_run(tmp_path):
    quickstart = ROOT / "protocols" / "quickstart.yaml"
    server, endpoint = start_server(quickstart, "tcp://127.0.0.1:*")
    try:
        protocol = yaml.safe_load(quickstart.read_text())
        protocol["neuron"] = {"kind": "remote", "address": endpoint, "timeout": 300}
        remote = tmp_path / "quickstart-remote.yaml"
        remote.write_text(yaml.safe_dump(protocol))
        for source, out in ((quickstart, "local.h5"), (remote, "remote.h5")):
            assert main(["run", str(source), "--out", str(tmp_path / out), "-q", "--set", "generations=4"]) == 0
    finally:
        server.send_signal(signal.SIGTERM)  # SIGINT may be ignored, inherited from a background job
        assert server.wait(30) == 0
    trials = same_trials(tmp_path / "local.h5", tmp_path / "remote.h5")
    assert (trials["rig_drops"] == 0).all() and trials["rig_trial"].is_unique
    with open_run(tmp_path / "local.h5") as x, open_run(tmp_path / "remote.h5") as y:
        np.testing.assert_array_equal(x.receptive_field, y.receptive_field)
        assert y.config["neuron"]["served"]["neuron"]["kind"] == "spiking"


@pytest.mark.slow
def test_server_killed_and_restarted_mid_run_loses_nothing(tmp_path):
    from test_resume import wait_for_generations

    local = write_protocol(tmp_path, "local.yaml", LNP, generations=16)
    assert run(local, tmp_path / "local.h5") == 0
    neuron = tmp_path / "neuron.yaml"
    neuron.write_text(yaml.safe_dump({**LNP, "seed": PROTOCOL["seed"]}))
    slow = ("--latency", "0.3")  # seconds a generation: the second kill lands with 3 s to spare
    server, endpoint = start_server(neuron, "tcp://127.0.0.1:*", *slow)
    remote = write_protocol(tmp_path, "remote.yaml", {"kind": "remote", "address": endpoint, "retry": 0.2,
                                                      "timeout": 120}, generations=16)
    client = subprocess.Popen([sys.executable, "-m", "closedloop.cli", "run", str(remote), "--out",
                               str(tmp_path / "remote.h5"), "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)
    try:
        for after in (3, 6):
            wait_for_generations(tmp_path / "remote.h5", after, client)
            server.send_signal(signal.SIGKILL)
            server.wait(30)
            server, _ = start_server(neuron, endpoint, *slow)  # the same address: the client finds it again
        assert client.wait(120) == 0, client.stderr.read()
    finally:
        server.send_signal(signal.SIGTERM)  # SIGINT may be ignored, inherited from a background job
        server.wait(30)
        client.kill()
    trials = same_trials(tmp_path / "local.h5", tmp_path / "remote.h5")
    assert not trials.duplicated(["stimulus", "repeat", "phase"]).any()
    assert trials["rig_session"].max() == 3  # one new session after each restart
