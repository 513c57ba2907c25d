"""What every neuron, space, optimizer and experiment shares: a validated config and a seed."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict, SerializeAsAny, WrapValidator


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


@dataclass(frozen=True)
class KindOf:
    """Marks a field that holds a kind of another role, chosen by its `tag` field (a spiking
    cell's `front_end: {kind: dog, ...}` or `cell: {model: adex, ...}`)."""

    role: str
    default: str
    tag: str = "kind"

    def validate(self, value, handler):
        if isinstance(value, Settings) or not isinstance(value, dict):
            return handler(value)
        config = self.config_class(value)
        if self.tag not in config.model_fields:  # the kind's Config does not repeat its own name
            value = {k: v for k, v in value.items() if k != self.tag}
        return config.model_validate(value)

    def config_class(self, value: dict) -> type[Settings]:
        from closedloop import registry

        name = value.get(self.tag, self.default)
        try:
            return registry.lookup(self.role, str(name)).Config
        except KeyError as exc:
            raise ValueError(f"{self.tag}: {exc.args[0]}") from None


def kind_of(role: str, default: str, tag: str = "kind"):
    """The type of a field holding a kind of `role` (see KindOf)."""
    marker = KindOf(role, default, tag)
    return Annotated[SerializeAsAny[Settings], WrapValidator(marker.validate), marker]
