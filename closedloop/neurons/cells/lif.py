"""Leaky integrate-and-fire with escape noise: stochastic spiking with a hazard growing
exponentially in v (`escape_rate: 0` gives a hard threshold)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closedloop.neurons.cells.base import Cell, CellModel, CellSettings
from closedloop.registry import register


class LIFSettings(CellSettings):
    """Defaults: a high-conductance cortical cell (short effective membrane time constant) with soft,
    stochastic spiking and slow input fluctuations: spike-count Fano factors about 1 (see
    docs/benchmarks.md, "Spiking cell speed" for the measured values)."""

    model: Literal["lif"] = "lif"
    tau_m: float = Field(5.0, gt=0, le=10_000, description="membrane time constant, ms")
    v_rest: float = Field(-65.0, ge=-200, le=100, description="mV")
    v_threshold: float = Field(-50.0, ge=-200, le=100, description="mV")
    v_reset: float = Field(-60.0, ge=-200, le=100, description="mV")
    refractory: float = Field(1.0, ge=0, le=1000, description="ms")
    resistance: float = Field(100.0, gt=0, le=100_000, description="membrane resistance, megaohm")
    escape_rate: float = Field(
        20.0, ge=0,
        le=10_000, description="stochastic spiking: firing rate (Hz) when v sits at threshold; 0 gives a hard threshold")
    escape_width: float = Field(6.0, gt=0, le=100, description="stochastic spiking: mV over which the hazard grows e-fold")


@register("cell", "lif")
class LIF(Cell):
    Config = LIFSettings

    def brian_model(self) -> CellModel:
        cell = self.config
        if cell.escape_rate > 0:
            # escape noise: spike with probability hazard*dt, the hazard growing exponentially in v
            threshold = "spike_uniform(i, t_in_timesteps, noise_seed) < escape_p"
            hazard = "escape_p = clip(dt * escape_rate * hazard_exp((v - v_threshold - theta) / escape_width), 0, 1) : 1"
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
