"""The trial log: an append-only HDF5 file per run, and its reader."""

from closedloop.recording.reader import Run, open_run
from closedloop.recording.writer import RunWriter

__all__ = ["Run", "RunWriter", "open_run"]
