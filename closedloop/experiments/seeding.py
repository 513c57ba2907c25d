"""Stimuli to start from: scikit-image's pictures or the user's image files, recordings (WAV), or
the best stimuli of an earlier run.

A picture is cropped to a centred square and resized to the neuron's image, whatever its size; a
recording is made mono, resampled to the neuron's rate and cut to its window. A relative path is
read beside the protocol file. Anything unreadable is refused in one line naming the file.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from closedloop.errors import ProtocolError

IMAGES = ("astronaut", "camera", "coffee", "cat", "chelsea", "moon", "page", "text", "brick", "grass", "gravel")
MAX_FILE_BYTES = 200_000_000  # a picture or recording larger than this is no stimulus
MAX_PIXELS = 100_000_000
MAX_SECONDS = 3600.0


def beside(path: str, protocol_source: str) -> Path:
    """A path from a protocol: absolute as it is, relative beside the protocol file."""
    given = Path(path).expanduser()
    return given if given.is_absolute() else Path(protocol_source).parent / given


def _checked_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise ProtocolError(f"{what}: no such file {str(path)!r}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ProtocolError(f"{what}: {str(path)!r} is {size / 1e6:.0f} MB; a stimulus file holds at most "
                            f"{MAX_FILE_BYTES / 1e6:.0f} MB")
    return path


def read_picture(path: Path, what: str) -> np.ndarray:
    """An image file as (H, W) gray or (H, W, 3) RGB values in [0, 1]."""
    import warnings

    from PIL import Image, ImageOps, UnidentifiedImageError

    _checked_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit answers, in one line
            with Image.open(path) as opened:
                if opened.width * opened.height > MAX_PIXELS:
                    raise ProtocolError(f"{what}: {str(path)!r} has {opened.width} x {opened.height} pixels; at most "
                                        f"{MAX_PIXELS:.0e} are read")
                image = ImageOps.exif_transpose(opened)  # a phone's photo, upright as it is shown
                if image.mode.startswith("I"):  # 16-bit gray
                    array = np.asarray(image, dtype=np.float64) / 65535.0
                elif image.mode == "F":
                    array = np.asarray(image, dtype=np.float64)
                elif image.mode in ("1", "L", "LA"):
                    array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
                else:
                    array = np.asarray(image.convert("RGB"), dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise ProtocolError(f"{what}: cannot read {str(path)!r} as an image ({_first_line(exc)})") from None
    if not np.isfinite(array).all():
        raise ProtocolError(f"{what}: {str(path)!r} holds NaN or Inf pixels")
    return np.clip(array, 0.0, 1.0)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def picture(name: str, shape: tuple[int, ...], protocol_source: str = ".", what: str = "picture") -> np.ndarray:
    """A scikit-image picture by name, or an image file, cropped square and resized to `shape`:
    (H, W) as gray luminance deviations, or (C, H, W) in [0, 1]."""
    if name in IMAGES:
        from skimage import data

        image = getattr(data, name)().astype(np.float64)
        image /= 255.0 if image.max() > 1 else 1.0
    else:
        path = beside(name, protocol_source)
        if not path.is_file():
            raise ProtocolError(f"{what}: unknown picture {name!r}: neither a scikit-image picture "
                                f"({', '.join(IMAGES)}) nor a file ({str(path)!r} does not exist)")
        image = read_picture(path, what)
    return fit_picture(image, shape)


def fit_picture(image: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    from skimage import color, transform

    if image.ndim == 3 and image.shape[-1] == 4:
        image = image[..., :3]
    side = min(image.shape[:2])
    top, left = (image.shape[0] - side) // 2, (image.shape[1] - side) // 2
    image = image[top:top + side, left:left + side]
    size = shape[-2:]
    if len(shape) == 3 and shape[0] == 3:
        rgb = image if image.ndim == 3 else np.stack([image] * 3, axis=-1)
        return np.moveaxis(transform.resize(rgb, size, anti_aliasing=True), -1, 0)
    gray = color.rgb2gray(image) if image.ndim == 3 else image
    gray = transform.resize(gray, size, anti_aliasing=True)
    return gray[None] if len(shape) == 3 else gray - gray.mean()


def natural_image(name: str, shape: tuple[int, ...]) -> np.ndarray:
    """A scikit-image picture (see `picture`)."""
    return picture(name, shape)


def read_recording(path: Path, what: str) -> tuple[int, np.ndarray]:
    """A WAV file as (sample rate, mono float waveform in [-1, 1])."""
    import warnings

    from scipy.io import wavfile

    _checked_file(path, what)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", wavfile.WavFileWarning)  # a truncated or odd file is refused, not guessed
            try:
                rate, data = wavfile.read(str(path), mmap=True)
            except ValueError as exc:  # 24-bit samples cannot be memory-mapped
                if "mmap" not in str(exc):
                    raise
                rate, data = wavfile.read(str(path))
    except (ValueError, OSError, EOFError, wavfile.WavFileWarning) as exc:
        raise ProtocolError(f"{what}: cannot read {str(path)!r} as a WAV file ({_first_line(exc)})") from None
    if data.ndim not in (1, 2) or data.size == 0 or rate <= 0:
        raise ProtocolError(f"{what}: {str(path)!r} holds no sound (shape {data.shape}, rate {rate} Hz)")
    if len(data) / rate > MAX_SECONDS:
        raise ProtocolError(f"{what}: {str(path)!r} lasts {len(data) / rate:.0f} s; at most {MAX_SECONDS:.0f} s are read")
    scale = {np.dtype(np.uint8): None, np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31}
    if data.dtype == np.uint8:
        wave = (np.asarray(data, dtype=np.float64) - 128.0) / 128.0
    elif data.dtype in scale:
        wave = np.asarray(data, dtype=np.float64) / scale[data.dtype]
    else:
        wave = np.asarray(data, dtype=np.float64)
    if not np.isfinite(wave).all():
        raise ProtocolError(f"{what}: {str(path)!r} holds NaN or Inf samples")
    return int(rate), np.clip(wave.mean(axis=1) if wave.ndim == 2 else wave, -1.0, 1.0)


def recording(name: str, sample_rate: int, n_samples: int, offset: float, protocol_source: str = ".",
              what: str = "recording") -> np.ndarray:
    """`n_samples` of a WAV file at `sample_rate`, from `offset` seconds on (silence after its end)."""
    from scipy.signal import resample_poly

    rate, wave = read_recording(beside(name, protocol_source), what)
    duration = len(wave) / rate
    if offset >= duration:
        raise ProtocolError(f"{what}: offset {offset} s is past the end of {name!r} ({duration:.2f} s long)")
    start = int(round(offset * rate))
    wave = wave[start:start + int(np.ceil(n_samples * rate / sample_rate)) + 1]
    if rate != sample_rate:
        divisor = np.gcd(int(rate), int(sample_rate))
        wave = resample_poly(wave, sample_rate // divisor, rate // divisor)
    window = np.zeros(n_samples)
    window[:min(n_samples, len(wave))] = wave[:n_samples]
    return np.clip(window, -1.0, 1.0)


def seed_latents(settings, space, source: str) -> np.ndarray:
    rows = []
    for name in settings.images:
        if space.modality != "image":
            raise ProtocolError(f"{source}: seed_stimuli.images: the space renders {space.modality}, not images")
        if not space.can_encode:
            raise ProtocolError(f"{source}: seed_stimuli.images: space kind {space.kind!r} cannot encode images")
        image = picture(name, space.stimulus_shape, source, f"{source}: seed_stimuli.images")
        rows.append(space.encode(image[None])[0])
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
