"""A digit unit of a network raised on other experience: the rearing experiment's neuron.

The zoo's digits CNN trained by the same recipe (closedloop/zoo/digits.py), with static shown as
an 11th "none of these" class, or with static behind some of the digits; each rearing trains
once, deterministically, and is cached like the standard network (`rearing: {}` *is* the zoo's
network). The response is the network's probability of one digit (or its log, or the digit's
logit), so that one threshold means the same in every rearing.

    neuron:
      kind: reared_digits
      rearing: {static: pink}    # or {backgrounds: brown}, or {} for the standard network
      digit: 3
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator

from closedloop.component import Settings
from closedloop.neurons.dnn import DNNUnit, NoiseSettings
from closedloop.registry import register

Static = Literal["white", "pink", "brown"]  # amplitude spectrum flat, 1/f, 1/f^2
Fraction = Annotated[float, Field(ge=0, le=1)]


class Rearing(Settings):
    static: Static | None = Field(None, description='static shown as class 10, "none of these": white, pink (1/f) '
                                  "or brown (1/f^2)")
    static_share: float = Field(0.1, gt=0, le=1, description="static images added to each batch, per digit in it")
    backgrounds: Static | None = Field(None, description="static behind a share of the training digits")
    background_share: float = Field(0.5, gt=0, le=1, description="the share of digits drawn over static")
    contrast: tuple[Fraction, Fraction] = Field((0.1, 0.4), description="RMS of that static (of the 0..1 range), "
                                          "uniform per image between these")
    seed: int | None = Field(None, ge=0, le=2**32 - 1, description="training seed; default the zoo network's")
    epochs: int | None = Field(None, ge=1, le=1000, description="training epochs; default the zoo network's")

    @model_validator(mode="after")
    def _increasing_contrast(self):
        if not 0 < self.contrast[0] <= self.contrast[1]:
            raise ValueError(f"contrast: {list(self.contrast)} must be [low, high] with 0 < low <= high")
        return self

    def experience(self) -> dict:
        """The recipe entry of closedloop.zoo.digits.recipe (only what this rearing uses)."""
        return self.model_dump(mode="json")


class RearedSettings(Settings):
    rearing: Rearing = Rearing()
    digit: int = Field(3, ge=0, le=9, description="the class unit recorded")
    readout: Literal["probability", "log_probability", "logit"] = Field(
        "probability", description="the network's probability of the digit (softmax over its classes), its log, "
        "or the digit's logit")
    noise: NoiseSettings = NoiseSettings()
    batch_size: int = Field(256, ge=1, le=100_000, description="stimuli per forward pass")
    threads: int = Field(1, ge=1, le=64, description="torch threads (at most the cores)")
    period: float = Field(0.1, gt=0, le=3600, description="nominal seconds per presentation, for t_start")


class Readout(torch.nn.Module):
    def __init__(self, net: torch.nn.Module, readout: str):
        super().__init__()
        self.net, self.readout = net, readout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.readout == "probability":
            return torch.softmax(logits, dim=1)
        return torch.log_softmax(logits, dim=1) if self.readout == "log_probability" else logits


@register("neuron", "reared_digits")
class RearedDigitUnit(DNNUnit):
    Config = RearedSettings

    def __init__(self, config: RearedSettings, seed: int):
        super().__init__(config, seed)
        if config.noise.kind == "none":
            self.response_unit = {"probability": "p", "log_probability": "log p", "logit": "logit"}[config.readout]

    def _network(self, config):
        from closedloop.zoo import digits

        net = digits.trained_net(config.rearing.experience())
        _, _, x_test, y_test = digits.dataset()
        self.network = {"classes": net.fc2.out_features, "recipe": digits.recipe_hash(config.rearing.experience()),
                        "test_accuracy": digits.accuracy(net, x_test, y_test), "test_digits": len(y_test)}
        for parameter in net.parameters():
            parameter.requires_grad_(False)
        self.module = Readout(net, config.readout).eval()
        self.stimulus_shape, self.value_range, self.modality, self.sample_rate = (1, 8, 8), (0.0, 1.0), "image", None
        self.claim = ("digit", config.digit)
        return "", config.digit, None

    def describe(self):
        """The configuration, and what the trained network is: its recipe hash and test accuracy."""
        return {**super().describe(), "network": self.network}
