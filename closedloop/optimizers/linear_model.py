"""Model-based search: a Bayesian linear model of the response, refitted on every trial so far.

The experimenter's generic assumption is the linear-nonlinear cell: the response grows with the
projection <v, s> of the stimulus onto an unknown filter v. Every tell adds its trials to the
sufficient statistics of a Bayesian linear regression of score on stimulus, so no presentation
is ever thrown away. The filter lives in the stimulus's own Fourier coordinates (one FFT per
stimulus, _spectral.py), where the prior is diagonal: a generic image prior, amplitude falling
as 1/f^slope below a soft cutoff `band`, on the frequencies the space can render. The prior's
scale and the noise level are set by evidence maximisation (MacKay), so the method does not
depend on the units of the scores; the slope and the band move a step at a time to whichever
neighbour the evidence prefers, so the band grows as far as the responses support and no
further, and the cost follows the coefficients the model holds, not the image size.

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
from threadpoolctl import ThreadpoolController

from closedloop.component import Settings
from closedloop.optimizers._bayes import Sums, fit
from closedloop.optimizers._spectral import Fourier
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register

TAPER_POWER = 4  # sharpness of the prior's soft cutoff at `band`
import os
LOOKAHEAD = float(os.environ.get("LM_LOOKAHEAD", "1.0"))
HELD = float(os.environ.get("LM_HELD", "1.5"))  # the model holds frequencies up to HELD x band (the prior there is exp(-HELD^4/4) ~ 0.28 in sd)
BAND_STEP = 1.25  # factor by which the band moves per step
SLOPE_STEP = 0.5
SLOPES = (0.0, 3.0)
SELECTION_ITERATIONS = 4  # MacKay updates per candidate prior, from the current alpha and beta


class LinearModelSettings(Settings):
    popsize: int = Field(20, ge=2, description="stimuli per generation")
    exploit: int = Field(1, ge=0, description="presentations of the current estimate per generation")
    angle_scale: float = Field(5.0, gt=0, description="exploration angle / posterior angular uncertainty")
    angle_min: float = Field(10.0, gt=0, lt=90, description="smallest exploration angle, degrees")
    angle_max: float = Field(75.0, gt=0, le=90, description="largest exploration angle, degrees")
    memory: float | None = Field(1000.0, gt=0, description="half-life of old trials, presentations; null keeps all")
    prior_samples: int = Field(64, ge=8, description="draws of the space's prior that show which frequencies it renders")
    band: float = Field(4.0, gt=0, description="starting cutoff of the filter prior, cycles per image; moves with the evidence")
    slope: float = Field(1.0, ge=0, description="starting falloff of the filter prior's amplitude, 1/f^slope; moves with the evidence")
    max_dims: int = Field(2000, ge=8, description="most Fourier coefficients the model holds (a fit costs their cube)")


@functools.cache
def _blas():
    return ThreadpoolController()  # finding the BLAS libraries reads /proc: once, not per call


def single_threaded(method):
    """Small dense algebra: BLAS threads only cost, and oversubscribe cores shared with other runs."""

    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        with _blas().limit(limits=1, user_api="blas"):
            return method(*args, **kwargs)

    return wrapper


def supports(space) -> bool:
    """Whether the space can encode stimuli, which this optimizer needs to propose them."""
    try:
        space.encode(space.render(space.sample(np.random.default_rng(0), 1)))
    except NotImplementedError:
        return False
    return True


def default_section(space) -> dict:
    """The optimizer section `evolve` uses when a protocol gives none: this model-based search
    where the space can encode stimuli, else CMA-ES."""
    return {"kind": "linear_model"} if supports(space) else {"kind": "cmaes"}


@register("optimizer", "linear_model")
class LinearModel(Optimizer):
    Config = LinearModelSettings
    status_columns = ("angle", "uncertainty", "noise_sd", "band", "slope")

    @single_threaded
    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        if config.angle_min > config.angle_max:
            raise ValueError(f"angle_min ({config.angle_min}) exceeds angle_max ({config.angle_max})")
        if config.exploit >= config.popsize:
            raise ValueError(f"exploit ({config.exploit}) must be fewer than popsize ({config.popsize})")
        if not supports(space):
            raise ValueError(f"optimizer linear_model needs a space that can encode stimuli; "
                             f"space kind {space.kind!r} cannot")
        self.popsize = config.popsize
        self.random = self.rng(0)
        self.generation = 0
        shape = tuple(space.stimulus_shape)
        self.fourier = Fourier(shape, 2 if space.modality == "image" and len(shape) >= 2 else 1)
        self._learn_space(space.render(space.sample(self.rng(2), config.prior_samples)))
        self.band = config.band / max(self.fourier.spatial)
        self.slope = config.slope
        self.sums = Sums()
        self._hold()
        self.alpha = self.beta = np.nan
        self.posterior = None
        self.presentations, self.next_selection = 0, 2 * self.popsize
        self.angle = float(np.deg2rad(config.angle_max))
        self.uncertainty = np.nan  # until the first fit
        self.best_z, self.best_score = None, -np.inf
        self.first_guess = self._latent(self.rng(3).standard_normal((1, self.k)) * self.prior_sd(self.band, self.slope))[0]

    def _learn_space(self, samples: np.ndarray) -> None:
        """Which Fourier coefficients the space renders, its contrast and its mean stimulus."""
        spatial = tuple(range(samples.ndim - len(self.fourier.spatial), samples.ndim))
        self.offset = samples.mean(axis=(0, *spatial), keepdims=True)[0]  # per channel: gray, mid-range
        deviations = samples - self.offset
        self.contrast_norm = float(np.sqrt(np.mean(np.sum(deviations.reshape(len(samples), -1) ** 2, axis=1))))
        power = np.mean(self.fourier.forward(deviations) ** 2, axis=0)
        self.modes = np.nonzero(power > 1e-9 * power.max())[0]  # sorted by frequency
        radius = self.fourier.radius[self.modes]
        self.radius = np.maximum(radius, radius[radius > 0].min() if np.any(radius > 0) else 1.0)

    def held(self, band: float) -> int:
        """How many coefficients the model holds for a band: those up to HELD x band."""
        k = int(np.searchsorted(self.radius, HELD * band, side="right"))
        return int(np.clip(k, min(8, len(self.modes)), min(self.config.max_dims, len(self.modes))))

    def _hold(self) -> None:
        """Hold the coefficients of the current band (earlier trials had none beyond: see `ask`)."""
        self.k = self.held(self.band)
        self.sums.grow(self.k)

    def prior_sd(self, band: float, slope: float, k: int | None = None) -> np.ndarray:
        r = self.radius[: self.k if k is None else k]
        return r**-slope * np.exp(-0.25 * (r / band) ** TAPER_POWER)

    def features(self, stimuli: np.ndarray) -> np.ndarray:
        """Coefficients of every frequency held so far (the band may have shrunk since)."""
        held = self.sums.k
        top = int(self.modes[held - 1]) + 1
        return self.fourier.forward(stimuli - self.offset, top)[:, self.modes[:held]] / self.contrast_norm

    def _latent(self, coefficients: np.ndarray) -> np.ndarray:
        """Latent vectors of the stimuli with these coefficients, at the space's contrast."""
        full = np.zeros((len(coefficients), int(self.modes[self.k - 1]) + 1))
        full[:, self.modes[: self.k]] = coefficients
        images = self.fourier.inverse(full)
        norms = np.linalg.norm(images.reshape(len(images), -1), axis=1)
        images *= (self.contrast_norm / np.maximum(norms, 1e-300)).reshape(-1, *([1] * (images.ndim - 1)))
        return self.space.encode(images + self.offset)

    @single_threaded
    def ask(self):
        cfg = self.config
        post = self.posterior
        if post is None or not np.any(post.u):
            return self._latent(self.random.standard_normal((self.popsize, self.k)) * self.prior_sd(self.band, self.slope))
        m = post.mean
        direction = m / np.linalg.norm(m)
        n_explore = self.popsize - cfg.exploit
        spread = post.deviations(self.random.standard_normal((n_explore, len(m))),
                                 self.prior_sd(self.band * LOOKAHEAD, self.slope))
        spread -= np.outer(spread @ direction, direction)
        spread /= np.maximum(np.linalg.norm(spread, axis=1, keepdims=True), 1e-300)
        self.uncertainty = float(np.arctan(np.sqrt(np.sum(post.variances())) / np.linalg.norm(m)))
        lo, hi = np.deg2rad(cfg.angle_min), np.deg2rad(cfg.angle_max)
        self.angle = float(np.clip(cfg.angle_scale * self.uncertainty, lo, hi))
        explore = np.cos(self.angle) * direction + np.sin(self.angle) * spread
        return self._latent(np.concatenate([np.repeat(direction[None], cfg.exploit, axis=0), explore]))

    @single_threaded
    def tell(self, z, scores):
        z = np.asarray(z, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        decay = 1.0 if self.config.memory is None else 0.5 ** (len(scores) / self.config.memory)
        self.sums.add(self.features(self.space.render(z)), scores, decay)
        self.presentations += len(scores)
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = z[top].copy(), float(scores[top])
        self.generation += 1
        if not self.sums.informative():
            return
        if self.presentations >= self.next_selection:
            self._select_prior()
            self.next_selection = max(self.presentations * BAND_STEP, self.presentations + 2 * self.popsize)
        self.posterior = self._fit(self.band, self.slope, iterations=2)
        self.alpha, self.beta = self.posterior.next_alpha, self.posterior.next_beta

    def _fit(self, band, slope, iterations, k=None):
        k = self.k if k is None else k
        gram, cross, yy, n = self.sums.centred(k)
        return fit(gram, cross, yy, n, self.prior_sd(band, slope, k), self.alpha, self.beta, iterations)

    def _select_prior(self) -> None:
        """Move the band and the slope one step to the neighbour with the most evidence. Every
        candidate is scored on the same coefficients; a band is a candidate only while it holds
        no more coefficients than there have been presentations."""
        bands = [b for b in (self.band / BAND_STEP, self.band, self.band * BAND_STEP)
                 if b == self.band or self.held(b) <= self.presentations]
        slopes = [s for s in (self.slope - SLOPE_STEP, self.slope, self.slope + SLOPE_STEP) if SLOPES[0] <= s <= SLOPES[1]]
        k = self.held(max(bands))
        self.sums.grow(k)
        scores = {(b, s): self._fit(b, s, SELECTION_ITERATIONS, k).log_evidence for b in bands for s in slopes}
        band, slope = max(scores, key=scores.get)
        self.slope = slope
        if band != self.band:
            self.band = band
            self._hold()

    @single_threaded
    def recommend(self):
        if self.posterior is None or not np.any(self.posterior.u):
            return self.best_z if self.best_z is not None else self.first_guess
        m = self.posterior.mean
        return self._latent((m / np.linalg.norm(m))[None])[0]

    def status(self):
        return {"angle": float(np.rad2deg(self.angle)), "uncertainty": float(np.rad2deg(self.uncertainty)),
                "noise_sd": float(1 / np.sqrt(self.beta)) if self.beta > 0 else np.nan,
                "band": float(self.band * max(self.fourier.spatial)), "slope": float(self.slope)}
