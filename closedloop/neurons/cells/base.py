"""What every cell model shares: its Brian2 description (a CellModel) and the input settings.

Every model reduces to a `CellModel`: equation text, threshold, reset, refractory period and a
namespace of constants with units. The simulator (brian_engine.py) adds the variables it drives
from outside:

    I_stim  : amp    input current of the presentation (front end, bias, drift, adaptation)
    I_noise : amp    Ornstein-Uhlenbeck noise current, updated every step by the simulator
    theta   : volt   threshold shift (slow threshold drift), 0 when there is none

so a model's equations use `I_stim` (required) and `I_noise` (when there is noise), and its
threshold uses `theta`. Parameters given as strings ("20*ms", "-65 mV", "30 nS") are parsed here
into Brian2 quantities (a number times a product of Brian2 units; no eval).

A cell model is one module in this package: a CellSettings subclass whose `model` literal names
it, and a Cell subclass decorated with `@register("cell", "name")` whose Config is that class.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from pydantic import Field

from closedloop.component import Component, Settings


class CellSettings(Settings):
    bias: float = Field(0.1, ge=-100, le=100, description="constant input current, nA")
    gain: float = Field(0.2, ge=0, le=100, description="input current added by the optimum stimulus (drive 1), nA")
    noise_sigma: float = Field(0.035, ge=0, le=100, description="standard deviation of the OU noise current, nA")
    noise_tau: float = Field(80.0, gt=0, le=100_000, description="correlation time of the OU noise current, ms")


@dataclass(frozen=True)
class CellModel:
    equations: str
    threshold: str
    reset: str
    refractory: str
    constants: tuple[tuple[str, str], ...]  # (name, quantity text) pairs: hashable, parsed late
    initial: tuple[tuple[str, str], ...]
    method: str = "euler"

    def namespace(self) -> dict:
        return {name: parse_quantity(text, name) for name, text in self.constants}

    def initial_values(self) -> dict:
        return {name: parse_quantity(text, name) for name, text in self.initial}


class Cell(Component):
    """A cell model: `brian_model()` gives its equations, built once into `self.model`."""

    Config: ClassVar[type[Settings]] = CellSettings
    # equations written by the user: the spiking neuron runs them once at load time, so that
    # mistakes Brian2 finds surface before the run starts
    user_equations: ClassVar[bool] = False

    def __init__(self, config: CellSettings, seed: int):
        super().__init__(config, seed)
        self.model = self.brian_model()

    def brian_model(self) -> CellModel:
        raise NotImplementedError


_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*(?:\*?\s*([A-Za-z_][\w\s*/.\-]*?))?\s*$")
_FACTOR = re.compile(r"^([A-Za-z_]\w*)(?:\*\*(-?\d+))?$")


def parse_quantity(text, name: str = "value"):
    """'20*ms', '-65 mV', '0.5 nA', '30*nS', '1*metre**-2' -> a Brian2 Quantity (numbers stay numbers)."""
    import brian2 as b2
    from brian2.units.fundamentalunits import Unit

    if isinstance(text, (int, float)):
        return float(text)
    match = _QUANTITY.match(str(text))
    if not match:
        raise ValueError(f"{name}: cannot read {text!r} as a number with units, e.g. '20*ms'")
    value, units = float(match.group(1)), (match.group(2) or "").replace(" ", "")
    result = value
    if units:
        for i, token in enumerate(re.split(r"([*/])", units)[::2]):
            operator = "*" if i == 0 else re.split(r"([*/])", units)[2 * i - 1]
            factor = _FACTOR.match(token)
            unit = getattr(b2.units, factor.group(1), None) if factor else None
            if not isinstance(unit, Unit):
                raise ValueError(f"{name}: {token!r} in {text!r} is not a Brian2 unit")
            unit = unit ** int(factor.group(2) or 1)
            result = result * unit if operator == "*" else result / unit
    return result
