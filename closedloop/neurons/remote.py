"""A neuron in another process or on another machine: the Neuron contract over ZeroMQ.

    neuron: {kind: remote, address: tcp://127.0.0.1:5555}

drives whatever answers docs/rig.md there: `closedloop serve NEURON.yaml`, or a rig written in
MATLAB, LabVIEW or C. The handshake tells the protocol what the neuron takes (stimulus shape,
value range, modality, sample rate) and gives (response unit, state columns); no gradient goes
over the wire.

Nothing is lost on the way. `present` returns only when every trial has a response: a trial the
rig drops is shown again (its `rig_drops` column counts how often it was missing), never scored.
Each trial logs the rig's own trial number and onset time (`rig_trial`, `rig_time`) and the
session it came from (`rig_session`: 1, then one more after each time the server lost the
session, e.g. restarted). A request without an answer is sent again on a fresh socket, the
server answering a repeat from its cache, so nothing is presented twice; after a restart the
client opens a new session and restores the neuron's state. When no answer comes within
`timeout`, the run stops as interrupted, and `closedloop resume` continues it.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.errors import ClosedLoopError, NeuronStopped
from closedloop.neurons.base import Neuron, Trials
from closedloop.registry import register
from closedloop.rig import wire

RIG_COLUMNS = ("rig_session", "rig_trial", "rig_time", "rig_drops")
MAX_RETRY_WAIT = 30.0  # s: the longest wait before a request goes again
MAX_REPLY = 1 << 31  # bytes: a larger reply frame drops the connection
REOPENS = 5  # sessions opened for one request before giving up


class RemoteSettings(Settings):
    address: str = Field(..., description="the server, e.g. tcp://127.0.0.1:5555 (closedloop serve prints it)")
    timeout: float = Field(600.0, gt=0, le=86_400, description="s to wait for an answer, sending again meanwhile, before the "
                                                    "run stops as interrupted (resumable); longer than a batch takes "
                                                    "at the rig (400 trials of 300 ms: 2 minutes)")
    connect_timeout: float = Field(30.0, gt=0, le=86_400, description="s to wait for the first answer (the hello), "
                                   "when shorter than timeout, before giving up: nothing is logged until then")
    retry: float = Field(1.0, gt=0, le=3600, description="s before an unanswered request is sent again (doubling up to 30 s)")
    keys: str | None = Field(None, description="folder with server.key and client.key_secret (CurveZMQ, from "
                                               "`closedloop keys`); required unless the address is loopback")
    max_drops: int = Field(10, ge=1, le=1_000_000, description="a trial the rig drops this many times in a row stops the run")
    dtype: Literal["float64", "float32"] = Field("float64", description="stimuli on the wire; float32 halves the "
                                                 "bytes and loses nothing for network units (kind dnn), which "
                                                 "compute in float32")


class Refused(Exception):
    """The server answered a request with an error reply."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


@register("neuron", "remote")
class RemoteNeuron(Neuron):
    Config = RemoteSettings
    has_gradient = False

    def __init__(self, config: RemoteSettings, seed: int):
        super().__init__(config, seed)
        if not wire.is_loopback(config.address) and config.keys is None:
            raise ValueError(f"address: {config.address} is not a loopback address; give keys: DIR (CurveZMQ, "
                             f"made by `closedloop keys DIR`), or reach it through an SSH tunnel")
        import zmq

        self.context = zmq.Context.instance()
        self.socket = None
        self.request = 0
        self.session: str | None = None
        self.sessions = 0
        self.served: dict | None = None
        self.max_bytes = 1 << 30
        self.state: dict[str, np.ndarray] = {}
        self.served_seconds = self.served_cpu = float("nan")  # the server's time in the last present
        self._open()

    # --- the Neuron contract ---

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        stimuli = np.asarray(stimuli, dtype=self.config.dtype)
        n, size = len(stimuli), len(stimuli) * repeats
        out = {name: np.full(size, np.nan) for name in ("responses", "t_start", "clean", "rig_trial", "rig_time",
                                                        *self.served_columns)}
        spikes: list | None = [None] * size
        drops, sessions = np.zeros(size), np.zeros(size)
        target, shown, shown_repeats = np.arange(size), stimuli, repeats
        for _ in range(self.config.max_drops + 1):
            reply = self._present_once(shown, shown_repeats)
            ok = reply["valid"]
            for name in out:
                out[name][target[ok]] = reply[name][ok]
            if reply["spikes"] is None:
                spikes = None
            elif spikes is not None:
                for k, times in zip(target[ok], (s for s, keep in zip(reply["spikes"], ok) if keep)):
                    spikes[k] = times
            sessions[target[ok]] = self.sessions
            drops[target[~ok]] += 1
            target = target[~ok]
            if not target.size:
                break
            shown, shown_repeats = stimuli[target // repeats], 1  # the dropped trials, once each
        else:
            raise NeuronStopped(f"{self.config.address}: {target.size} trials dropped more than "
                              f"{self.config.max_drops} times in a row (neuron.max_drops)")
        shape = (n, repeats)
        state = {name: out[name].reshape(shape) for name in self.served_columns}
        state.update(rig_session=sessions.reshape(shape), rig_trial=out["rig_trial"].reshape(shape),
                     rig_time=out["rig_time"].reshape(shape), rig_drops=drops.reshape(shape))
        return Trials(responses=out["responses"].reshape(shape), t_start=out["t_start"].reshape(shape),
                      clean=out["clean"].reshape(shape), state=state, spike_times=spikes)

    def get_state(self) -> dict[str, np.ndarray]:
        return {name: value.copy() for name, value in self.state.items()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        state = {name: np.asarray(value, dtype=np.float64) for name, value in state.items()}
        if set(state) != set(self.state):
            raise ValueError(f"state: expected {sorted(self.state)}, got {sorted(state)}")
        if state:
            self._request("set_state", {f"state/{k}": v for k, v in state.items()})
        self.state = state

    def ground_truth(self) -> dict[str, np.ndarray]:
        return dict(self.truth)

    def describe(self):
        return {**super().describe(), "served": self.served}

    def close(self) -> None:
        if getattr(self, "socket", None) is not None:
            self.socket.close(linger=0)
            self.socket = None

    def __del__(self):
        self.close()

    # --- sessions ---

    def _open(self) -> None:
        """Say hello: learn (or, after a restart, check) what is served, and restore its state."""
        try:
            first = self.served is None and self.config.connect_timeout < self.config.timeout
            header, arrays = self._call("hello", timeout=self.config.connect_timeout if first else None)
        except Refused as exc:
            raise ClosedLoopError(f"neuron: {self.config.address} refused the handshake: [{exc.code}] {exc}") from None
        served = _description(header, self.config.address)
        if self.served is not None and {**served, "max_bytes": 0} != {**self.served, "max_bytes": 0}:
            raise NeuronStopped(f"{self.config.address}: the server now serves another neuron than this run's")
        first, self.served, self.session = self.served is None, served, header["session"]
        self.sessions += 1
        if first:
            self._learn(served, arrays)
        elif self.state:
            try:
                self._call("set_state", {f"state/{k}": v for k, v in self.state.items()})
            except Refused as exc:
                raise NeuronStopped(f"{self.config.address}: cannot restore the neuron's state after the server "
                                  f"lost the session: [{exc.code}] {exc}") from None

    def _learn(self, served: dict, arrays) -> None:
        self.stimulus_shape = tuple(served["stimulus_shape"])
        self.value_range = None if served["value_range"] is None else tuple(served["value_range"])
        self.modality, self.sample_rate = served["modality"], served["sample_rate"]
        self.response_unit = served["response_unit"]
        self.served_columns = tuple(served["state_columns"])
        clash = set(self.served_columns) & set(RIG_COLUMNS)
        if clash:
            raise NeuronStopped(f"{self.config.address}: the neuron's state columns {sorted(clash)} clash with the "
                              f"rig's own columns")
        self.state_columns = (*self.served_columns, *RIG_COLUMNS)
        self.claim = None if served["claim"] is None else tuple(served["claim"])
        self.max_bytes = served["max_bytes"]
        self.state = {k.removeprefix("state/"): np.array(v, dtype=np.float64) for k, v in arrays.items()
                      if k.startswith("state/")}
        self.truth = {k.removeprefix("truth/"): np.array(v) for k, v in arrays.items() if k.startswith("truth/")}
        self.receptive_field = self.truth.get("receptive_field")

    def _request(self, kind: str, arrays=None, **fields):
        """One request, opening a new session and sending it again if the server lost ours."""
        for _ in range(REOPENS):
            try:
                return self._call(kind, arrays, **fields)
            except Refused as exc:
                if exc.code != "no_session":
                    raise NeuronStopped(f"{self.config.address}: the server refused {kind}: [{exc.code}] {exc}") from None
            self._open()
        raise NeuronStopped(f"{self.config.address}: the server lost the session {REOPENS} times for one request")

    def _present_once(self, stimuli: np.ndarray, repeats: int) -> dict:
        header, arrays = self._request("present", {"stimuli": stimuli}, repeats=repeats)
        self.served_seconds, self.served_cpu = (float(header[k]) if isinstance(header.get(k), (int, float))
                                                else float("nan") for k in ("elapsed", "cpu"))
        return self._trials(arrays, (len(stimuli), repeats))

    # --- one request and its answer ---

    def _call(self, kind: str, arrays=None, timeout: float | None = None, **fields):
        """Send until answered (a fresh socket each time, the Lazy Pirate pattern) or timed out."""
        import zmq

        timeout, field = (self.config.timeout, "timeout") if timeout is None else (timeout, "connect_timeout")
        self.request += 1
        header = {"type": kind, "request": self.request, **fields}
        if kind != "hello":
            header["session"] = self.session
        frames = wire.encode(header, arrays)
        size = sum(f.nbytes if isinstance(f, np.ndarray) else len(f) for f in frames)
        if kind != "hello" and size > self.max_bytes:
            raise ClosedLoopError(f"{self.config.address}: a {kind} request of {size} bytes exceeds the server's "
                                  f"limit of {self.max_bytes} (closedloop serve --max-message); present fewer stimuli")
        deadline, wait = time.monotonic() + timeout, self.config.retry
        while True:
            socket = self._connect()
            socket.sndtimeo = int(1000 * max(0.0, min(wait, deadline - time.monotonic())))
            try:
                socket.send_multipart(frames, copy=False)
                sent = True
            except zmq.Again:  # no connection to queue it on (a REQ socket then blocks): as unanswered
                sent = False
            if sent and socket.poll(int(1000 * max(0.0, min(wait, deadline - time.monotonic())))):
                return self._answer(socket.recv_multipart(copy=False), kind)
            self.close()  # a REQ socket without an answer cannot send again: the request goes on a new one
            if time.monotonic() >= deadline:
                raise NeuronStopped(f"{self.config.address}: no answer to {kind} within {timeout:g} s "
                                  f"(neuron.{field}); is the server running?")
            wait = min(2 * wait, MAX_RETRY_WAIT)

    def _connect(self):
        if self.socket is None:
            import zmq

            socket = self.context.socket(zmq.REQ)
            socket.linger = 0
            socket.setsockopt(zmq.MAXMSGSIZE, MAX_REPLY)
            if self.config.keys is not None:
                from closedloop.rig.keys import secure_client

                secure_client(socket, self.config.keys)
            socket.connect(self.config.address)
            self.socket = socket
        return self.socket

    def _answer(self, frames, kind: str):
        try:
            header, arrays = wire.decode(frames, MAX_REPLY)
        except wire.WireError as exc:
            if exc.code == "version":
                raise ClosedLoopError(f"{self.config.address}: the server {exc}") from None
            raise NeuronStopped(f"{self.config.address}: unreadable answer to {kind}: {exc}") from None
        if header["type"] == "error":
            if header.get("code") == "version":
                raise ClosedLoopError(f"{self.config.address}: the server refused this client: {header.get('message')}")
            raise Refused(str(header.get("code")), str(header.get("message")))
        if header["type"] != kind or header["request"] != self.request:
            raise NeuronStopped(f"{self.config.address}: answered {header['type']} {header['request']} to "
                              f"{kind} {self.request}")
        return header, arrays

    def _trials(self, arrays, shape) -> dict:
        """Flat per-trial arrays of a present reply, every one checked against the request."""
        where = self.config.address

        def take(name, default=None, dtype_kind="f"):
            value = arrays.get(name)
            if value is None:
                if default is None:
                    raise NeuronStopped(f"{where}: the answer to present lacks array {name!r}")
                return np.broadcast_to(default, shape).ravel()
            if value.shape != shape or value.dtype.kind not in dtype_kind:
                raise NeuronStopped(f"{where}: array {name!r} is {value.dtype} {list(value.shape)}, expected "
                                  f"{list(shape)} of kind {dtype_kind!r}")
            return value.ravel()

        out = {"responses": take("responses"), "rig_trial": take("rig_trial", dtype_kind="iu"),
               "rig_time": take("rig_time")}
        out["valid"] = take("valid", np.uint8(1), "u") == 1
        out["t_start"] = take("t_start", out["rig_time"].reshape(shape))
        out["clean"] = take("clean", np.nan)
        for name in self.served_columns:
            out[name] = take(f"column/{name}")
        out["spikes"] = None
        if "spike_count" in arrays:
            counts, times = take("spike_count", dtype_kind="iu"), arrays.get("spike_times")
            if times is None or times.ndim != 1 or counts.min(initial=0) < 0 or counts.sum() != len(times):
                raise NeuronStopped(f"{where}: spike_times do not match spike_count")
            out["spikes"] = np.split(np.asarray(times, dtype=np.float64), np.cumsum(counts)[:-1])
        state = {k.removeprefix("state/"): np.array(v, dtype=np.float64) for k, v in arrays.items()
                 if k.startswith("state/")}
        if set(state) != set(self.state) or any(v.size != self.state[k].size for k, v in state.items()):
            raise NeuronStopped(f"{where}: the answer's state arrays differ from the handshake's")
        self.state = {k: v.reshape(self.state[k].shape) for k, v in state.items()}
        return out


def _description(header: dict, where: str) -> dict:
    """What the handshake says about the neuron, checked field by field."""
    def bad(field, value):
        return NeuronStopped(f"{where}: handshake field {field!r} is unusable: {value!r}")

    shape = header.get("stimulus_shape")
    if not isinstance(shape, list) or not shape or not all(isinstance(k, int) and k > 0 for k in shape):
        raise bad("stimulus_shape", shape)
    value_range = header.get("value_range")
    if value_range is not None and not (isinstance(value_range, list) and len(value_range) == 2 and
                                        all(isinstance(v, (int, float)) for v in value_range)):
        raise bad("value_range", value_range)
    if header.get("modality") not in ("image", "audio"):
        raise bad("modality", header.get("modality"))
    rate = header.get("sample_rate")
    if rate is not None and not (isinstance(rate, int) and rate > 0):
        raise bad("sample_rate", rate)
    columns = header.get("state_columns", [])
    if not isinstance(columns, list) or not all(isinstance(c, str) and c for c in columns):
        raise bad("state_columns", columns)
    claim = header.get("claim")
    if claim is not None and not (isinstance(claim, list) and len(claim) == 2):
        raise bad("claim", claim)
    max_bytes = header.get("max_bytes", 1 << 30)
    if not isinstance(max_bytes, int) or max_bytes < 1:
        raise bad("max_bytes", max_bytes)
    if not isinstance(header.get("session"), str):
        raise bad("session", header.get("session"))
    return {"neuron": header.get("neuron"), "stimulus_shape": shape, "value_range": value_range,
            "modality": header["modality"], "sample_rate": rate, "response_unit": str(header.get("response_unit", "")),
            "state_columns": columns, "claim": claim, "max_bytes": max_bytes}
