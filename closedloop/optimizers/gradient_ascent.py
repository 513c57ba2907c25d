"""White-box reference: gradient ascent on a space's latent, using the unit's own gradient.

With the priors of the deep-visualisation literature (Simonyan et al. 2014; Yosinski et al.
2015; Mahendran & Vedaldi 2016; Olah et al. 2017): L2 decay of the latent, a Gaussian blur of
the image every N steps, a total-variation penalty, a Fourier penalty growing with frequency,
and random jitter (the gradient is taken at a randomly shifted image). Ascent directly in the
`color_fourier` space is itself a 1/f prior. For sounds the same priors act along time (a shift
in samples, differences between successive samples, power times frequency squared).

It is an ask/tell optimizer like the others: ask() returns the current latent(s), which the
loop presents and logs; tell() takes `steps` gradient steps from them. The gradient d unit /
d stimulus comes from `neuron.gradient` (never a presentation), and is carried back to the
latent through the space's differentiable `render_torch`; the steps are Adam's.
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field
from scipy.ndimage import gaussian_filter

from closedloop.component import Settings
from closedloop.optimizers.base import Optimizer
from closedloop.registry import register


class GradientAscentSettings(Settings):
    popsize: int = Field(1, ge=1, le=10_000, description="independent starts from the space's prior, ascended side by side")
    steps: int = Field(1, ge=1, le=10_000, description="gradient steps between two presentations")
    learning_rate: float = Field(0.05, gt=0, le=100, description="Adam step, in units of the prior's standard deviation")
    l2_decay: float = Field(0.0, ge=0, lt=1, description="latent <- (1 - l2_decay) latent after every step")
    blur_every: int = Field(0, ge=0, le=10_000, description="blur the image every this many steps (0: never)")
    blur_sigma: float = Field(0.5, gt=0, le=1000, description="Gaussian blur, pixels")
    tv_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the mean absolute difference of neighbouring pixels")
    fourier_weight: float = Field(0.0, ge=0, le=1e6, description="weight of the image power times frequency squared")
    jitter: int = Field(0, ge=0, le=100_000, description="largest random shift of the image whose gradient is taken, "
                                                          "pixels (of a sound: samples)")


def total_variation(images: torch.Tensor, axes: int = 2) -> torch.Tensor:
    """Per image: mean absolute difference between vertical and horizontal neighbours (per
    sound, `axes` = 1: between successive samples)."""
    if axes == 1:
        return (images[..., 1:] - images[..., :-1]).abs().flatten(1).mean(1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(1).mean(1)
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(1).mean(1)
    return dy + dx


def frequency_weighted_power(images: torch.Tensor, axes: int = 2) -> torch.Tensor:
    """Per image: sum over frequencies of |F(k)|^2 |k|^2 (cycles/pixel), per pixel (per sound,
    `axes` = 1: cycles/sample, per sample)."""
    if axes == 1:
        n = images.shape[-1]
        spectrum = torch.fft.rfft(images - images.mean(dim=-1, keepdim=True), norm="ortho")
        f = torch.fft.rfftfreq(n, dtype=images.dtype)
        return (spectrum.abs() ** 2 * f**2).flatten(1).sum(1) / n
    h, w = images.shape[-2:]
    spectrum = torch.fft.rfft2(images - images.mean(dim=(-2, -1), keepdim=True), norm="ortho")
    fy = torch.fft.fftfreq(h, dtype=images.dtype)[:, None]
    fx = torch.fft.rfftfreq(w, dtype=images.dtype)[None, :]
    return (spectrum.abs() ** 2 * (fy**2 + fx**2)).flatten(1).sum(1) / (h * w)


@register("optimizer", "gradient_ascent")
class GradientAscent(Optimizer):
    Config = GradientAscentSettings
    learns_from_any_stimulus = False  # its probes / its ascent start from its own point
    proposes_given = True  # ... which inject() sets
    status_columns = ("gradient_norm", "ascent_value")

    def __init__(self, config, seed, space, neuron=None):
        super().__init__(config, seed, space, neuron)
        if neuron is None or not neuron.has_gradient:
            kind = getattr(neuron, "kind", None)
            raise ValueError(f"gradient_ascent needs a neuron that exposes its gradient (e.g. kind dnn); "
                             f"neuron kind {kind!r} does not")
        if not space.differentiable:
            raise ValueError(f"gradient_ascent needs a differentiable space (e.g. color_pixels, color_fourier); "
                             f"space kind {space.kind!r} has no render_torch")
        if config.blur_every and not space.can_encode:
            raise ValueError(f"blur_every: space kind {space.kind!r} cannot encode a blurred image")
        self.neuron = neuron
        self.axes = 1 if space.modality == "audio" else 2  # the stimulus axes the priors act along
        self._centre = None if space.centre is None else torch.as_tensor(space.centre)
        self.popsize = config.popsize
        self.random = self.rng(0)
        start = space.sample(self.random, config.popsize)
        self.z = torch.tensor(start, dtype=torch.float64, requires_grad=True)
        self.adam = torch.optim.Adam([self.z], lr=config.learning_rate)
        self.step_count = 0
        self.best_z, self.best_score = start[0].copy(), -np.inf
        self.gradient_norm, self.ascent_value = 0.0, float("nan")

    def inject(self, z):
        """Ascend from these latents (the first rows of the population) instead of prior draws."""
        z = np.asarray(z, dtype=np.float64)[: self.popsize]
        with torch.no_grad():
            self.z[: len(z)] = torch.from_numpy(z)
        self.adam = torch.optim.Adam([self.z], lr=self.config.learning_rate)

    def ask(self):
        return self.z.detach().numpy().copy()

    def tell(self, z, scores):
        scores = np.asarray(scores, dtype=np.float64)
        top = int(np.argmax(scores))
        if scores[top] > self.best_score:
            self.best_z, self.best_score = np.asarray(z)[top].copy(), float(scores[top])
        for _ in range(self.config.steps):
            self._step()

    def _step(self):
        cfg = self.config
        self.adam.zero_grad()
        images = self.space.render_torch(self.z)
        shown = images
        if cfg.jitter:
            dy, dx = (int(s) for s in self.random.integers(-cfg.jitter, cfg.jitter + 1, size=2))
            shifts, dims = ((dx,), (-1,)) if self.axes == 1 else ((dy, dx), (-2, -1))
            shown = torch.roll(images, shifts=shifts, dims=dims)
        values, grads = self.neuron.gradient(shown.detach().numpy())
        # a surrogate whose gradient through the rendering is the unit's gradient, minus the priors
        objective = (shown * torch.from_numpy(grads).to(shown.dtype)).sum()
        change = images if self._centre is None else images - self._centre
        if cfg.tv_weight:
            objective = objective - cfg.tv_weight * total_variation(change, self.axes).sum()
        if cfg.fourier_weight:
            objective = objective - cfg.fourier_weight * frequency_weighted_power(change, self.axes).sum()
        (-objective).backward()
        self.adam.step()
        self.step_count += 1
        with torch.no_grad():
            if cfg.l2_decay:
                self.z.mul_(1.0 - cfg.l2_decay)
            if cfg.blur_every and self.step_count % cfg.blur_every == 0:
                rendered = self.space.render(self.z.detach().numpy())
                centre = 0.0 if self.space.centre is None else self.space.centre
                sigma = (0,) * (rendered.ndim - self.axes) + (cfg.blur_sigma,) * self.axes
                blurred = centre + gaussian_filter(rendered - centre, sigma=sigma, mode="nearest")
                encoded = self.space.encode(blurred)
                if self.space.scale_invariant:
                    # keep each latent's norm: the rendering ignores it, Adam's step size does not
                    norm = np.linalg.norm(encoded, axis=1, keepdims=True)
                    old = self.z.detach().norm(dim=1, keepdim=True).numpy()
                    encoded = np.divide(encoded * old, norm, out=encoded, where=norm > 0)
                self.z.copy_(torch.from_numpy(encoded))
        self.gradient_norm = float(np.sqrt(np.mean(grads**2)))
        self.ascent_value = float(np.mean(values))

    def recommend(self):
        return self.best_z

    def status(self):
        return {"gradient_norm": self.gradient_norm, "ascent_value": self.ascent_value}
