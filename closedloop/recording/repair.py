"""Make a log that lost its writer openable by every HDF5 tool again.

A writer in SWMR mode marks the file's superblock "open for (SWMR) write" and clears the mark
when it closes. A writer that was killed leaves the mark, and plain h5py, HDFView or pynwb then
refuse the file ("use h5clear"). closedloop's own reader copes; for the others, the mark is
cleared here, as `h5clear -s` would, once no closedloop process holds the log's lock (the lock
dies with its writer, so a held lock means a live writer, whose mark must stay).
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

from closedloop.errors import ClosedLoopError

SIGNATURE = b"\x89HDF\r\n\x1a\n"
_MASK = 0xFFFFFFFF


def _rot(x: int, k: int) -> int:
    return ((x << k) | (x >> (32 - k))) & _MASK


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 hash (hashlittle), HDF5's metadata checksum."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _MASK
    k = 0
    while length - k > 12:
        x, y, z = struct.unpack_from("<3I", data, k)
        a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
        a = (a - c) & _MASK; a ^= _rot(c, 4); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 6); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 8); b = (b + a) & _MASK  # noqa: E702
        a = (a - c) & _MASK; a ^= _rot(c, 16); c = (c + b) & _MASK  # noqa: E702
        b = (b - a) & _MASK; b ^= _rot(a, 19); a = (a + c) & _MASK  # noqa: E702
        c = (c - b) & _MASK; c ^= _rot(b, 4); b = (b + a) & _MASK  # noqa: E702
        k += 12
    if length == k:
        return c
    x, y, z = struct.unpack("<3I", data[k:].ljust(12, b"\0"))
    a, b, c = (a + x) & _MASK, (b + y) & _MASK, (c + z) & _MASK
    c ^= b; c = (c - _rot(b, 14)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 11)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 25)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 16)) & _MASK  # noqa: E702
    a ^= c; a = (a - _rot(c, 4)) & _MASK  # noqa: E702
    b ^= a; b = (b - _rot(a, 14)) & _MASK  # noqa: E702
    c ^= b; c = (c - _rot(b, 24)) & _MASK  # noqa: E702
    return c


def _superblock(handle) -> tuple[int, int] | None:
    """(offset, size of offsets) of a version 2 or 3 superblock (the only ones SWMR writes)."""
    size = os.fstat(handle.fileno()).st_size
    offset = 0
    while offset + 48 <= size:  # the superblock sits at 0, 512, 1024, 2048, ...
        handle.seek(offset)
        head = handle.read(12)
        if head[:8] == SIGNATURE:
            return (offset, head[9]) if head[8] in (2, 3) else None
        offset = 512 if offset == 0 else offset * 2
    return None


def write_flags(path) -> int:
    """The superblock's file-consistency flags (0 when the file was closed cleanly)."""
    with open(path, "rb") as handle:
        found = _superblock(handle)
        if found is None:
            return 0
        handle.seek(found[0] + 11)
        return handle.read(1)[0]


def clear_write_flags(path) -> bool:
    """Clear the "open for write" marks a killed writer left; True if there were any. The caller
    makes sure no writer is alive (holds the log's lock)."""
    with open(path, "r+b") as handle:
        found = _superblock(handle)
        if found is None:
            return False
        offset, width = found
        length = 12 + 4 * width
        handle.seek(offset)
        block = bytearray(handle.read(length + 4))
        if len(block) < length + 4 or block[11] == 0:
            return False
        if struct.unpack_from("<I", block, length)[0] != lookup3(bytes(block[:length])):
            raise ClosedLoopError(f"{path}: damaged run log: the superblock's checksum does not match")
        block[11] = 0
        struct.pack_into("<I", block, length, lookup3(bytes(block[:length])))
        handle.seek(offset)
        handle.write(block)
        handle.flush()
        os.fsync(handle.fileno())
    return True


def release(path) -> bool:
    """Clear a dead writer's marks if no closedloop process writes the log (and the log can be
    written at all); True if cleared. Never raises for a log that cannot be written."""
    from closedloop.recording.writer import holding

    from closedloop.recording.reader import open_run

    path = Path(path)
    try:
        if not path.is_file() or not write_flags(path):
            return False
        with open_run(path):  # a closedloop log, nobody else's file
            pass
        with holding(path):
            return clear_write_flags(path)
    except (OSError, ClosedLoopError):
        return False
