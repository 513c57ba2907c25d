"""Small figure helpers shared by the analyses (matplotlib, no screen needed).

Figures are made without pyplot: it is a third of matplotlib's import time, and its global
figure registry is of no use to a program that only writes files.
"""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imsave  # noqa: F401  (re-exported for the analyses)


def figure(**kwargs) -> Figure:
    return Figure(**kwargs)


def subplots(nrows: int = 1, ncols: int = 1, *, squeeze: bool = True, sharex=False, sharey=False,
             gridspec_kw=None, subplot_kw=None, **figure_kwargs):
    """As pyplot.subplots: (figure, axes)."""
    fig = Figure(**figure_kwargs)
    return fig, fig.subplots(nrows, ncols, squeeze=squeeze, sharex=sharex, sharey=sharey,
                             gridspec_kw=gridspec_kw, subplot_kw=subplot_kw)


def show_image(ax, image, title=None):
    image = np.asarray(image)
    limit = float(np.abs(image).max()) or 1.0
    if image.ndim == 3 and image.shape[0] == 1:  # a one-channel network input: gray, its own range
        ax.imshow(image[0], cmap="gray", vmin=image.min(), vmax=max(image.max(), image.min() + 1e-12))
    elif image.ndim == 3 and image.shape[0] == 3:
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 3:
        lo, hi = image.min(), image.max()
        if lo >= 0 and hi <= 1:  # a network input in [0, 1]: show it as the unit saw it
            lo, hi = 0.0, 1.0
        ax.imshow((image - lo) / ((hi - lo) or 1.0))
    elif image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=-limit, vmax=limit)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=8)


def correlation(a, b) -> float:
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    denominator = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denominator) if denominator > 0 else float("nan")


def save(fig, path):
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return str(path)
