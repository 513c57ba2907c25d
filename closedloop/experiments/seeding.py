"""Seed stimuli for the first generation: natural images from scikit-image, or an earlier run."""

from __future__ import annotations

import numpy as np

from closedloop.errors import ProtocolError

IMAGES = ("astronaut", "camera", "coffee", "cat", "chelsea", "moon", "page", "text", "brick", "grass", "gravel")


def natural_image(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A scikit-image picture cropped square and resized to `shape`: (H, W) as gray luminance
    deviations, or (C, H, W) in [0, 1]."""
    from skimage import color, data, transform

    picture = getattr(data, name)()
    if picture.ndim == 3 and picture.shape[-1] == 4:
        picture = picture[..., :3]
    side = min(picture.shape[:2])
    top, left = (picture.shape[0] - side) // 2, (picture.shape[1] - side) // 2
    picture = picture[top:top + side, left:left + side].astype(np.float64)
    picture /= 255.0 if picture.max() > 1 else 1.0
    size = shape[-2:]
    if len(shape) == 3 and shape[0] == 3:
        rgb = picture if picture.ndim == 3 else np.stack([picture] * 3, axis=-1)
        return np.moveaxis(transform.resize(rgb, size, anti_aliasing=True), -1, 0)
    gray = color.rgb2gray(picture) if picture.ndim == 3 else picture
    gray = transform.resize(gray, size, anti_aliasing=True)
    return gray[None] if len(shape) == 3 else gray - gray.mean()


def seed_latents(settings, space, source: str) -> np.ndarray:
    rows = []
    for name in settings.images:
        if name not in IMAGES:
            raise ProtocolError(f"{source}: seed_stimuli.images: unknown picture {name!r} (one of: {', '.join(IMAGES)})")
        if space.modality != "image":
            raise ProtocolError(f"{source}: seed_stimuli.images: the space renders {space.modality}, not images")
        if not space.can_encode:
            raise ProtocolError(f"{source}: seed_stimuli.images: space kind {space.kind!r} cannot encode images")
        rows.append(space.encode(natural_image(name, space.stimulus_shape)[None])[0])
    if settings.run:
        from closedloop.errors import LogError
        from closedloop.recording import open_run

        try:
            with open_run(settings.run) as run:
                means = run.stimulus_means()
                best = means["mean"].sort_values(ascending=False).index[: settings.count].to_numpy()
                z = run.z[np.sort(best)].astype(np.float64)
        except LogError as exc:
            raise ProtocolError(f"{source}: seed_stimuli.run: {exc}") from None
        if z.shape[1] != space.dim:
            raise ProtocolError(f"{source}: seed_stimuli.run: {settings.run} searched a space of dimension "
                                f"{z.shape[1]}, this one has {space.dim}")
        rows.extend(z)
    return np.array(rows, dtype=np.float64).reshape(-1, space.dim)
