"""What a rig does besides showing stimuli: numbers and times its trials by its own clock, and,
when asked to simulate a real one, answers late, drops trials, restarts or hangs.

Every served neuron goes through a Rig (the plain one only numbers and stamps its trials), so
a test of the client against `closedloop serve --drop 0.2 --restart-every 5` exercises exactly
the code that a real rig's quirks would.
"""

from __future__ import annotations

import time

import numpy as np
from pydantic import Field

from closedloop.component import Settings


class RigSettings(Settings):
    latency: float = Field(0.0, ge=0, description="s added before every reply")
    jitter: float = Field(0.0, ge=0, description="up to this many s more, uniformly at random")
    drop: float = Field(0.0, ge=0, lt=1, description="probability that the rig drops a trial (a fixation "
                                                      "break): it is shown but its response is missing")
    restart_every: int | None = Field(None, ge=2, description="the rig restarts on every N-th presentation "
                                      "request: that request is lost, the session and the neuron's state "
                                      "with it, and trial numbers start again at 1")
    stall_after: int | None = Field(None, ge=0, description="answer this many presentation requests, then hang")
    seed: int = Field(0, ge=0, description="fixes which trials are dropped")

    @property
    def simulating(self) -> bool:
        return bool(self.latency or self.jitter or self.drop or self.restart_every or self.stall_after is not None)


class Rig:
    def __init__(self, settings: RigSettings | None = None):
        self.settings = settings or RigSettings()
        self.requests = 0  # presentation requests over the rig's whole life (restarts included)
        self.draws = 0  # drop draws so far: part of the served state, so resume drops the same trials
        self.restarts = 0
        self.boot()

    def boot(self) -> None:
        self.booted = time.monotonic()
        self.next_trial = 1

    def next_request(self) -> str | None:
        """Count one presentation request: "stall" or "restart" when the rig fails on it."""
        cfg = self.settings
        self.requests += 1
        if cfg.stall_after is not None and self.requests > cfg.stall_after:
            return "stall"
        if cfg.restart_every and self.requests % cfg.restart_every == 0:
            self.restarts += 1
            self.draws = 0
            self.boot()
            return "restart"
        return None

    def stamp(self, t_start: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The rig's trial numbers and onset times (s on its clock since it booted), in the
        order the trials were shown (by the neuron's t_start)."""
        t_start = np.asarray(t_start, dtype=np.float64)
        order = np.argsort(t_start.ravel(), kind="stable")
        rank = np.empty(order.size, dtype=np.int64)
        rank[order] = np.arange(order.size)
        ids = (self.next_trial + rank).reshape(t_start.shape)
        self.next_trial += order.size
        now = time.monotonic() - self.booted
        times = now + (t_start - (t_start.min() if t_start.size else 0.0))
        return ids, times

    def valid(self, shape) -> np.ndarray:
        """1 for a trial with a response, 0 for one the rig dropped."""
        if not self.settings.drop:
            return np.ones(shape, dtype=np.uint8)
        rng = np.random.default_rng(np.random.SeedSequence([self.settings.seed, self.draws]))
        self.draws += 1
        return (rng.random(shape) >= self.settings.drop).astype(np.uint8)

    def wait(self) -> None:
        cfg = self.settings
        delay = cfg.latency + (cfg.jitter * np.random.default_rng().random() if cfg.jitter else 0.0)
        if delay:
            time.sleep(delay)

    def get_state(self) -> dict[str, np.ndarray]:
        return {"rig_draws": np.array([float(self.draws)])} if self.settings.drop else {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        if "rig_draws" in state:
            self.draws = int(np.asarray(state["rig_draws"]).ravel()[0])
