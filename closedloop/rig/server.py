"""`closedloop serve`: any closedloop neuron behind a ZeroMQ socket, speaking docs/rig.md.

One ROUTER socket, one request at a time. A `hello` opens a session: the neuron goes back to
its initial state, so every run that connects starts where a local run would. Later requests
name the session; one that names another (the server restarted, or another client took over)
gets the error `no_session`, and the client opens a new session and restores the neuron's
state. Within a session request ids only grow: a repeated id gets the reply already sent (the
client re-sends a request it got no answer to, which must never present its stimuli twice),
an older id is refused.
"""

from __future__ import annotations

import secrets
import threading
import time

import numpy as np

from closedloop.rig import wire
from closedloop.rig.simulator import Rig

DEFAULT_MAX_BYTES = 1 << 30
MAX_TRIALS = 10_000_000  # presentations in one request


class Server:
    def __init__(self, neuron, description: dict, bind: str = "tcp://127.0.0.1:5555", keys=None,
                 max_bytes: int = DEFAULT_MAX_BYTES, rig: Rig | None = None, context=None):
        self.neuron, self.description = neuron, description
        self.address, self.keys, self.max_bytes = bind, keys, int(max_bytes)
        self.rig = rig or Rig()
        self.context = context
        self.initial = {name: np.array(value, copy=True) for name, value in neuron.get_state().items()}
        self.session: str | None = None
        self.last_request = -1
        self.last_reply: list | None = None
        self.hung = False
        self.socket = self.authenticator = None
        self.endpoint = None

    def bind(self) -> str:
        """Bind the socket; returns the endpoint bound (with the port chosen for `:*`)."""
        import zmq

        from closedloop.errors import ClosedLoopError
        from closedloop.rig.keys import secure_server

        port = self.address.rpartition(":")[2] if self.address.startswith("tcp://") else "*"
        if port != "*" and not (port.isdigit() and 1 <= int(port) <= 65535):
            raise ClosedLoopError(f"--bind {self.address}: the port must be 1 to 65535, or * for a free one")
        if not wire.is_loopback(self.address) and self.keys is None:
            raise ClosedLoopError(f"--bind {self.address}: not a loopback address; serving to other machines "
                                  f"needs CurveZMQ keys (--keys DIR, made by: closedloop keys DIR)")
        self.own_context = self.context is None  # its own, so that its authenticator governs only it
        self.context = self.context or zmq.Context()
        self.socket = self.context.socket(zmq.ROUTER)
        self.socket.linger = 0
        # ZeroMQ drops a connection that sends a frame this large before we see it; anything up
        # to it is received whole and answered with an `oversized` error
        self.socket.setsockopt(zmq.MAXMSGSIZE, 2 * self.max_bytes)
        try:
            if self.keys is not None:
                self.authenticator = secure_server(self.socket, self.keys)
            self.socket.bind(self.address)
        except zmq.ZMQError as exc:
            self.close()
            raise ClosedLoopError(f"--bind {self.address}: cannot bind ({exc})") from None
        except ClosedLoopError:
            self.close()
            raise
        self.endpoint = self.socket.getsockopt_string(zmq.LAST_ENDPOINT)
        return self.endpoint

    def serve(self, stop: threading.Event | None = None, poll_ms: int = 100) -> None:
        """Answer requests until `stop` is set (or forever)."""
        while stop is None or not stop.is_set():
            if not self.socket.poll(poll_ms):
                continue
            frames = self.socket.recv_multipart(copy=False)
            envelope, body = _split_envelope(frames)
            reply = self.handle(body)
            if reply is not None:
                self.socket.send_multipart([*envelope, *reply], copy=False)

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close(linger=0)
        if self.authenticator is not None:
            self.authenticator.stop()
        if self.socket is not None and self.own_context:
            self.context.destroy(linger=0)
        self.socket = self.authenticator = None

    # --- one message in, one message (or, for a failing simulated rig, none) out ---

    def handle(self, body) -> list | None:
        if self.hung:
            return None
        request = None
        try:
            header, arrays = wire.decode(body, self.max_bytes)
            request, kind = header["request"], header["type"]
            if kind == "hello":
                return self._hello(request)
            if header.get("session") != self.session or self.session is None:
                raise wire.WireError("no_session", f"session {header.get('session')!r} is not open here "
                                                   f"(the server restarted or another client opened one): say hello")
            if request == self.last_request:
                return self.last_reply
            if request < self.last_request:
                raise wire.WireError("stale", f"request {request} is older than request {self.last_request}")
            if kind == "present":
                reply = self._present(header, arrays)
            elif kind == "set_state":
                reply = self._set_state(arrays)
            else:
                raise wire.WireError("unknown_type", f"unknown request type {kind!r} (hello, present, set_state)")
            if reply is None:
                return None
            reply = wire.encode({"type": kind, "request": request, "session": self.session, **reply[0]}, reply[1])
            self.last_request, self.last_reply = request, reply
            return reply
        except wire.WireError as exc:
            return wire.error_reply(request, exc.code, str(exc))
        except Exception as exc:  # the neuron refused the stimuli: tell the client, keep serving
            message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            return wire.error_reply(request, "neuron", f"{type(exc).__name__}: {message}")

    def _hello(self, request: int) -> list:
        self.neuron.set_state(self.initial)
        self.rig.set_state({"rig_draws": np.array([0.0])})
        self.session = secrets.token_hex(8)
        self.last_request, self.last_reply = request, None
        neuron = self.neuron
        value_range, claim = neuron.value_range, neuron.claim
        header = {
            "type": "hello", "request": request, "session": self.session, "neuron": self.description,
            "stimulus_shape": list(neuron.stimulus_shape),
            "value_range": None if value_range is None else [float(v) for v in value_range],
            "modality": neuron.modality, "sample_rate": neuron.sample_rate,
            "response_unit": neuron.response_unit, "state_columns": list(neuron.state_columns),
            "claim": None if claim is None else list(claim), "has_gradient": False, "max_bytes": self.max_bytes,
        }
        arrays = {f"state/{k}": v for k, v in self._state().items()}
        arrays.update({f"truth/{k}": np.asarray(v, dtype=np.float64) for k, v in neuron.ground_truth().items()})
        reply = wire.encode(header, arrays)
        self.last_reply = reply
        return reply

    def _state(self) -> dict[str, np.ndarray]:
        state = {**self.neuron.get_state(), **self.rig.get_state()}
        return {name: np.asarray(value, dtype=np.float64) for name, value in state.items()}

    def _set_state(self, arrays) -> tuple[dict, dict]:
        given = {name.removeprefix("state/"): value for name, value in arrays.items() if name.startswith("state/")}
        expected = self._state()
        if set(given) != set(expected):
            raise wire.WireError("bad_request", f"set_state: expected arrays state/{', state/'.join(expected)}")
        for name, value in given.items():
            if value.size != expected[name].size:
                raise wire.WireError("bad_request", f"set_state: state/{name} has {value.size} values, "
                                                    f"expected {expected[name].size}")
        shaped = {name: np.array(value, dtype=np.float64).reshape(expected[name].shape) for name, value in given.items()}
        self.rig.set_state(shaped)
        self.neuron.set_state({k: v for k, v in shaped.items() if k not in self.rig.get_state()})
        return {}, {}

    def _present(self, header: dict, arrays) -> tuple[dict, dict] | None:
        repeats, stimuli = header.get("repeats"), arrays.get("stimuli")
        if not isinstance(repeats, int) or isinstance(repeats, bool) or repeats < 1:
            raise wire.WireError("bad_request", f"present: repeats must be a positive integer, got {repeats!r}")
        shape = tuple(self.neuron.stimulus_shape)
        if stimuli is None or stimuli.dtype.kind != "f" or stimuli.ndim != len(shape) + 1 or stimuli.shape[1:] != shape:
            got = "none" if stimuli is None else f"{stimuli.dtype} {list(stimuli.shape)}"
            raise wire.WireError("bad_request", f"present: expected array 'stimuli' of float32/float64 "
                                                f"[n, {', '.join(map(str, shape))}], got {got}")
        n = len(stimuli)
        if n < 1 or n * repeats > MAX_TRIALS:
            raise wire.WireError("bad_request", f"present: {n} stimuli x {repeats} repeats; expected 1 to "
                                                f"{MAX_TRIALS} presentations")
        if not np.isfinite(stimuli).all():
            raise wire.WireError("bad_request", "present: stimuli hold NaN or Inf")
        failure = self.rig.next_request()
        if failure == "stall":
            self.hung = True
            return None
        if failure == "restart":  # as if the process died with this request: nothing answers it
            self.session, self.last_request, self.last_reply = None, -1, None
            self.neuron.set_state(self.initial)
            return None
        if not stimuli.flags.writeable:  # a neuron may hand it to torch, which wants to own it
            stimuli = stimuli.copy()
        started, cpu = time.perf_counter(), time.process_time()
        trials = self.neuron.present(stimuli, repeats)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        out = self._trial_arrays(trials, n, repeats)
        out.update({f"state/{k}": v for k, v in self._state().items()})
        self.rig.wait()
        return {"repeats": repeats, "elapsed": elapsed, "cpu": cpu}, out

    def _trial_arrays(self, trials, n: int, repeats: int) -> dict[str, np.ndarray]:
        shape = (n, repeats)
        t_start = np.broadcast_to(np.asarray(trials.t_start, dtype=np.float64), shape)
        rig_trial, rig_time = self.rig.stamp(t_start)
        valid = self.rig.valid(shape)
        out = {
            "responses": np.where(valid == 1, trials.responses, np.nan), "valid": valid, "t_start": t_start,
            "clean": trials.clean, "rig_trial": rig_trial, "rig_time": rig_time,
        }
        for name in self.neuron.state_columns:
            out[f"column/{name}"] = np.broadcast_to(np.asarray(trials.state[name], dtype=np.float64), shape)
        if trials.spike_times is not None:
            spikes = [np.asarray(s, dtype=np.float64) if ok else np.zeros(0)
                      for s, ok in zip(trials.spike_times, valid.ravel())]
            out["spike_count"] = np.array([len(s) for s in spikes], dtype=np.int64).reshape(shape)
            out["spike_times"] = np.concatenate(spikes) if spikes else np.zeros(0)
        return out


def _split_envelope(frames) -> tuple[list, list]:
    """ROUTER frames -> (routing envelope up to the empty delimiter, message body)."""
    for k, frame in enumerate(frames):
        if k and len(frame.buffer) == 0:
            return list(frames[: k + 1]), list(frames[k + 1:])
    return list(frames[:1]), list(frames[1:])


def load_neuron(path):
    """The neuron a YAML file describes: a neuron section (`kind: spiking ...`, with an optional
    `seed`), or a whole protocol, whose `neuron:` section is served with the protocol's seed.
    Either way the neuron draws the random streams it would draw in a protocol of that seed, so
    a run through `kind: remote` repeats the local run. Returns (neuron, description)."""
    from pathlib import Path
    from types import SimpleNamespace

    import yaml

    from closedloop import protocol as protocol_module
    from closedloop.errors import ProtocolError

    path = Path(path)
    if not path.is_file():
        raise ProtocolError(f"{path}: no such neuron file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise ProtocolError(f"{path}: cannot read YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise ProtocolError(f"{path}: expected a mapping (a neuron section or a protocol)")
    if "neuron" in data:
        section, seed = data["neuron"], data.get("seed", 0)
    else:
        section = {k: v for k, v in data.items() if k != "seed"}
        seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ProtocolError(f"{path}: seed: expected a non-negative integer, got {seed!r}")
    if isinstance(section, dict) and section.get("kind") == "remote":
        raise ProtocolError(f"{path}: kind: a remote neuron cannot be served again (serve the neuron itself)")
    spec = protocol_module.Protocol(str(path), "", "serve", None, SimpleNamespace(seed=seed),
                                    {"neuron": protocol_module._section(str(path), "neuron", section)})
    neuron = spec.build("neuron")
    return neuron, {**neuron.describe(), "seed": seed}
