"""The rig wire format (docs/rig.md): every request and every reply is one ZeroMQ multipart message.

    frame 0    a UTF-8 JSON object, the header: protocol, version, type, request, ... and
               `arrays`, a list of {"name", "dtype", "shape"} describing the frames that follow
    frame 1..  one array per entry of `arrays`: raw little-endian bytes in C (row-major) order

No pickles, nothing a C, MATLAB or LabVIEW program cannot read and write. Decoding checks
everything (sizes, dtypes, shapes, the protocol version) and raises WireError with a code the
other side can act on; it never trusts a length it has not checked.
"""

from __future__ import annotations

import json
import math

import numpy as np

PROTOCOL = "closedloop-rig"
VERSION = 1
# wire dtype name -> numpy dtype (always little-endian)
DTYPES = {"float64": "<f8", "float32": "<f4", "int64": "<i8", "int32": "<i4", "uint8": "|u1"}
MAX_HEADER = 1 << 20  # bytes of JSON in frame 0
MAX_DIMS = 8


class WireError(Exception):
    """A message that breaks the format. `code` is the error code sent back (docs/rig.md)."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def wire_dtype(array: np.ndarray) -> str:
    for name, dtype in DTYPES.items():
        if np.dtype(dtype).kind == array.dtype.kind and np.dtype(dtype).itemsize == array.dtype.itemsize:
            return name
    raise TypeError(f"no wire dtype for {array.dtype} (one of: {', '.join(DTYPES)})")


def encode(header: dict, arrays: dict[str, np.ndarray] | None = None) -> list:
    """Frames of one message: the header (protocol and version added) and its arrays."""
    specs, frames = [], []
    for name, array in (arrays or {}).items():
        array = np.asarray(array)
        if array.dtype == bool:
            array = array.astype(np.uint8)
        kind = wire_dtype(array)
        array = np.ascontiguousarray(array, dtype=DTYPES[kind])
        specs.append({"name": name, "dtype": kind, "shape": list(array.shape)})
        frames.append(array)
    full = {"protocol": PROTOCOL, "version": VERSION, **header, "arrays": specs}
    return [json.dumps(full, allow_nan=False).encode("utf-8"), *frames]


def decode(frames, max_bytes: int) -> tuple[dict, dict[str, np.ndarray]]:
    """(header, arrays) of a received message; WireError if it is not one of ours."""
    buffers = [frame.buffer if hasattr(frame, "buffer") else memoryview(frame) for frame in frames]
    total = sum(b.nbytes for b in buffers)
    if total > max_bytes:
        raise WireError("oversized", f"message of {total} bytes exceeds the limit of {max_bytes} bytes")
    if not buffers:
        raise WireError("malformed", "empty message")
    if buffers[0].nbytes > MAX_HEADER:
        raise WireError("malformed", f"header of {buffers[0].nbytes} bytes exceeds {MAX_HEADER} bytes")
    try:
        header = json.loads(bytes(buffers[0]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise WireError("malformed", f"header is not UTF-8 JSON ({exc})") from None
    if not isinstance(header, dict):
        raise WireError("malformed", "header is not a JSON object")
    if header.get("protocol") != PROTOCOL:
        raise WireError("malformed", f"header.protocol: expected {PROTOCOL!r}, got {header.get('protocol')!r}")
    version = header.get("version")
    if version != VERSION:
        raise WireError("version", f"speaks rig protocol version {version!r}; this side speaks {VERSION}")
    if not isinstance(header.get("type"), str):
        raise WireError("malformed", "header.type: expected a string")
    request = header.get("request")
    unread = request is None and header["type"] == "error"  # an error about a message whose id was unreadable
    if not unread and (not isinstance(request, int) or isinstance(request, bool) or request < 0):
        raise WireError("malformed", f"header.request: expected a non-negative integer, got {request!r}")
    specs = header.get("arrays", [])
    if not isinstance(specs, list):
        raise WireError("malformed", "header.arrays: expected a list")
    if len(specs) != len(buffers) - 1:
        raise WireError("malformed", f"header.arrays describes {len(specs)} arrays but {len(buffers) - 1} "
                                     f"frames follow the header")
    arrays = {}
    for spec, buffer in zip(specs, buffers[1:]):
        name, dtype = _check_spec(spec, arrays)
        shape = tuple(spec["shape"])
        expected = math.prod(shape) * np.dtype(dtype).itemsize
        if buffer.nbytes != expected:
            raise WireError("malformed", f"array {name!r}: frame of {buffer.nbytes} bytes, but {spec['dtype']} "
                                         f"{list(shape)} takes {expected}")
        arrays[name] = np.frombuffer(buffer, dtype=dtype).reshape(shape)
    return header, arrays


def _check_spec(spec, seen) -> tuple[str, str]:
    if not isinstance(spec, dict):
        raise WireError("malformed", "header.arrays: each entry must be an object {name, dtype, shape}")
    name, dtype, shape = spec.get("name"), spec.get("dtype"), spec.get("shape")
    if not isinstance(name, str) or not name or name in seen:
        raise WireError("malformed", f"header.arrays: name {name!r} missing or repeated")
    if dtype not in DTYPES:
        raise WireError("malformed", f"array {name!r}: dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if (not isinstance(shape, list) or len(shape) > MAX_DIMS
            or not all(isinstance(k, int) and not isinstance(k, bool) and k >= 0 for k in shape)):
        raise WireError("malformed", f"array {name!r}: shape must be a list of at most {MAX_DIMS} "
                                     f"non-negative integers, got {shape!r}")
    return name, DTYPES[dtype]


def error_reply(request, code: str, message: str) -> list:
    return encode({"type": "error", "request": request if isinstance(request, int) else None,
                   "code": code, "message": message})


def is_loopback(address: str) -> bool:
    """Whether a ZeroMQ address stays on this machine: ipc://, inproc://, or tcp:// on 127.0.0.0/8,
    localhost or ::1."""
    transport, sep, rest = address.partition("://")
    if not sep:
        return False
    if transport in ("ipc", "inproc"):
        return True
    if transport != "tcp":
        return False
    if ";" in rest:  # tcp://source;destination: not worth the doubt
        return False
    host = rest[1:rest.find("]")] if rest.startswith("[") else rest.rsplit(":", 1)[0]
    parts = host.split(".")
    return host in ("localhost", "::1") or (len(parts) == 4 and parts[0] == "127" and all(p.isdigit() for p in parts))
