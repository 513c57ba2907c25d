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
import os

import numpy as np
from pydantic import Field
from threadpoolctl import ThreadpoolController

from closedloop.component import Settings
from closedloop.optimizers._bayes import Sums, best_on_sphere, fit
from closedloop.optimizers._spectral import Fourier, Smoother
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register

TAPER_POWER = 4  # sharpness of the starting prior's soft cutoff at `band`
HOLD = 1e-3  # a coefficient is held while its prior variance is at least this fraction of the largest
PROBE_ANGLE = float(os.environ.get("LM_PROBE", "60"))  # while the filter's direction is this uncertain (degrees), a quarter of each generation are gratings
GRATING_ANGLE = float(os.environ.get("LM_GANGLE", "45"))
SMOOTH = float(os.environ.get("LM_SMOOTH", "1.0"))  # frequency bins over which neighbouring frequencies share a prior variance


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
    status_columns = ("angle", "uncertainty", "noise_sd", "dims")

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
        band = config.band / max(self.fourier.spatial)
        self.variance = self.radius ** (-2 * config.slope) * np.exp(-0.5 * (self.radius / band) ** TAPER_POWER)
        self.variance /= self.variance.max()
        self.energy_variance = np.ones(len(self.modes))  # squared coefficients: flat over frequency to start
        self.store = np.zeros(0, dtype=int)  # the coefficients the sums hold (positions in self.modes), in order added
        self.slot = np.full(len(self.modes), -1)  # each coefficient's place in the store
        self.smooth = Smoother(self.fourier, self.modes, SMOOTH)
        self.sums = Sums()
        self._hold()
        self.alpha, self.beta = np.array([np.nan, np.nan]), np.nan  # prior precisions (linear, energy), noise
        self.posterior = None
        self.presentations = 0
        self.angle = float(np.deg2rad(config.angle_max))
        self.uncertainty = np.nan  # until the first fit
        self.best_z, self.best_score = None, -np.inf
        self.first_guess = self._latent(self.rng(3).standard_normal((1, self.k)) * self.prior_sd(), self.held)[0]

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
        # the other coefficient (sine of a cosine, ...) of each coefficient's frequency, -1 if none
        cells = self.fourier.cell[self.modes]
        order = np.argsort(cells, kind="stable")
        same = cells[order][1:] == cells[order][:-1]
        self.pair = np.full(len(self.modes), -1)
        self.pair[order[1:][same]] = order[:-1][same]
        self.pair[order[:-1][same]] = order[1:][same]

    def _hold(self) -> None:
        """Hold the coefficients whose prior variance is not negligible (at most max_dims, the
        largest). Trials so far had none on coefficients newly held: see `ask`."""
        held = np.nonzero(self.variance >= HOLD * self.variance.max())[0]
        if len(held) > self.config.max_dims:
            held = np.sort(held[np.argsort(-self.variance[held], kind="stable")[: self.config.max_dims]])
        new = held[self.slot[held] < 0]
        if len(new):
            self.slot[new] = np.arange(len(self.store), len(self.store) + len(new))
            self.store = np.concatenate([self.store, new])
            self.sums.grow(2 * len(self.store))
        self.held, self.k = held, len(held)
        # the sums interleave each stored coefficient c and its energy c^2
        self.columns = np.concatenate([2 * self.slot[held], 2 * self.slot[held] + 1])

    def prior_sd(self) -> np.ndarray:
        return np.sqrt(self.variance[self.held])

    def features(self, stimuli: np.ndarray) -> np.ndarray:
        """Each coefficient held so far (some may no longer be) and its square, interleaved."""
        columns = self.modes[self.store]
        c = self.fourier.forward(stimuli - self.offset, int(columns.max()) + 1)[:, columns] / self.contrast_norm
        return np.stack([c, c**2], axis=2).reshape(len(c), -1)

    def _latent(self, coefficients: np.ndarray, held: np.ndarray) -> np.ndarray:
        """Latent vectors of the stimuli with these coefficients (of the `held` modes), at the space's contrast."""
        columns = self.modes[held]
        full = np.zeros((len(coefficients), int(columns.max()) + 1))
        full[:, columns] = coefficients
        images = self.fourier.inverse(full)
        norms = np.linalg.norm(images.reshape(len(images), -1), axis=1)
        images *= (self.contrast_norm / np.maximum(norms, 1e-300)).reshape(-1, *([1] * (images.ndim - 1)))
        return self.space.encode(images + self.offset)

    @single_threaded
    def ask(self):
        cfg = self.config
        post = self.posterior
        if post is None or not np.linalg.norm(post.u) > 0 or not np.all(np.isfinite(self.centre)):
            return self._latent(self.random.standard_normal((self.popsize, self.k)) * self.prior_sd(), self.held)
        k = len(self.fitted_held)
        direction = self.centre
        n_probe = self.popsize // 4 if self.uncertainty > np.deg2rad(PROBE_ANGLE) else 0
        n_explore = self.popsize - cfg.exploit - n_probe
        spread = post.deviations(self.random.standard_normal((n_explore, 2 * k)), slice(0, k))
        spread -= np.outer(spread @ direction, direction)
        spread /= np.maximum(np.linalg.norm(spread, axis=1, keepdims=True), 1e-300)
        lo, hi = np.deg2rad(cfg.angle_min), np.deg2rad(cfg.angle_max)
        self.angle = float(np.clip(cfg.angle_scale * self.uncertainty, lo, hi))
        if self.on_grating:  # a cell that needs a grating to answer answers little far from one
            self.angle = min(self.angle, np.deg2rad(GRATING_ANGLE))
        explore = np.cos(self.angle) * direction + np.sin(self.angle) * spread
        # gratings of random phase, by Thompson sampling: the best under one posterior draw each
        draws = post.mean + post.deviations(self.random.standard_normal((n_probe, 2 * k)))
        phases = self.random.uniform(0, 2 * np.pi, n_probe)
        probes = np.stack([self._grating(int(np.argmax(self._grating_scores(d[:k], d[k:]))), phase)
                           for d, phase in zip(draws, phases)]) if n_probe else np.zeros((0, k))
        stimuli = np.concatenate([np.repeat(direction[None], cfg.exploit, axis=0), explore, probes])
        return self._latent(stimuli, self.fitted_held)

    def _grating_scores(self, g, a):
        """Expected response to a grating at each held coefficient's frequency (energy part averaged
        over phase, linear part at the best phase)."""
        p = self.partner
        paired = p >= 0
        linear, energy = np.abs(g), a.copy()
        linear[paired] = np.hypot(g[paired], g[p[paired]])
        energy[paired] = 0.5 * (a[paired] + a[p[paired]])
        return linear + energy

    def _grating(self, j: int, phase: float) -> np.ndarray:
        c = np.zeros(len(self.partner))
        if self.partner[j] >= 0:
            c[j], c[self.partner[j]] = np.cos(phase), np.sin(phase)
        else:
            c[j] = 1.0 if np.cos(phase) >= 0 else -1.0
        return c

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
        gram, cross, yy, n = self.sums.centred(self.columns)
        sd = np.sqrt(np.concatenate([self.variance[self.held], self.energy_variance[self.held]]))
        groups = np.repeat([0, 1], self.k)
        self.posterior = fit(gram, cross, yy, n, sd, groups, self.alpha, self.beta, iterations=2)
        self.fitted_held = self.held
        where = np.full(len(self.modes), -1)
        where[self.held] = np.arange(self.k)
        self.partner = np.where(self.pair[self.held] >= 0, where[np.maximum(self.pair[self.held], 0)], -1)
        self.alpha, self.beta = self.posterior.next_alpha, self.posterior.next_beta
        self._centre()
        self._learn_prior()

    def _centre(self) -> None:
        """The linear model's best stimulus, or, while the filter's direction is unknown, the grating
        (at the linear model's best phase) where that is expected to do better."""
        k = self.k
        mean = self.posterior.mean
        g, a = mean[:k], mean[k:]
        self.uncertainty = float(np.arctan(np.sqrt(np.sum(self.posterior.variances()[:k]))
                                           / max(np.linalg.norm(g), 1e-300)))
        self.centre = g / max(np.linalg.norm(g), 1e-300)
        self.on_grating = False
        if self.uncertainty <= np.deg2rad(PROBE_ANGLE):
            return
        j = int(np.argmax(self._grating_scores(g, a)))
        p = self.partner[j]
        grating = self._grating(j, np.arctan2(g[p], g[j]) if p >= 0 else (0.0 if g[j] >= 0 else np.pi))
        if g @ grating + a @ grating**2 > g @ self.centre + a @ self.centre**2:
            self.centre, self.on_grating = grating, True

    def _learn_prior(self) -> None:
        """One EM step on the prior variances, smoothed over the frequency plane: each held
        coefficient's posterior second moment over its prior variance is the factor by which EM
        would change that variance; the factors are averaged with the neighbouring frequencies'
        (coefficients no trial informs have factor 1). So the prior stays smooth, shrinks where the
        responses show no filter, and grows into neighbouring frequencies where they show one.
        The same for the energy coefficients' prior."""
        post, k = self.posterior, self.k
        second = post.mean**2 + post.variances()
        learned, scales = [], []
        for variance, alpha, moment in ((self.variance, post.alpha[0], second[:k]),
                                        (self.energy_variance, post.alpha[1], second[k:])):
            factor = np.ones(len(self.modes))
            factor[self.held] = moment / (variance[self.held] / alpha)
            variance = variance * self.smooth(factor)
            top = variance.max()
            if not (np.all(np.isfinite(variance)) and top > 0):
                return
            # the shape is learned here, the scale (alpha) by MacKay's update in `fit`
            learned.append(np.maximum(variance / top, 1e-12))
            scales.append(top)
        self.variance, self.energy_variance = learned
        self.alpha = self.alpha * np.array(scales)
        self._hold()

    @single_threaded
    def recommend(self):
        if self.posterior is None or not np.linalg.norm(self.posterior.u) > 0 or not np.all(np.isfinite(self.centre)):
            return self.best_z if self.best_z is not None else self.first_guess
        return self._latent(self.centre[None], self.fitted_held)[0]

    def status(self):
        return {"angle": float(np.rad2deg(self.angle)), "uncertainty": float(np.rad2deg(self.uncertainty)),
                "noise_sd": float(1 / np.sqrt(self.beta)) if self.beta > 0 else np.nan,
                "dims": float(self.k)}
