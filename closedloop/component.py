"""What every neuron, space, optimizer and experiment shares: a validated config and a seed."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict


class Settings(BaseModel):
    """A component's protocol section. Unknown fields are errors, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    kind: ClassVar[str] = "?"
    Config: ClassVar[type[Settings]] = Settings

    def __init__(self, config: Settings, seed: int):
        self.config = config
        self.seed = int(seed)

    def rng(self, *stream: int) -> np.random.Generator:
        """An independent generator for one purpose (e.g. one generation), fixed by the seed."""
        return np.random.default_rng(np.random.SeedSequence([self.seed, *stream]))

    def describe(self) -> dict[str, Any]:
        """The resolved configuration, as logged in the run file."""
        return {"kind": self.kind, **self.config.model_dump(mode="json")}
