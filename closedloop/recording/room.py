"""Room for the next write of a log, made before HDF5 writes a byte of it.

HDF5 is not transactional: a write that fails half-way (a full disk, a file-size limit) can
leave a file whose metadata points past its end, and h5py reports some chunk-write failures only
as ignored warnings. So a writer asks for room first: within the process's file-size limit
(RLIMIT_FSIZE, `ulimit -f`) and on the disk, where the room is reserved for the file with
fallocate (FALLOC_FL_KEEP_SIZE) so that nothing else on the machine can take it meanwhile.
Without room the write is refused before it starts, and the log keeps every unit written before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import resource

from closedloop.errors import RunFailed

_KEEP_SIZE = 0x01  # FALLOC_FL_KEEP_SIZE: allocate blocks past the end without changing the size


def _fallocate():
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.fallocate
    except (OSError, AttributeError):  # not Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    function.restype = ctypes.c_int
    return function


_FALLOCATE = _fallocate()


def size_limit() -> int | None:
    soft = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if soft == resource.RLIM_INFINITY else int(soft)


def _kb(n: int) -> str:
    return f"{n / 1024:.0f} kB" if n < 10 * 1024 ** 2 else f"{n / 1024 ** 2:.0f} MB"


def make_room(fd: int, path, needed: int, what: str) -> None:
    """Reserve `needed` bytes past the end of the file open as `fd`, or raise RunFailed naming
    what is short, before anything of `what` is written."""
    end = os.fstat(fd).st_size
    limit = size_limit()
    if limit is not None and end + needed > limit:
        raise RunFailed(f"{path}: the file-size limit (ulimit -f: {_kb(limit)}) leaves no room for {what} "
                        f"(needs {_kb(needed)} more)")
    if _FALLOCATE is not None:
        if _FALLOCATE(fd, _KEEP_SIZE, end, needed) == 0:
            return
        code = ctypes.get_errno()
        if code in (errno.ENOSPC, errno.EDQUOT):
            raise RunFailed(f"{path}: no space left on the device for {what} (needs {_kb(needed)})")
        if code not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise RunFailed(f"{path}: cannot reserve room for {what} ({os.strerror(code)})")
    stats = os.fstatvfs(fd)
    free = stats.f_bavail * stats.f_frsize
    if free < needed:
        raise RunFailed(f"{path}: no space left on the device for {what} (needs {_kb(needed)}, {_kb(free)} free)")


def release_room(path) -> None:
    """Give back what make_room reserved past the file's end (truncating to its own size frees
    blocks allocated past the end)."""
    try:
        os.truncate(path, os.stat(path).st_size)
    except OSError:
        pass
