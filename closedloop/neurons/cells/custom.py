"""Your own Brian2 model: equations that use I_stim, and may use I_noise and theta (see base.py)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field

from closedloop.neurons.cells.base import Cell, CellModel, CellSettings, parse_quantity
from closedloop.registry import register


class CustomSettings(CellSettings):
    model: Literal["custom"] = "custom"
    equations: str = Field(description="Brian2 equations, one per line; the membrane potential is v (volt)")
    threshold: str = Field(description="Brian2 condition, e.g. 'v > -50*mV + theta'")
    reset: str = Field("", description="Brian2 statements run after a spike")
    refractory: str = Field("0*ms", description="refractory period with units, e.g. '2*ms'")
    parameters: dict[str, str] = Field(default_factory=dict, description="name: value with units, e.g. tau: 20*ms")
    initial: dict[str, str] = Field(default_factory=dict, description="initial values, e.g. v: -65*mV (default 0)")


@register("cell", "custom")
class CustomCell(Cell):
    Config = CustomSettings
    user_equations = True

    def brian_model(self) -> CellModel:
        cell = self.config
        if not re.search(r"\bI_stim\b", cell.equations):
            raise ValueError("cell.equations: must use the input current I_stim (amp)")
        if cell.noise_sigma > 0 and not re.search(r"\bI_noise\b", cell.equations):
            raise ValueError("cell.equations: noise_sigma > 0 but the equations do not use I_noise (amp)")
        for name, text in {**cell.parameters, **cell.initial}.items():
            parse_quantity(text, name)  # fail at load time, with the parameter's name
        parse_quantity(cell.refractory, "refractory")
        return CellModel(cell.equations, cell.threshold, cell.reset, cell.refractory,
                         tuple(sorted(cell.parameters.items())), tuple(sorted(cell.initial.items())))
