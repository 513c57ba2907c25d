"""Yosinski et al.'s (2015) regularisers, between the generations of a black-box search.

Any optimizer (`search:`, default CMA-ES) proposes a generation; before it is shown, each
proposal is regularised as Yosinski et al. regularise the image between gradient steps:

- `decay`: z <- (1 - decay) z, towards the prior's mode (for natural_pca, where the latent's norm
  is the image's improbability; a contrast-fixed space ignores it);
- `blur_sigma`: the rendered image is blurred by a Gaussian of that many pixels (every
  `blur_every` generations) and encoded back;
- `jitter`: the rendered image is shifted (cyclically) by up to that many pixels and encoded back.

The search is told the regularised latents with their scores: what was shown is what it learns
from (CMA-ES treats them as repaired solutions). The regularisers never see the neuron.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator
from scipy.ndimage import gaussian_filter

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import lookup, register


class RegularizedSettings(Settings):
    search: dict[str, Any] = Field(default_factory=lambda: {"kind": "cmaes"},
                                   description="the optimizer that searches, e.g. {kind: cmaes, sigma0: 1}")
    decay: float = Field(0.0, ge=0, lt=1, description="latent <- (1 - decay) latent every generation")
    blur_sigma: float = Field(0.0, ge=0, le=100, description="Gaussian blur of each proposal, pixels (0: none)")
    blur_every: int = Field(1, ge=1, le=1_000_000, description="blur every this many generations")
    jitter: int = Field(0, ge=0, le=1000, description="largest random shift of each proposal, pixels (0: none)")

    @field_validator("search")
    @classmethod
    def _known_search(cls, section):
        kind = str(section.get("kind", "cmaes"))
        if kind == "regularized":
            raise ValueError("search: a regularized search cannot wrap another")
        try:
            config = lookup("optimizer", kind).Config
        except KeyError as exc:
            raise ValueError(f"search: {exc.args[0]}") from None
        settings = config(**{k: v for k, v in section.items() if k != "kind"})
        return {"kind": kind, **settings.model_dump(mode="json")}


@register("optimizer", "regularized")
class Regularized(Optimizer):
    Config = RegularizedSettings

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        if (config.blur_sigma or config.jitter) and not space.can_encode:
            raise ValueError(f"blur_sigma and jitter: space kind {space.kind!r} cannot encode a regularised image")
        section = dict(config.search)
        cls = lookup("optimizer", section.pop("kind"))
        self.search = cls(cls.Config(**section), seed, space, neuron)
        self.popsize = self.search.popsize
        self.status_columns = self.search.status_columns
        self.learns_from_any_stimulus = self.search.learns_from_any_stimulus
        self.proposes_given = self.search.proposes_given
        self.tells_answer_asks = self.search.tells_answer_asks
        self.random = self.rng(1)
        self.generation = 0
        if space.modality != "image" and (config.blur_sigma > 0 or config.jitter):
            raise ValueError("regularized: its blur and jitter act on images; for sounds use gradient_ascent's "
                             "jitter, tv_weight and fourier_weight")

    def plan(self, stimuli):
        self.search.plan(stimuli)

    def ask(self):
        return self.regularize(np.asarray(self.search.ask(), dtype=np.float64))

    def regularize(self, z: np.ndarray) -> np.ndarray:
        cfg = self.config
        z = z * (1.0 - cfg.decay)
        blur = cfg.blur_sigma > 0 and self.generation % cfg.blur_every == 0
        if blur or cfg.jitter:
            centre = 0.0 if self.space.centre is None else self.space.centre
            images = self.space.render(z) - centre
            if blur:
                sigma = (0,) * (images.ndim - 2) + (cfg.blur_sigma, cfg.blur_sigma)
                images = gaussian_filter(images, sigma=sigma, mode="nearest")
            if cfg.jitter:
                shifts = self.random.integers(-cfg.jitter, cfg.jitter + 1, size=(len(z), 2))
                images = np.stack([np.roll(image, tuple(shift), axis=(-2, -1)) for image, shift in zip(images, shifts)])
            z = self.space.encode(images + centre)
        self.generation += 1
        return z

    def inject(self, z):
        self.search.inject(z)

    def tell(self, z, scores):
        self.search.tell(z, scores)

    def recommend(self):
        return self.search.recommend()

    def status(self):
        return self.search.status()
