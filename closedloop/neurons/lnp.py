"""The textbook linear-nonlinear-Poisson (LNP) cell, in numpy: fast enough for benchmarks and sweeps.

stimulus -> cosine similarity with a unit-norm receptive field (contrast-invariant linear stage)
-> static nonlinearity rate = baseline + r_max * max(0, cos)^exponent -> Poisson spike count in
a window of T. With the defaults this is exactly the optimizer benchmark's cell
(docs/benchmarks.md): 16x16 Gabor, 30 deg, 0.15 cycles/px, sigma 3 px, 50 Hz, T = 0.2 s.

Other cells for checking that an optimizer is not tuned to one receptive field:
  field: dog     centre-surround difference of Gaussians
  field: random  smooth random field (1/f^2 noise under a Gaussian window), fixed by field_seed
  model: energy  complex cell: sqrt(cos(w_even, s)^2 + cos(w_odd, s)^2), a quadrature Gabor pair
With `reference_size` (e.g. 16) the receptive field keeps its shape relative to the image at any
`size`: the benchmark's 16x16 cells scaled to 64x64 or 128x128 (a random field is drawn anew at
that size, with the same statistics and its window scaled).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from closedloop.component import Settings
from closedloop.neurons.base import Neuron, Trials, interleaved_order
from closedloop.neurons.front_ends.base import gabor, unit_norm
from closedloop.neurons.front_ends.gabor import GaborSettings
from closedloop.registry import register


class LNPSettings(Settings):
    size: int = Field(16, ge=2, le=512, description="image side in pixels")
    reference_size: int | None = Field(None, ge=2, le=512, description="front_end lengths (sigma, centre, 1/spatial "
                                       "frequency) are for an image of this side, scaled to `size`; null: pixels of `size`")
    field: str = Field("gabor", pattern="^(gabor|dog|random)$", description="receptive field shape")
    front_end: GaborSettings = GaborSettings()
    model: str = Field("simple", pattern="^(simple|energy)$", description="simple: one filter; energy: quadrature pair")
    surround_ratio: float = Field(2.5, gt=1, le=100, description="dog: surround sigma / centre sigma (centre = front_end.sigma / 2)")
    field_seed: int = Field(0, ge=0, le=2**32 - 1, description="random: which random field")
    r_max: float = Field(50.0, gt=0, le=10_000, description="rate at the optimum above baseline, Hz")
    baseline: float = Field(0.0, ge=0, le=10_000, description="spontaneous rate, Hz")
    exponent: float = Field(1.0, gt=0, le=100, description="power of the rectified similarity")
    window: float = Field(200.0, ge=1, le=100_000, description="counting window T, ms")
    interval: float = Field(100.0, ge=0, le=1e6, description="blank interval between presentations, ms")
    noise: str = Field("poisson", pattern="^(poisson|none)$", description="none: counts are their expected value")


def difference_of_gaussians(size: int, sigma_center: float, surround_ratio: float) -> np.ndarray:
    """Zero-mean, unit-norm centre-surround field: ON centre, OFF surround, centred."""
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    r2 = (x - c) ** 2 + (y - c) ** 2
    sigma_surround = sigma_center * surround_ratio

    def gauss(s):
        g = np.exp(-r2 / (2 * s**2))
        total = g.sum()
        return g / total if total > 0 else g  # no pixel sees it: unit_norm says so

    field = gauss(sigma_center) - gauss(sigma_surround)
    field -= field.mean()
    return unit_norm(field)


def random_smooth_field(size: int, seed: int, sigma: float) -> np.ndarray:
    """Zero-mean, unit-norm 1/f^2 (amplitude) noise under a Gaussian window of `sigma` pixels."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 7919]))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(size), np.fft.fftfreq(size), indexing="ij"))
    spectrum = np.where(f > 0, 1.0 / np.maximum(f, 1e-12) ** 2, 0.0)
    noise = np.fft.ifft2(np.fft.fft2(rng.standard_normal((size, size))) * spectrum).real
    c = (size - 1) / 2
    y, x = np.mgrid[0:size, 0:size].astype(np.float64)
    field = noise * np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * sigma**2))
    field -= field.mean()
    return unit_norm(field)


def scaled(front_end: GaborSettings, size: int, reference_size: int | None) -> GaborSettings:
    """The front end's lengths given for a reference_size image, in pixels of a size image."""
    if reference_size is None or reference_size == size:
        return front_end
    k = size / reference_size
    center = None if front_end.center is None else tuple((c + 0.5) * k - 0.5 for c in front_end.center)
    return front_end.model_copy(update={"sigma": front_end.sigma * k, "center": center,
                                        "spatial_frequency": front_end.spatial_frequency / k})


def unit(field: np.ndarray) -> np.ndarray:
    field = field - field.mean()
    return unit_norm(field)


@register("neuron", "lnp")
class LNPCell(Neuron):
    """Linear receptive field -> rectified power nonlinearity -> Poisson spike count."""

    Config = LNPSettings
    state_columns = ("rate",)
    state_units = {"rate": "Hz"}
    response_unit = "spikes"

    def __init__(self, config: LNPSettings, seed: int):
        super().__init__(config, seed)
        n, fe = config.size, scaled(config.front_end, config.size, config.reference_size)
        self.stimulus_shape = (n, n)
        if config.field == "gabor":
            fields = [gabor(n, fe.orientation, fe.spatial_frequency, fe.sigma, fe.phase, fe.center)]
            if config.model == "energy":
                fields.append(gabor(n, fe.orientation, fe.spatial_frequency, fe.sigma, fe.phase + 90, fe.center))
        else:
            if config.model == "energy":
                raise ValueError("model 'energy' needs field 'gabor' (a quadrature pair)")
            if config.field == "dog":
                fields = [difference_of_gaussians(n, fe.sigma / 2, config.surround_ratio)]
            else:
                fields = [random_smooth_field(n, config.field_seed, fe.sigma)]
        self.filters = np.stack([unit(f).reshape(-1) for f in fields])
        self.receptive_field = self.filters[0].reshape(n, n)
        self.clock = 0.0
        self.calls = 0

    def ground_truth(self):
        truth = {"receptive_field": self.receptive_field}
        if len(self.filters) > 1:
            truth["quadrature_field"] = self.filters[1].reshape(self.stimulus_shape)
        return truth

    def similarity(self, stimuli: np.ndarray) -> np.ndarray:
        """Contrast-invariant drive in [0, 1]: rectified cosine (simple) or quadrature energy."""
        flat = np.asarray(stimuli, dtype=np.float64).reshape(len(stimuli), -1)
        norms = np.linalg.norm(flat, axis=1)
        cos = np.divide(flat @ self.filters.T, norms[:, None], out=np.zeros((len(flat), len(self.filters))),
                        where=norms[:, None] > 0)
        if self.config.model == "energy":
            return np.sqrt(np.sum(cos**2, axis=1))
        return np.maximum(cos[:, 0], 0.0)

    def rate(self, stimuli: np.ndarray) -> np.ndarray:
        cfg = self.config
        return cfg.baseline + cfg.r_max * self.similarity(stimuli) ** cfg.exponent

    def clean_response(self, stimuli: np.ndarray) -> np.ndarray:
        """Expected rate / r_max: 1.0 at the optimum (plus baseline / r_max)."""
        return self.rate(stimuli) / self.config.r_max

    def present(self, stimuli: np.ndarray, repeats: int) -> Trials:
        stimuli = np.asarray(stimuli, dtype=np.float64)
        cfg, n = self.config, len(stimuli)
        rng = self.rng(self.calls)
        self.calls += 1
        rate = np.repeat(self.rate(stimuli)[:, None], repeats, axis=1)
        expected = rate * cfg.window / 1000.0
        counts = rng.poisson(expected) if cfg.noise == "poisson" else expected
        slot = interleaved_order(n, repeats, rng)
        period = (cfg.window + cfg.interval) / 1000.0
        t_start = self.clock + slot * period
        self.clock += n * repeats * period
        return Trials(responses=counts, t_start=t_start, clean=rate / cfg.r_max, state={"rate": rate})

    def get_state(self):
        return {"clock": np.array([self.clock]), "calls": np.array([self.calls])}

    def set_state(self, state):
        self.clock = float(state["clock"][0])
        self.calls = int(state["calls"][0])
