"""Inputs a network reads: images (Pillow), `.npy` arrays or random data, normalised by a
mean and std per channel. Used by `run`, `train`, `evaluate` and int8 calibration."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base.diagnostics import fail
from .kinds import format_shape

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


def load_image(path: Path, shape: tuple[int, ...], mean, std) -> np.ndarray:
    """An image as C x H x W float32 in [0, 1], resized and converted to the channel count.
    16-bit images are scaled by 65535 and float images kept as they are (never clipped to
    8 bits first); images above Pillow's decompression-bomb limit are refused."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3:
        raise fail(
            "bad-input",
            f"{path}: the network takes a flat vector of {shape[0]}, not an image",
            "give a .npy array instead",
        )
    channels, height, width = shape
    mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(channels)
    if mode is None:
        raise fail(
            "bad-input",
            f"{path}: the network takes {channels} channels; images give 1, 3 or 4",
            "give a .npy array instead",
        )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                array = _image_array(image, mode, width, height)
                changed = _changes(image, channels, width, height)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise fail(
            "bad-input",
            f"{path}: the image is too large to decode safely (above {Image.MAX_IMAGE_PIXELS:,} pixels)",
            "resize it first",
        ) from None
    except UnidentifiedImageError:
        raise fail(
            "bad-input",
            f"{path}: not a readable image (not a format Pillow knows: PNG, JPEG, BMP, GIF, TIFF, WebP, ...)",
        ) from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or damaged: say what Pillow said
        reason = (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__
        raise fail("bad-input", f"{path}: not a readable image ({reason[:200]})") from None
    if changed:  # said once per kind of change, not once per image (warnings' default)
        warnings.warn(f"{changed}, as the network takes {format_shape(shape)}", stacklevel=2)
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return normalise(array, mean, std)


def _changes(image, channels: int, width: int, height: int) -> str:
    """What loading does to an image to fit the input: '' when nothing."""
    bands = len(image.getbands())
    done = []
    if image.size != (width, height):
        done.append(f"resized from {image.size[0]}x{image.size[1]} to {width}x{height}")
    if bands != channels:
        done.append(f"converted from {bands} channel{'s' * (bands != 1)} ({image.mode}) to {channels}")
    return f"images are {' and '.join(done)}" if done else ""


# Pillow modes with more than 8 bits per sample -> the value of full intensity.
_WIDE_MODES = {"I;16": 65535.0, "I;16L": 65535.0, "I;16B": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def _image_array(image, mode: str, width: int, height: int) -> np.ndarray:
    """H x W (x C) float32 in [0, 1]. `convert("L")` would clip a 16-bit image at 255."""
    from PIL import Image

    if image.mode not in _WIDE_MODES:
        converted = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(converted, np.float32) / 255.0
    plane = np.asarray(image, np.float32) / _WIDE_MODES[image.mode]
    resized = Image.fromarray(plane, "F").resize((width, height), Image.Resampling.BILINEAR)
    gray = np.asarray(resized, np.float32)
    if mode == "L":
        return gray
    planes = [gray] * 3 + ([np.ones_like(gray)] if mode == "RGBA" else [])
    return np.stack(planes, axis=-1)


def normalise(array: np.ndarray, mean, std) -> np.ndarray:
    """(x - mean) / std per channel, for one example or a batch of them: the channel axis
    is the third from the end for images (C x H x W), the last for flat vectors."""
    after = 2 if array.ndim >= 3 else 0  # axes after the channel axis
    channels = array.shape[-1 - after]
    for name, values in (("--mean", mean), ("--std", std)):
        if values is not None and len(values) not in (1, channels):
            raise fail(
                "bad-input",
                f"{name} has {len(values)} values; the input has {channels} channels",
                "give one value, or one per channel",
            )
    if mean is not None:
        array = array - np.asarray(mean, np.float32).reshape(-1, *([1] * after))
    if std is not None:
        array = array / np.asarray(std, np.float32).reshape(-1, *([1] * after))
    return array.astype(np.float32)


def load_array(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    """A `.npy` of one example (shape) or a batch (N, *shape)."""
    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except (ValueError, OSError, EOFError) as exc:
        raise fail("bad-input", f"{path}: not a readable .npy array ({str(exc)[:200]})") from None
    if not isinstance(array, np.ndarray):  # an .npz under a .npy name
        raise fail("bad-input", f"{path}: not a .npy array (an .npz archive?)")
    if array.dtype.kind not in "biuf":
        raise fail("bad-input", f"{path}: holds {array.dtype}, not real numbers")
    if array.ndim == 0:
        raise fail("bad-input", f"{path}: holds a single number, expected an array of {format_shape(shape)}")
    from .base.resources import shortfall

    problem = shortfall(array.size * 4)
    if problem:
        raise fail("bad-input", f"{path}: {array.size:,} values {problem}")
    if tuple(array.shape) == shape:
        return array[None].astype(np.float32)
    if array.ndim == len(shape) + 1 and tuple(array.shape[1:]) == shape:
        return array.astype(np.float32)
    fmt = format_shape(shape)
    channels = ""
    if len(shape) == 3 and array.ndim in (3, 4) and array.shape[-3] != shape[0]:
        channels = f" (it has {array.shape[-3]} channels, the network takes {shape[0]})"
    raise fail(
        "bad-input",
        f"{path}: the array is {format_shape(array.shape)}, expected {fmt} or Nx{fmt}{channels}",
    )


def load_inputs(
    paths: list[str], shape: tuple[int, ...], batch: int, seed: int = 0, mean=None, std=None
) -> np.ndarray:
    """Stack every input into one batch; random data in [0, 1) when there are none."""
    if not paths:
        return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
    stacked = _stack(paths, shape, mean, std)
    bad = int(np.count_nonzero(~np.isfinite(stacked)))
    if bad:
        warnings.warn(f"the input holds {bad:,} NaN or infinite values; the outputs will too", stacklevel=2)
    return stacked


def _stack(paths: list[str], shape: tuple[int, ...], mean, std) -> np.ndarray:
    arrays = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise fail("bad-input", f"{path}: no such file")
        if path.suffix.lower() == ".npy":
            arrays.append(normalise(load_array(path, shape), mean, std))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            arrays.append(load_image(path, shape, mean, std)[None])
        else:
            raise fail(
                "bad-input",
                f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}) or a .npy array",
            )
    return np.concatenate(arrays)
