"""Errors that reach the user as one line and a non-zero exit code."""


class ClosedLoopError(Exception):
    """Base of every error closedloop reports to the user without a traceback: something the user
    gave (a file, a field, an argument) cannot be used as it is."""

    exit_code = 2


class ProtocolError(ClosedLoopError):
    """A protocol file is malformed: names the file, the field path and what is expected."""

    exit_code = 2


class LogError(ClosedLoopError):
    """A run log cannot be read: truncated, corrupt, foreign or of a newer format."""

    exit_code = 2


class InvalidValueError(ClosedLoopError):
    """A stimulus or response holds NaN or Inf."""

    exit_code = 3


class Interrupted(ClosedLoopError):
    """The session stopped before the protocol's end through no fault of the log (a rig that
    stopped answering, or answered what cannot be used): every logged trial stands, the log is
    left `interrupted`, and `closedloop resume` continues it."""

    exit_code = 4
