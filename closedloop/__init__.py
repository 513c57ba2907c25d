"""closedloop: closed-loop single-unit experiments on simulated neurons."""

__version__ = "0.1.0"
