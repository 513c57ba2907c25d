"""A genetic algorithm in the style of XDream (Xiao & Kreiman 2020).

Fitness is the z-scored response; parents are drawn with probability softmax(selectivity x
fitness); the best `elites` survive unchanged; children take each gene from the first parent
with probability `heritability`, else from the second, and each gene mutates with probability
`mutation_rate` by a Gaussian of standard deviation `mutation_size`.

On a fixed-contrast space the latent norm grows freely while the stimulus does not, so XDream's
absolute mutation (the default) shrinks relative to the stimulus as the run goes on: under
noise that stalls progress, without noise it acts as annealing. `relative_mutation: true`
scales the mutation by the population's RMS latent coordinate instead; on the sample-efficiency
benchmark that is no better under noise and never fine-tunes without it (docs/benchmarks.md).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class GeneticSettings(Settings):
    popsize: int = Field(20, ge=4, le=100_000, description="stimuli per generation")
    elites: int = Field(2, ge=0, le=100_000, description="best stimuli kept unchanged into the next generation")
    selectivity: float = Field(2.0, ge=0, le=100, description="parents drawn with probability softmax(selectivity x "
                                                               "z-scored response)")
    heritability: float = Field(0.5, ge=0, le=1, description="probability that a gene comes from the first parent")
    mutation_rate: float = Field(0.5, ge=0, le=1, description="probability that a gene mutates")
    mutation_size: float = Field(0.5, gt=0, le=100, description="standard deviation of a mutation, in latent units")
    relative_mutation: bool = Field(False, description="scale mutations by the population's RMS coordinate")


@register("optimizer", "genetic")
class Genetic(Optimizer):
    Config = GeneticSettings

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        if config.elites >= config.popsize:
            raise ValueError(f"elites ({config.elites}) must be fewer than popsize ({config.popsize})")
        self.random = self.rng(0)
        self.popsize = config.popsize
        self.population = space.sample(self.random, config.popsize)
        self.best_z, self.best_score = self.population[0], -np.inf

    def ask(self):
        return self.population.copy()

    def tell(self, z, scores):
        cfg, rng = self.config, self.random
        z, scores = np.asarray(z), np.asarray(scores, dtype=np.float64)
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = z[top].copy(), scores[top]
        spread = scores.std()
        fitness = (scores - scores.mean()) / spread if spread > 0 else np.zeros_like(scores)
        weights = np.exp(cfg.selectivity * (fitness - fitness.max()))
        weights /= weights.sum()
        ranked = np.argsort(-scores, kind="stable")
        elites = z[ranked[: cfg.elites]]
        n_children = cfg.popsize - cfg.elites
        parents = rng.choice(len(z), size=(n_children, 2), p=weights)
        from_first = rng.random((n_children, self.dim)) < cfg.heritability
        children = np.where(from_first, z[parents[:, 0]], z[parents[:, 1]])
        mutate = rng.random(children.shape) < cfg.mutation_rate
        size = cfg.mutation_size
        if cfg.relative_mutation:
            size *= float(np.sqrt(np.mean(z**2))) or 1.0
        children = children + mutate * rng.standard_normal(children.shape) * size
        self.population = np.concatenate([elites, children])

    def recommend(self):
        return self.best_z
