"""Model-based search: a Bayesian linear model of the response, refitted on every trial so far.

The experimenter's generic assumption is the linear-nonlinear cell: the response grows with the
projection <v, s> of the stimulus onto an unknown filter v. Every tell adds its trials to the
sufficient statistics of a Bayesian linear regression of score on stimulus, so no presentation
is ever thrown away. The prior on v is the space's own prior over stimuli (estimated once from
`space.render(space.sample(...))`): in a 1/f Fourier space the filter is expected to be smooth,
which is what shrinks the effective dimension. The prior scale and the noise level are set by
evidence maximisation (MacKay), so the method does not depend on the units of the scores.

Each generation presents the current estimate v (exploitation; also the recommendation) and
stimuli on the sphere of fixed contrast at an angle theta from it, in random directions
shaped by the posterior covariance (where the filter is least known). theta follows the
posterior's own angular uncertainty times `angle_scale`, clipped to [angle_min, angle_max]: it
anneals by itself as the estimate sharpens. Wide angles are the informative ones (the response
to a stimulus far from the estimate is small, so its Poisson noise is too, while its sensitivity
to the filter's unknown directions is largest); the estimate itself is what earns the response.
`memory` (a half-life in presentations) lets old trials fade so that the linear model stays
local: cells that are not linear in one projection (complex cells, expansive nonlinearities)
need that, and a linear cell loses little.

Needs a space that can `encode` stimuli (pixels, fourier). It never looks at the neuron.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import Field
from threadpoolctl import threadpool_limits

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class LinearModelSettings(Settings):
    popsize: int = Field(20, ge=2, le=100_000, description="stimuli per generation")
    exploit: int = Field(1, ge=0, le=10_000, description="presentations of the current estimate per generation")
    angle_scale: float = Field(5.0, gt=0, le=1000, description="exploration angle / posterior angular uncertainty")
    angle_min: float = Field(10.0, gt=0, lt=90, description="smallest exploration angle, degrees")
    angle_max: float = Field(75.0, gt=0, le=90, description="largest exploration angle, degrees")
    memory: float | None = Field(1000.0, gt=0, le=1e9, description="half-life of old trials, presentations; null keeps all")
    prior_samples: int = Field(4000, ge=100, le=1_000_000, description="draws of the space's prior used to shape the filter prior")


def single_threaded(method):
    """Small dense algebra: BLAS threads only cost, and oversubscribe cores shared with other runs."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with threadpool_limits(1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper


def default_section(space_class) -> dict:
    """The optimizer section `evolve` uses when a protocol gives none: this model-based search
    where the space (a space kind's class) can encode stimuli, else CMA-ES."""
    return {"kind": "linear_model"} if space_class.can_encode else {"kind": "cmaes"}


class Posterior:
    """Bayesian linear regression y = b + <g, f> + noise, g ~ N(0, I/alpha), from running sums."""

    def __init__(self, k: int):
        self.k = k
        self.n = 0.0
        self.sff = np.zeros((k, k))
        self.sf = np.zeros(k)
        self.sfy = np.zeros(k)
        self.sy = 0.0
        self.syy = 0.0
        self.alpha, self.beta = 1.0, 1.0
        self.mean = np.zeros(k)
        self.eigvecs = np.eye(k)
        self.variances = np.ones(k)  # posterior variances along eigvecs

    def add(self, features: np.ndarray, y: np.ndarray, decay: float = 1.0) -> None:
        if decay != 1.0:
            for name in ("n", "sff", "sf", "sfy", "sy", "syy"):
                setattr(self, name, getattr(self, name) * decay)
        self.n += len(y)
        self.sff += features.T @ features
        self.sf += features.sum(axis=0)
        self.sfy += features.T @ y
        self.sy += y.sum()
        self.syy += y @ y

    def fit(self, iterations: int = 30) -> bool:
        """Evidence-maximising alpha, beta and the posterior; False if the scores carry nothing yet."""
        n = self.n
        mean_f = self.sf / n
        gram = self.sff - n * np.outer(mean_f, mean_f)
        cross = self.sfy - mean_f * self.sy
        yy = self.syy - self.sy**2 / n
        if n < 3 or yy <= 1e-12 * max(self.syy, 1e-300):
            return False
        lam, q = np.linalg.eigh(gram)
        lam = np.maximum(lam, 0.0)
        h = q.T @ cross
        alpha, beta = self.alpha, self.beta
        if not np.isfinite(alpha * beta) or alpha <= 0 or beta <= 0:
            alpha, beta = 1.0, 1.0
        beta = min(beta, n / yy * 1e6)
        for _ in range(iterations):
            m = beta * h / (beta * lam + alpha)
            effective = float(np.sum(beta * lam / (beta * lam + alpha)))
            rss = max(yy - 2 * m @ h + np.sum(lam * m**2), 1e-9 * yy)
            alpha = effective / max(m @ m, 1e-300)
            beta = max(n - 1 - effective, 1.0) / rss
            # a ridge never vanishes entirely: keeps the solve well posed when the scores are exact
            alpha = max(alpha, 1e-9 * beta * max(lam.max(), 1e-300))
        self.alpha, self.beta = alpha, beta
        self.mean = q @ (beta * h / (beta * lam + alpha))
        self.eigvecs, self.variances = q, 1.0 / (beta * lam + alpha)
        return True


@register("optimizer", "linear_model")
class LinearModel(Optimizer):
    Config = LinearModelSettings
    status_columns = ("angle", "uncertainty", "noise_sd")

    @single_threaded
    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        if config.angle_min > config.angle_max:
            raise ValueError(f"angle_min ({config.angle_min}) exceeds angle_max ({config.angle_max})")
        if config.exploit >= config.popsize:
            raise ValueError(f"exploit ({config.exploit}) must be fewer than popsize ({config.popsize})")
        if not space.can_encode:
            raise ValueError(f"optimizer linear_model needs a space that can encode stimuli; "
                             f"space kind {space.kind!r} cannot")
        self.popsize = config.popsize
        self.random = self.rng(0)
        self.generation = 0
        self._prior_basis(space.render(space.sample(self.rng(2), config.prior_samples)))
        self.posterior = Posterior(self.basis.shape[1])
        self.fitted = False
        self.angle = float(np.deg2rad(config.angle_max))
        self.uncertainty = np.nan  # until the first fit
        self.best_z, self.best_score = space.sample(self.rng(3), 1)[0], -np.inf  # until the model is fitted

    def _prior_basis(self, samples: np.ndarray) -> None:
        """Columns spanning the rendered stimuli, scaled by the prior's standard deviations."""
        flat = samples.reshape(len(samples), -1)
        self.contrast_norm = float(np.sqrt(np.mean(np.sum(flat**2, axis=1))))
        _, sv, vt = np.linalg.svd(flat / np.sqrt(len(flat)), full_matrices=False)
        keep = sv > 1e-6 * sv[0]
        # basis @ g is a stimulus; g ~ N(0, I) renders like a prior draw
        self.basis = vt[keep].T * sv[keep]

    def features(self, z: np.ndarray) -> np.ndarray:
        flat = self.space.render(z).reshape(len(z), -1)
        return flat @ self.basis / self.contrast_norm

    def estimate(self) -> np.ndarray:
        """The current filter estimate, as a stimulus-shaped vector (flattened)."""
        return self.basis @ self.posterior.mean

    def _latent(self, flat_stimuli: np.ndarray) -> np.ndarray:
        return self.space.encode(flat_stimuli.reshape(len(flat_stimuli), *self.space.stimulus_shape))

    @single_threaded
    def ask(self):
        cfg = self.config
        if not self.fitted:
            return self.space.sample(self.random, self.popsize)
        v = self.estimate()
        v_norm = np.linalg.norm(v)
        if v_norm == 0:
            return self.space.sample(self.random, self.popsize)
        direction = v / v_norm
        n_explore = self.popsize - cfg.exploit
        # directions drawn from the posterior's shape, made orthogonal to the estimate
        post = self.posterior
        xi = self.random.standard_normal((n_explore, len(post.variances)))
        spread = (xi * np.sqrt(post.variances)) @ post.eigvecs.T @ self.basis.T
        spread -= np.outer(spread @ direction, direction)
        spread /= np.maximum(np.linalg.norm(spread, axis=1, keepdims=True), 1e-300)
        # the posterior's angular uncertainty: spread of the filter around its estimate
        total_var = float(np.sum(post.variances * np.sum((self.basis @ post.eigvecs) ** 2, axis=0)))
        self.uncertainty = float(np.arctan(np.sqrt(total_var) / v_norm))
        lo, hi = np.deg2rad(cfg.angle_min), np.deg2rad(cfg.angle_max)
        self.angle = float(np.clip(cfg.angle_scale * self.uncertainty, lo, hi))
        explore = np.cos(self.angle) * direction + np.sin(self.angle) * spread
        stimuli = np.concatenate([np.repeat(direction[None], cfg.exploit, axis=0), explore])
        return self._latent(stimuli * self.contrast_norm)

    @single_threaded
    def tell(self, z, scores):
        z = np.asarray(z, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        decay = 1.0
        if self.config.memory is not None:
            decay = 0.5 ** (len(scores) / self.config.memory)
        self.posterior.add(self.features(z), scores, decay)
        self.fitted = self.posterior.fit() or self.fitted
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = z[top].copy(), float(scores[top])
        self.generation += 1

    @single_threaded
    def recommend(self):
        if not self.fitted or not np.any(self.posterior.mean):
            return self.best_z
        v = self.estimate()
        return self._latent((v / np.linalg.norm(v) * self.contrast_norm)[None])[0]

    def status(self):
        return {"angle": float(np.rad2deg(self.angle)), "uncertainty": float(np.rad2deg(self.uncertainty)),
                "noise_sd": float(1 / np.sqrt(self.posterior.beta))}
