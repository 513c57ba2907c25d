"""Adaptive exponential integrate-and-fire (Brette & Gerstner 2005; their regular-spiking values):
spike-frequency adaptation within a presentation."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from closedloop.neurons.cells.base import Cell, CellModel, CellSettings
from closedloop.registry import register


class AdExSettings(CellSettings):
    model: Literal["adex"] = "adex"
    bias: float = Field(0.5, ge=-100, le=100, description="constant input current, nA")
    gain: float = Field(0.8, ge=0, le=100, description="input current added by the optimum stimulus, nA")
    noise_sigma: float = Field(0.2, ge=0, le=100, description="standard deviation of the OU noise current, nA")
    capacitance: float = Field(281.0, gt=0, le=100_000, description="pF")
    g_leak: float = Field(30.0, gt=0, le=10_000, description="nS")
    e_leak: float = Field(-70.6, ge=-200, le=100, description="mV")
    v_t: float = Field(-50.4, ge=-200, le=100, description="exponential threshold, mV")
    delta_t: float = Field(2.0, gt=0, le=100, description="slope factor, mV")
    v_peak: float = Field(-40.0, ge=-200, le=100, description="spike cut-off, mV")
    v_reset: float = Field(-70.6, ge=-200, le=100, description="mV")
    tau_w: float = Field(144.0, gt=0, le=100_000, description="adaptation time constant, ms")
    a: float = Field(4.0, ge=-10_000, le=10_000, description="subthreshold adaptation, nS")
    b: float = Field(0.0805, ge=0, le=100, description="spike-triggered adaptation, nA")
    refractory: float = Field(0.0, ge=0, le=1000, description="ms")


@register("cell", "adex")
class AdEx(Cell):
    Config = AdExSettings

    def brian_model(self) -> CellModel:
        cell = self.config
        equations = """
dv/dt = (g_leak * (e_leak - v) + g_leak * delta_t * exp((v - v_t - theta) / delta_t) - w + I_stim + I_noise) / C : volt (unless refractory)
dw/dt = (a * (v - e_leak) - w) / tau_w : amp
"""
        constants = {"C": f"{cell.capacitance}*pF", "g_leak": f"{cell.g_leak}*nS", "e_leak": f"{cell.e_leak}*mV",
                     "v_t": f"{cell.v_t}*mV", "delta_t": f"{cell.delta_t}*mV", "tau_w": f"{cell.tau_w}*ms",
                     "a": f"{cell.a}*nS"}
        return CellModel(equations, f"v > {cell.v_peak}*mV + theta", f"v = {cell.v_reset}*mV; w += {cell.b}*nA",
                         f"{cell.refractory}*ms", tuple(constants.items()), (("v", f"{cell.e_leak}*mV"),))
