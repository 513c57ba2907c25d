"""A drawing prior: a few pen strokes of fixed width and ink on a plain background.

Nothing in it is learned from images. A latent vector is `strokes` pen strokes, each a smooth
curve shaped by `points` control points (a clamped B-spline, which rounds off the corners between
them, or a Catmull-Rom spline through every one); a control point's coordinate is the standard
normal CDF of its latent number, so z ~ N(0, I) puts control points uniformly on the page, inset
by `margin` (one number, or one for left and right and one for top and bottom: a tall page). The
pen draws every curve with a round nib `width` of the image side wide, in ink of level `ink` on a
background of level `background`, rendered at `supersample` times the resolution and averaged
down to the unit's pixels (the coverage of each pixel, as a scanner sees a drawing). Overlapping strokes do not darken: coverage is that of the
union of the strokes. The prior's strength is how few strokes and points a drawing may have,
the pen's width and the page, which the search cannot change: what it draws stays a line drawing.

The rendering is written once in torch (differentiable: the nib's edge is a steep sigmoid of
the distance to the curve, a quarter of a fine pixel wide), so white-box gradient ascent can
draw too. The space cannot encode images (a drawing is not a linear function of its latent).
"""

from __future__ import annotations

from typing import Annotated, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from closedloop.component import Level, Settings
from closedloop.registry import register
from closedloop.spaces.base import StimulusSpace

Margin = Annotated[float, Field(ge=0, lt=0.5)]
SAMPLES = 12  # curve samples per control point: the polyline the distances are measured to
CHUNK_VALUES = 2**22  # pixel-segment pairs per rendering pass (each holds a few float64 numbers)


class StrokeSettings(Settings):
    size: int = Field(8, ge=2, le=128, description="image side in pixels, as the unit takes it")
    channels: Literal[1, 3] = Field(1, description="1 (grey) or 3 (RGB, the same in each)")
    strokes: int = Field(2, ge=1, le=8, description="pen strokes per drawing")
    points: int = Field(4, ge=2, le=12, description="control points per stroke")
    curve: Literal["bspline", "catmull_rom"] = Field("bspline", description="the pen's path: a B-spline rounds "
                                                     "its corners, a Catmull-Rom spline passes through every point")
    width: float = Field(0.12, gt=0, le=0.5, description="the pen's width, as a fraction of the image side")
    margin: Margin | tuple[Margin, Margin] = Field(0.1, description="control points keep this fraction of the side "
                                                   "from the edges: one number, or [left and right, top and bottom]")
    ink: Level = Field(1.0, description="the ink's level")
    background: Level = Field(0.0, description="the background's level")
    supersample: int = Field(4, ge=1, le=8, description="fine pixels per image pixel and axis, averaged down")
    value_range: tuple[Level, Level] = Field((0.0, 1.0), description="the unit's input range")

    @model_validator(mode="after")
    def _levels(self):
        low, high = self.value_range
        if not low < high:
            raise ValueError(f"value_range {list(self.value_range)} must be [low, high] with low < high")
        for name in ("ink", "background"):
            if not low <= getattr(self, name) <= high:
                raise ValueError(f"{name} ({getattr(self, name)}) must lie in value_range {list(self.value_range)}")
        if self.ink == self.background:
            raise ValueError(f"ink and background are both {self.ink}: nothing would be seen")
        if self.size * self.supersample > 256:
            raise ValueError(f"size x supersample ({self.size * self.supersample}) must be at most 256")
        return self


def curve_matrix(points: int, curve: str) -> np.ndarray:
    """(samples, points): the weights of each control point at each sample of the curve, both
    curves being linear in their control points. "catmull_rom" passes through every control
    point (end points repeated); "bspline" is the clamped uniform B-spline of degree up to 3,
    which starts and ends on the end points and rounds off the corners between them."""
    t = np.linspace(0, 1, (points - 1) * SAMPLES + 1)
    if curve == "bspline":
        from scipy.interpolate import BSpline

        degree = min(3, points - 1)
        knots = np.r_[[0.0] * degree, np.linspace(0, 1, points - degree + 1), [1.0] * degree]
        return BSpline.design_matrix(t, knots, degree).toarray()
    segment = np.minimum((t * (points - 1)).astype(int), points - 2)  # the spline segment of each sample
    u = t * (points - 1) - segment
    weights = 0.5 * np.stack([-u + 2 * u**2 - u**3, 2 - 5 * u**2 + 3 * u**3,
                              u + 4 * u**2 - 3 * u**3, -u**2 + u**3], axis=1)  # of points segment-1 .. segment+2
    matrix = np.zeros((len(t), points))
    for j in range(4):
        np.add.at(matrix, (np.arange(len(t)), np.clip(segment - 1 + j, 0, points - 1)), weights[:, j])
    return matrix


@register("space", "strokes")
class StrokeSpace(StimulusSpace):
    Config = StrokeSettings
    modality = "image"
    can_encode = False
    differentiable = True
    scale_invariant = False

    def __init__(self, config, seed):
        super().__init__(config, seed)
        self.stimulus_shape = (config.channels, config.size, config.size)
        self.value_range = tuple(config.value_range)
        self.dim = config.strokes * config.points * 2
        fine = config.size * config.supersample
        centres = (torch.arange(fine, dtype=torch.float64) + 0.5) / fine
        y, x = torch.meshgrid(centres, centres, indexing="ij")
        self._grid = torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)  # (fine pixels, 2), (x, y) in [0, 1]
        self._edge = 0.25 / fine  # the nib's soft edge: a quarter of a fine pixel
        self._curve = torch.as_tensor(curve_matrix(config.points, config.curve))

    def curves(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) latents -> (n, strokes, samples, 2) points of each stroke, (x, y) in [0, 1]."""
        cfg = self.config
        points = z.reshape(len(z), cfg.strokes, cfg.points, 2)
        margin = torch.tensor(np.broadcast_to(cfg.margin, 2), dtype=z.dtype)  # (x, y)
        points = margin + (1 - 2 * margin) * torch.special.ndtr(points)
        return torch.einsum("mp,nspc->nsmc", self._curve.to(z.dtype), points)

    def coverage(self, z: torch.Tensor) -> torch.Tensor:
        """(n, dim) -> (n, size, size): the fraction of each pixel the pen's ink covers."""
        fine = self.config.size * self.config.supersample
        # the distances of every fine pixel to every segment are the memory: bound them per chunk
        chunk = max(1, int(CHUNK_VALUES // (fine * fine * (len(self._curve) - 1) * self.config.strokes)))
        return torch.cat([self._coverage(part) for part in torch.split(z, chunk)]) if len(z) else \
            z.new_zeros((0, self.config.size, self.config.size))

    def _coverage(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        curves = self.curves(z)
        start, end = curves[:, :, :-1], curves[:, :, 1:]
        start, end = start.flatten(1, 2), end.flatten(1, 2)  # (n, segments, 2)
        along = end - start
        length2 = (along * along).sum(-1).clamp_min(1e-12)  # (n, segments)
        offset = self._grid.to(z.dtype)[None, :, None, :] - start[:, None]  # (n, pixels, segments, 2)
        t = ((offset * along[:, None]).sum(-1) / length2[:, None]).clamp(0, 1)
        gap = offset - t[..., None] * along[:, None]
        distance = (gap * gap).sum(-1).add(1e-12).sqrt().amin(dim=-1)  # (n, pixels): to the nearest stroke
        ink = torch.sigmoid((cfg.width / 2 - distance) / self._edge)
        fine = cfg.size * cfg.supersample
        ink = ink.reshape(len(z), 1, fine, fine)
        return torch.nn.functional.avg_pool2d(ink, cfg.supersample)[:, 0]

    def render_torch(self, z: torch.Tensor) -> torch.Tensor:
        cfg = self.config
        images = cfg.background + (cfg.ink - cfg.background) * self.coverage(z)
        return images[:, None].expand(len(z), cfg.channels, cfg.size, cfg.size)

    def render(self, z):
        with torch.no_grad():
            return self.render_torch(torch.as_tensor(np.asarray(z, dtype=np.float64))).numpy().copy()
