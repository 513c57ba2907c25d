"""Cell models as Brian2 equations with units: LIF, AdEx and user-supplied equations.

Every model reduces to a `CellModel`: equation text, threshold, reset, refractory period and a
namespace of constants with units. The simulator adds the variables it drives from outside:

    I_stim  : amp    input current of the presentation (front end, bias, drift, adaptation)
    I_noise : amp    Ornstein-Uhlenbeck noise current, updated every step by the simulator
    theta   : volt   threshold shift (slow threshold drift), 0 when there is none

so a model's equations use `I_stim` (required) and `I_noise` (when there is noise), and its
threshold uses `theta`. Parameters given as strings ("20*ms", "-65 mV", "30 nS") are parsed here
into Brian2 quantities (a number times a product of Brian2 units; no eval).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal, Union

from pydantic import Field

from closedloop.component import Settings


class CellBase(Settings):
    bias: float = Field(0.1, description="constant input current, nA")
    gain: float = Field(0.2, ge=0, description="input current added by the optimum stimulus (drive 1), nA")
    noise_sigma: float = Field(0.035, ge=0, description="standard deviation of the OU noise current, nA")
    noise_tau: float = Field(80.0, gt=0, description="correlation time of the OU noise current, ms")


class LIFSettings(CellBase):
    """Defaults: a high-conductance cortical cell (short effective membrane time constant) with soft,
    stochastic spiking and slow input fluctuations: spike-count Fano factors about 1 (see
    docs/benchmarks.md, "Spiking cell speed" for the measured values)."""

    model: Literal["lif"] = "lif"
    tau_m: float = Field(5.0, gt=0, description="membrane time constant, ms")
    v_rest: float = Field(-65.0, description="mV")
    v_threshold: float = Field(-50.0, description="mV")
    v_reset: float = Field(-60.0, description="mV")
    refractory: float = Field(1.0, ge=0, description="ms")
    resistance: float = Field(100.0, gt=0, description="membrane resistance, megaohm")
    escape_rate: float = Field(
        20.0, ge=0,
        description="stochastic spiking: firing rate (Hz) when v sits at threshold; 0 gives a hard threshold")
    escape_width: float = Field(6.0, gt=0, description="stochastic spiking: mV over which the hazard grows e-fold")


class AdExSettings(CellBase):
    """Adaptive exponential integrate-and-fire (Brette & Gerstner 2005; their regular-spiking values)."""

    model: Literal["adex"] = "adex"
    bias: float = Field(0.5, description="constant input current, nA")
    gain: float = Field(0.8, ge=0, description="input current added by the optimum stimulus, nA")
    noise_sigma: float = Field(0.2, ge=0, description="standard deviation of the OU noise current, nA")
    capacitance: float = Field(281.0, gt=0, description="pF")
    g_leak: float = Field(30.0, gt=0, description="nS")
    e_leak: float = Field(-70.6, description="mV")
    v_t: float = Field(-50.4, description="exponential threshold, mV")
    delta_t: float = Field(2.0, gt=0, description="slope factor, mV")
    v_peak: float = Field(-40.0, description="spike cut-off, mV")
    v_reset: float = Field(-70.6, description="mV")
    tau_w: float = Field(144.0, gt=0, description="adaptation time constant, ms")
    a: float = Field(4.0, description="subthreshold adaptation, nS")
    b: float = Field(0.0805, ge=0, description="spike-triggered adaptation, nA")
    refractory: float = Field(0.0, ge=0, description="ms")


class CustomSettings(CellBase):
    """Your own Brian2 model: it must use I_stim, may use I_noise and theta (see module docstring)."""

    model: Literal["custom"] = "custom"
    equations: str = Field(description="Brian2 equations, one per line; the membrane potential is v (volt)")
    threshold: str = Field(description="Brian2 condition, e.g. 'v > -50*mV + theta'")
    reset: str = Field("", description="Brian2 statements run after a spike")
    refractory: str = Field("0*ms", description="refractory period with units, e.g. '2*ms'")
    parameters: dict[str, str] = Field(default_factory=dict, description="name: value with units, e.g. tau: 20*ms")
    initial: dict[str, str] = Field(default_factory=dict, description="initial values, e.g. v: -65*mV (default 0)")


CellSettings = Union[LIFSettings, AdExSettings, CustomSettings]  # chosen by `model` (see spiking.py)


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


def cell_model(cell) -> CellModel:
    """The Brian2 description of a cell's settings."""
    if isinstance(cell, LIFSettings):
        if cell.escape_rate > 0:
            # escape noise: spike with probability hazard*dt, the hazard growing exponentially in v
            threshold = "spike_uniform(i, t_in_timesteps, noise_seed) < escape_p"
            hazard = "escape_p = clip(dt * escape_rate * exp((v - v_threshold - theta) / escape_width), 0, 1) : 1"
        else:
            threshold, hazard = "v > v_threshold + theta", ""
        equations = f"""
dv/dt = (v_rest - v + R * (I_stim + I_noise)) / tau_m : volt (unless refractory)
{hazard}
"""
        constants = {"tau_m": f"{cell.tau_m}*ms", "v_rest": f"{cell.v_rest}*mV", "v_threshold": f"{cell.v_threshold}*mV",
                     "R": f"{cell.resistance}*Mohm", "escape_rate": f"{cell.escape_rate}*Hz",
                     "escape_width": f"{cell.escape_width}*mV"}
        return CellModel(equations, threshold, f"v = {cell.v_reset}*mV", f"{cell.refractory}*ms",
                         tuple(constants.items()), (("v", f"{cell.v_rest}*mV"),))
    if isinstance(cell, AdExSettings):
        equations = """
dv/dt = (g_leak * (e_leak - v) + g_leak * delta_t * exp((v - v_t - theta) / delta_t) - w + I_stim + I_noise) / C : volt (unless refractory)
dw/dt = (a * (v - e_leak) - w) / tau_w : amp
"""
        constants = {"C": f"{cell.capacitance}*pF", "g_leak": f"{cell.g_leak}*nS", "e_leak": f"{cell.e_leak}*mV",
                     "v_t": f"{cell.v_t}*mV", "delta_t": f"{cell.delta_t}*mV", "tau_w": f"{cell.tau_w}*ms",
                     "a": f"{cell.a}*nS"}
        return CellModel(equations, f"v > {cell.v_peak}*mV + theta", f"v = {cell.v_reset}*mV; w += {cell.b}*nA",
                         f"{cell.refractory}*ms", tuple(constants.items()), (("v", f"{cell.e_leak}*mV"),))
    if isinstance(cell, CustomSettings):
        if not re.search(r"\bI_stim\b", cell.equations):
            raise ValueError("cell.equations: must use the input current I_stim (amp)")
        if cell.noise_sigma > 0 and not re.search(r"\bI_noise\b", cell.equations):
            raise ValueError("cell.equations: noise_sigma > 0 but the equations do not use I_noise (amp)")
        for name, text in {**cell.parameters, **cell.initial}.items():
            parse_quantity(text, name)  # fail at load time, with the parameter's name
        parse_quantity(cell.refractory, "refractory")
        return CellModel(cell.equations, cell.threshold, cell.reset, cell.refractory,
                         tuple(sorted(cell.parameters.items())), tuple(sorted(cell.initial.items())))
    raise ValueError(f"cell: unknown model {cell!r}")


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
