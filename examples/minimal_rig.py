"""A rig written from docs/rig.md alone: pyzmq, numpy and json, nothing from closedloop.

A template for a rig in any language. Its "neuron" is a stand-in for the display and the
acquisition system: a 16x16 receptive field (an oriented grating patch) and Poisson spike counts.

    python examples/minimal_rig.py [--bind tcp://127.0.0.1:5555] [--seed 0]

then drive it with `neuron: {kind: remote, address: tcp://127.0.0.1:5555}`.
"""

import argparse
import json
import secrets
import time

import numpy as np
import zmq

SIZE = 16


def receptive_field() -> np.ndarray:
    y, x = np.mgrid[0:SIZE, 0:SIZE] - (SIZE - 1) / 2
    field = np.exp(-(x**2 + y**2) / 18) * np.cos(2 * np.pi * 0.15 * (x * np.cos(0.5) + y * np.sin(0.5)))
    return field / np.linalg.norm(field)


def message(header: dict, arrays: dict) -> list:
    """Header frame + one frame per array (little-endian, row-major), as the format says."""
    names = {"<f8": "float64", "<i8": "int64"}
    arrays = {name: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for name, a in arrays.items()}
    header = {"protocol": "closedloop-rig", "version": 1, **header,
              "arrays": [{"name": n, "dtype": names[a.dtype.str], "shape": list(a.shape)} for n, a in arrays.items()]}
    return [json.dumps(header).encode()] + [a.tobytes() for a in arrays.values()]


def error(request, code: str, text: str) -> list:
    return message({"type": "error", "request": request, "code": code, "message": text}, {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bind", default="tcp://127.0.0.1:5555")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng, field = np.random.default_rng(args.seed), receptive_field()
    socket = zmq.Context().socket(zmq.REP)
    socket.bind(args.bind)
    print("rig ready on", socket.getsockopt_string(zmq.LAST_ENDPOINT), flush=True)
    session, trial, booted, clock = None, 0, time.monotonic(), 0.0
    last_request, last_reply = -1, None
    while True:
        frames = socket.recv_multipart()
        try:
            header = json.loads(frames[0])
            request = header["request"]
        except (ValueError, KeyError, TypeError):
            socket.send_multipart(error(None, "malformed", "header is not JSON with a request id"))
            continue
        if header.get("protocol") != "closedloop-rig" or header.get("version") != 1:
            socket.send_multipart(error(request, "version", "this rig speaks closedloop-rig version 1"))
        elif header.get("type") == "hello":
            session, last_request, last_reply = secrets.token_hex(8), request, None
            socket.send_multipart(message({
                "type": "hello", "request": request, "session": session, "stimulus_shape": [SIZE, SIZE],
                "value_range": None, "modality": "image", "sample_rate": None, "response_unit": "spikes",
                "state_columns": [], "claim": None, "has_gradient": False, "max_bytes": 1 << 26,
                "neuron": {"rig": "examples/minimal_rig.py", "seed": args.seed}}, {}))
        elif header.get("session") != session:
            socket.send_multipart(error(request, "no_session", "say hello first"))
        elif request == last_request and last_reply is not None:  # sent again: the same answer
            socket.send_multipart(last_reply)
        elif request < last_request:
            socket.send_multipart(error(request, "stale", "an old request"))
        elif header.get("type") == "present":
            spec = header["arrays"][0]
            if len(frames) != 2 or spec["dtype"] not in ("float64", "float32") or spec["shape"][1:] != [SIZE, SIZE]:
                socket.send_multipart(error(request, "bad_request", "expected stimuli [n, 16, 16]"))
                continue
            dtype = "<f8" if spec["dtype"] == "float64" else "<f4"
            stimuli = np.frombuffer(frames[1], dtype=dtype).reshape(spec["shape"])
            n, repeats = len(stimuli), int(header["repeats"])
            flat = stimuli.reshape(n, -1)
            cosine = flat @ field.ravel() / np.maximum(np.linalg.norm(flat, axis=1), 1e-12)
            rate = 10 * np.maximum(cosine, 0)  # the "neuron": mean spikes per presentation
            order = rng.permutation(n * repeats).reshape(n, repeats)  # the slot each trial is shown in
            rig_trial = trial + 1 + order
            trial += n * repeats
            clock = max(clock, time.monotonic() - booted)
            rig_time = clock + 0.3 * order  # one presentation every 300 ms
            clock += 0.3 * n * repeats
            responses = rng.poisson(np.repeat(rate[:, None], repeats, axis=1)).astype(np.float64)
            last_request, last_reply = request, message(
                {"type": "present", "request": request, "session": session, "repeats": repeats},
                {"responses": responses, "rig_trial": rig_trial.astype(np.int64), "rig_time": rig_time})
            socket.send_multipart(last_reply)
        else:
            socket.send_multipart(error(request, "unknown_type", "this rig knows hello and present"))


if __name__ == "__main__":
    main()
