"""Model-based search: a Bayesian linear model of the response, refitted on every trial so far.

The experimenter's generic assumption is the linear-nonlinear cell: the response grows with the
projection <v, s> of the stimulus onto an unknown filter v. Every tell adds its trials to the
sufficient statistics of a Bayesian linear regression of score on stimulus, so no presentation
is ever thrown away. The filter lives in the stimulus's own Fourier coordinates (one FFT per
stimulus, _spectral.py), where the prior is diagonal: a generic image prior, smooth over the
frequency plane, that starts as 1/f^slope below a soft cutoff `band` on the frequencies the
space can render and is then learned from the responses (one EM step per generation, each
coefficient's factor averaged with its neighbours in frequency): it narrows onto the
frequencies and orientations where the responses show a filter and grows into neighbouring ones
where they show more, so a fine receptive field is reached without a wide prior slowing down the
smooth ones. The model holds only the coefficients whose prior is not negligible, so its cost
follows the filter, not the image size. The prior's scale and the noise level are set by
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

A cell that stays at its baseline for every broadband stimulus (a complex cell that needs a
strong drive: its energy is even in the stimulus, so no linear model finds a slope from there)
is found the way an experimenter finds it, with gratings: while the filter's direction is still
unknown, a quarter of each generation are gratings of random phase, chosen by Thompson sampling
among the held frequencies (a bandit on each frequency's mean response), and when the best
grating answers more (lower confidence bound) than the linear model expects of its own estimate,
the search is centred on that grating, at a narrower angle, until the linear model, fed by the
trials around it, takes over. For such a cell (still no direction after 5 generations) the angle
is also capped where the responses far from the estimate fall to the floor: an expansive
response informs most at a narrower angle (`_design`).

Needs a space that can `encode` stimuli (pixels, fourier). It never looks at the neuron.
"""

from __future__ import annotations

import functools

import numpy as np
from pydantic import Field
from threadpoolctl import ThreadpoolController

from closedloop.component import Settings
from closedloop.optimizers._bayes import Sums, fit
from closedloop.optimizers._gratings import GratingBandit
from closedloop.optimizers._spectral import Fourier, Smoother
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register

TAPER_POWER = 4  # sharpness of the starting prior's soft cutoff at `band`
HOLD = 1e-3  # a coefficient is held while its prior variance is at least this fraction of the largest
SMOOTH = 1.0  # frequency bins over which neighbouring frequencies share a prior variance
PROBE_ANGLE = 60.0  # while the filter's direction is this uncertain (degrees), gratings are probed
PROBE_SHARE = 4  # one stimulus in PROBE_SHARE is a grating then
GRATING_ANGLE = 45.0  # widest exploration angle around a grating
SILENT_AFTER = 5  # generations of broadband stimuli after which a filter's direction should show


class LinearModelSettings(Settings):
    popsize: int = Field(20, ge=2, le=100_000, description="stimuli per generation")
    exploit: int = Field(1, ge=0, le=10_000, description="presentations of the current estimate per generation")
    angle_scale: float = Field(5.0, gt=0, le=1000, description="exploration angle / posterior angular uncertainty")
    angle_min: float = Field(10.0, gt=0, lt=90, description="smallest exploration angle, degrees")
    angle_max: float = Field(75.0, gt=0, le=90, description="largest exploration angle, degrees")
    memory: float | None = Field(1000.0, gt=0, le=1e9, description="half-life of old trials, presentations; null keeps all")
    prior_samples: int = Field(64, ge=8, le=100_000, description="draws of the space's prior that show which frequencies it renders")
    band: float = Field(4.0, gt=0, le=10_000, description="starting cutoff of the filter prior, cycles per image; then learned")
    slope: float = Field(1.0, ge=0, le=10, description="starting falloff of the filter prior's amplitude, 1/f^slope; then learned")
    max_dims: int = Field(1000, ge=8, le=100_000, description="most Fourier coefficients the model holds (a fit costs their cube)")
    gratings: bool = Field(True, description="probe gratings while the filter's direction is unknown")


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


def default_section(space_class, neuron_class=None) -> dict:
    """The optimizer section `evolve` uses when a protocol gives none: this model-based search
    where the space (a space kind's class) can encode stimuli and the neuron's responses follow a
    receptive field (`Neuron.model_based_search`), else CMA-ES: on units of deep networks it is far
    ahead (docs/benchmarks.md, "Network units"), with a bold first step where only the latent's
    direction matters."""
    if space_class.can_encode and getattr(neuron_class, "model_based_search", True):
        return {"kind": "linear_model"}
    return {"kind": "cmaes", **({"sigma0": 10.0} if space_class.scale_invariant else {})}


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
        if not space.can_encode:
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
        self.variance /= self.variance.max()  # the prior's shape; its scale is 1 / alpha
        self.smooth = Smoother(self.fourier, self.modes, SMOOTH)
        self.store = np.zeros(0, dtype=int)  # the coefficients the sums hold (positions in self.modes), in order added
        self.slot = np.full(len(self.modes), -1)  # each coefficient's place in the store
        self.sums = Sums()
        self._hold()
        self.alpha = self.beta = np.nan
        self.posterior = None
        self.angle = float(np.deg2rad(config.angle_max))
        self.uncertainty = np.nan  # until the first fit
        self.on_grating = self.silent = False  # silent: broadband stimuli left it at its floor
        # the response far from the estimate relative to at it: where a silent cell is expansive,
        # exploration moves closer (see `_design`)
        self.angle_cap, self.baseline = float(np.deg2rad(config.angle_max)), None
        self.near, self.far = np.zeros(2), np.zeros(2)  # faded (sum, count) of exploit and explore responses
        self.bandit = GratingBandit(len(self.modes))  # arms: the first coefficient of each frequency
        self.asked, self.asked_arms = None, None
        self.best_z, self.best_score = None, -np.inf
        self.first_guess = self._latent(self.rng(3).standard_normal((1, self.k)) * self.prior_sd(), self.held)[0]

    def _learn_space(self, samples: np.ndarray) -> None:
        """Which Fourier coefficients the space renders, its contrast and its mean stimulus."""
        spatial = tuple(range(samples.ndim - len(self.fourier.spatial), samples.ndim))
        self.offset = samples.mean(axis=(0, *spatial), keepdims=True)[0]  # per channel: gray, mid-range
        deviations = samples - self.offset
        self.contrast_norm = float(np.sqrt(np.mean(np.sum(deviations.reshape(len(samples), -1) ** 2, axis=1))))
        power = np.mean(self.fourier.forward(deviations) ** 2, axis=0)
        # a space of d latent numbers spans (about) d coefficients: its d strongest (the rest, as
        # the harmonics of a squashing function, is not the space's to move independently)
        strongest = np.argsort(-power, kind="stable")[: self.space.dim]
        self.modes = np.sort(strongest[power[strongest] > 1e-9 * power.max()])  # sorted by frequency
        radius = self.fourier.radius[self.modes]
        self.radius = np.maximum(radius, radius[radius > 0].min() if np.any(radius > 0) else 1.0)
        # each coefficient's frequency (a grating's arm): the first of its cosine and sine
        cells = self.fourier.cell[self.modes]
        first = {}
        self.arm = np.array([first.setdefault(c, i) for i, c in enumerate(cells)])
        self.pair = np.full(len(self.modes), -1)  # the other coefficient of the same frequency, if any
        other = np.nonzero(self.arm != np.arange(len(self.modes)))[0]
        self.pair[other], self.pair[self.arm[other]] = self.arm[other], other

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
            self.sums.grow(len(self.store))
        self.held, self.k = held, len(held)

    def prior_sd(self) -> np.ndarray:
        return np.sqrt(self.variance[self.held])

    def features(self, stimuli: np.ndarray) -> np.ndarray:
        """Coefficients of every frequency held so far (some may no longer be)."""
        columns = self.modes[self.store]
        return self.fourier.forward(stimuli - self.offset, int(columns.max()) + 1)[:, columns] / self.contrast_norm

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
        if post is None or not np.linalg.norm(post.u) > 0:
            z = self._latent(self.random.standard_normal((self.popsize, self.k)) * self.prior_sd(), self.held)
            self.asked, self.asked_arms, self.asked_role = z, np.full(len(z), -1), np.full(len(z), 3)
            return z
        held = self.fitted_held
        probing = cfg.gratings and self.uncertainty > np.deg2rad(PROBE_ANGLE)
        n_probe = self.popsize // PROBE_SHARE if probing else 0
        n_explore = self.popsize - cfg.exploit - n_probe
        direction = self.centre
        spread = post.deviations(self.random.standard_normal((n_explore, len(held))))
        spread -= np.outer(spread @ direction, direction)
        spread /= np.maximum(np.linalg.norm(spread, axis=1, keepdims=True), 1e-300)
        lo, hi = np.deg2rad(cfg.angle_min), np.deg2rad(cfg.angle_max)
        self.angle = float(np.clip(cfg.angle_scale * self.uncertainty, lo, min(hi, self.angle_cap)))
        if self.on_grating:  # a cell that needs a grating to answer answers little far from one
            self.angle = min(self.angle, np.deg2rad(GRATING_ANGLE))
        explore = np.cos(self.angle) * direction + np.sin(self.angle) * spread
        arms = self.bandit.thompson(self._arms(), n_probe, self.random, *self._totals())
        probes = [self._grating(arm, phase) for arm, phase in zip(arms, self.random.uniform(0, 2 * np.pi, n_probe))]
        stimuli = np.concatenate([np.repeat(direction[None], cfg.exploit, axis=0), explore, *([probes] if probes else [])])
        self.asked = self._latent(stimuli, held)
        centre_arm = self.centre_arm if self.on_grating else -1
        self.asked_arms = np.concatenate([np.full(cfg.exploit, centre_arm), np.full(n_explore, -1), arms]).astype(int)
        self.asked_role = np.repeat([0, 1, 2], [cfg.exploit, n_explore, n_probe])  # exploit, explore, grating
        return self.asked

    # -- gratings: a bandit over the held frequencies, for cells silent to broadband stimuli

    def _arms(self) -> np.ndarray:
        return np.unique(self.arm[self.fitted_held])

    def _totals(self):
        return self.sums.n, self.sums.sy, self.sums.syy

    def _grating(self, arm: int, phase: float) -> np.ndarray:
        """A grating of the arm's frequency and the given phase, as coefficients of the fitted held set."""
        held = self.fitted_held
        c = np.zeros(len(held))
        for mode, value in ((arm, np.cos(phase)), (self.pair[arm], np.sin(phase))):
            where = np.searchsorted(held, mode)
            if mode >= 0 and where < len(held) and held[where] == mode:
                c[where] = value if self.pair[arm] >= 0 and self.pair[arm] in held and arm in held else np.copysign(1.0, value)
        return c / np.linalg.norm(c)

    @single_threaded
    def tell(self, z, scores):
        z = np.asarray(z, dtype=np.float64)
        scores = np.asarray(scores, dtype=np.float64)
        decay = 1.0 if self.config.memory is None else 0.5 ** (len(scores) / self.config.memory)
        self.sums.add(self.features(self.space.render(z)), scores, decay)
        self.bandit.fade(decay)
        if self.asked is not None and self.asked.shape == z.shape:
            shown = np.all(self.asked == z, axis=1)  # as asked, not put in their place
            mine = shown & (self.asked_arms >= 0)  # gratings
            self.bandit.credit(self.asked_arms[mine], scores[mine])
            self._design(scores, shown)
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = z[top].copy(), float(scores[top])
        self.generation += 1
        if not self.sums.informative():
            return
        index = self.slot[self.held]
        gram, cross, yy, n = self.sums.centred(index)
        self.posterior = fit(gram, cross, yy, n, self.prior_sd(), self.alpha, self.beta, iterations=2)
        self.fitted_held = self.held
        self.alpha, self.beta = self.posterior.next_alpha, self.posterior.next_beta
        self._centre(self.sums.sc[index] / n, self.sums.sy / n)
        self._learn_prior()

    def _design(self, scores, shown) -> None:
        """Cap the exploration angle so that stimuli far from the estimate still answer: for a
        response f(cos) = A cos^p over a floor, the angle that informs most about the filter gives
        explored / estimate responses (above the floor) of about 0.2-0.3 for p >= 3 (tan^2 = 2 / (p - 2)),
        and a wide angle for p <= 2, a linear cell's 75 degrees giving 0.26. Only for a cell found
        silent to broadband stimuli, whose floor is then the mean response to the first, random, ones
        (a cell that answers random stimuli has no floor there)."""
        role = self.asked_role
        if self.baseline is None:
            first = shown & (role == 3)
            self.baseline = float(np.mean(scores[first])) if np.any(first) else None
            return
        self.near, self.far = 0.8 * self.near, 0.8 * self.far  # the last few generations
        for faded, which in ((self.near, shown & (role == 0)), (self.far, shown & (role == 1))):
            faded += [scores[which].sum(), which.sum()]
        if min(self.near[1], self.far[1]) == 0 or self.on_grating or not self.silent:
            return
        near, far = self.near[0] / self.near[1] - self.baseline, self.far[0] / self.far[1] - self.baseline
        if near <= 0:
            return
        step = 1.1 if far > 0.3 * near else 0.9 if far < 0.2 * near else 1.0
        lo, hi = np.deg2rad(self.config.angle_min), np.deg2rad(self.config.angle_max)
        self.angle_cap = float(np.clip(self.angle_cap * step, lo, hi))

    def _centre(self, mean_features: np.ndarray, mean_score: float) -> None:
        """The linear model's best stimulus, or, while the filter's direction is unknown, the best
        grating (at the linear model's best phase) if it answers more than the model expects of that."""
        g = self.posterior.mean
        norm = max(float(np.linalg.norm(g)), 1e-300)
        self.uncertainty = float(np.arctan(np.sqrt(np.sum(self.posterior.variances())) / norm))
        self.centre, self.on_grating = g / norm, False
        if not (self.config.gratings and self.uncertainty > np.deg2rad(PROBE_ANGLE)):
            return
        if self.generation == SILENT_AFTER:  # still no direction: broadband stimuli leave the cell silent
            self.silent = True
        arms = self._arms()
        mean, sd = self.bandit.posterior(arms, *self._totals())
        best = int(np.argmax(mean - sd))
        expected = mean_score + g @ (self.centre - mean_features)
        if self.bandit.pulls[arms[best]] > 0 and mean[best] - sd[best] > expected:
            arm = arms[best]
            c = self._grating(arm, 0.0)
            s = self._grating(arm, np.pi / 2)
            self.centre = self._grating(arm, float(np.arctan2(g @ s, g @ c)))
            self.centre_arm, self.on_grating, self.silent = arm, True, True

    def _learn_prior(self) -> None:
        """One EM step on the prior's shape, smoothed over the frequency plane: each held
        coefficient's posterior second moment over its prior variance is the factor by which EM
        would change that variance; the factors are averaged with the neighbouring frequencies'
        (coefficients no trial informs have factor 1). So the prior stays smooth, shrinks where the
        responses show no filter, and grows into neighbouring frequencies where they show one.
        The prior's scale stays MacKay's alpha."""
        post = self.posterior
        factor = np.ones(len(self.modes))
        factor[self.held] = (post.mean**2 + post.variances()) / (self.variance[self.held] / post.alpha)
        variance = self.variance * self.smooth(factor)
        top = variance.max()
        if not (np.all(np.isfinite(variance)) and top > 0):
            return
        self.variance = np.maximum(variance / top, 1e-12)
        self.alpha *= top
        self._hold()

    @single_threaded
    def recommend(self):
        if self.posterior is None or not np.linalg.norm(self.posterior.u) > 0:
            return self.best_z if self.best_z is not None else self.first_guess
        return self._latent(self.centre[None], self.fitted_held)[0]

    def status(self):
        return {"angle": float(np.rad2deg(self.angle)), "uncertainty": float(np.rad2deg(self.uncertainty)),
                "noise_sd": float(1 / np.sqrt(self.beta)) if self.beta > 0 else np.nan,
                "dims": float(self.k)}
