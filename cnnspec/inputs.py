"""Inputs a network reads: images (Pillow), WAV audio (the standard library's `wave`) for
1-D networks, folders of frames for 3-D ones, `.npy` arrays or random data, normalised by a
mean and std per channel. Used by `run`, `train`, `evaluate` and int8 calibration."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from .base.diagnostics import fail
from .kinds import format_shape

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


AUDIO_SUFFIXES = {".wav"}


def load_image(path: Path, shape: tuple[int, ...], mean, std, resize: bool = True) -> np.ndarray:
    """An image as C x H x W float32 in [0, 1], resized and converted to the channel count
    (with `resize` False, an image of another size or channel count is refused instead).
    16-bit images are scaled by 65535 and float images kept as they are (never clipped to
    8 bits first); images above Pillow's decompression-bomb limit are refused."""
    from PIL import Image, UnidentifiedImageError

    if len(shape) != 3:
        what = {1: f"a flat vector of {shape[0]}", 2: f"a sequence of {format_shape(shape)} (CxL)"}
        raise fail(
            "bad-input",
            f"{path}: the network takes {what.get(len(shape), f'a volume of {format_shape(shape)} (CxDxHxW)')}, "
            "not an image",
            {2: "give a .wav or a .npy array", 4: "give a folder of its frames, or a .npy array"}.get(
                len(shape), "give a .npy array instead"
            ),
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
                changed = _changes(image, channels, width, height)
                if changed and not resize:
                    raise fail(
                        "bad-input",
                        f"{path}: {changed.replace('images are', 'the image would be', 1)} to fit the "
                        f"network's {format_shape(shape)} input, and --no-resize refuses that",
                        "resize or convert it yourself, or leave out --no-resize",
                    )
                array = _image_array(image, mode, width, height)
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
    return normalise(array, mean, std, shape)


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


def _full_scale(image) -> float:
    """The sample value of full intensity: 65535 for 16-bit samples; 2^31 - 1 for a TIFF of
    32-bit integer samples (Pillow's mode I holds both, and signed: that is its range)."""
    if image.mode == "I":
        tags = getattr(image, "tag_v2", None)
        bits = tags.get(258) if tags is not None else None  # BitsPerSample
        if bits and (bits[0] if isinstance(bits, tuple) else bits) == 32:
            return float(2**31 - 1)
    return _WIDE_MODES[image.mode]


def _image_array(image, mode: str, width: int, height: int) -> np.ndarray:
    """H x W (x C) float32 in [0, 1]. `convert("L")` would clip a 16-bit image at 255."""
    from PIL import Image

    if image.mode not in _WIDE_MODES:
        converted = image.convert(mode).resize((width, height), Image.Resampling.BILINEAR)
        return np.asarray(converted, np.float32) / 255.0
    plane = np.asarray(image, np.float32) / _full_scale(image)
    resized = Image.fromarray(plane, "F").resize((width, height), Image.Resampling.BILINEAR)
    gray = np.asarray(resized, np.float32)
    if mode == "L":
        return gray
    planes = [gray] * 3 + ([np.ones_like(gray)] if mode == "RGBA" else [])
    return np.stack(planes, axis=-1)


def normalise(array: np.ndarray, mean, std, shape: tuple[int, ...]) -> np.ndarray:
    """(x - mean) / std per channel, for one example or a batch of them, of the network's
    input `shape`: the channel axis is the first of the shape (C x L, C x H x W, C x D x H x
    W), the only one of a flat vector."""
    after = len(shape) - 1  # axes after the channel axis
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
    from .base.files import damaged_array_file_errors

    try:
        array = np.load(path, allow_pickle=False, mmap_mode="r")
    except damaged_array_file_errors() as exc:
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


def load_wav(path: Path, shape: tuple[int, ...], mean, std, resample: bool = False) -> np.ndarray:
    """A PCM WAV file as C x L float32 in [-1, 1): one input channel per WAV channel. A clip
    of another length is refused, or with `resample` stretched to L by linear interpolation."""
    import wave

    if len(shape) != 2:
        raise fail(
            "bad-input",
            f"{path}: a WAV file is channels x samples, the input of a 1-D network (CxL); this "
            f"network takes {format_shape(shape)}",
            "give a .npy array instead",
        )
    channels, length = shape
    try:
        with wave.open(str(path), "rb") as clip:
            count, width, rate, frames = (
                clip.getnchannels(),
                clip.getsampwidth(),
                clip.getframerate(),
                clip.getnframes(),
            )
            _bounded(path, frames * count * 8)
            raw = clip.readframes(frames)
    except (wave.Error, EOFError, OSError) as exc:
        reason = str(exc)[:200] or type(exc).__name__
        raise fail("bad-input", f"{path}: not a readable PCM WAV file ({reason})") from None
    if count != channels:
        raise fail(
            "bad-input",
            f"{path}: the clip has {count} channel{'s' * (count != 1)}, the network takes {channels}",
            "each WAV channel is one input channel: convert the clip (e.g. to mono) first",
        )
    samples = _pcm(raw, width).reshape(-1, count).T
    have = samples.shape[1]
    if have == 0:
        raise fail("bad-input", f"{path}: the clip holds no samples", "give a clip with sound in it")
    if have != length:
        if not resample:
            raise fail(
                "bad-input",
                f"{path}: {have:,} samples ({have / max(rate, 1):.3g} s at {rate:,} Hz), the network takes {length:,}",
                f"cut or pad the clip to {length:,} samples, or pass --resample to stretch it to them",
            )
        positions = np.arange(length) * (have / length)
        samples = np.stack([np.interp(positions, np.arange(have), channel) for channel in samples])
        warnings.warn(
            f"{path.name}: resampled from {have:,} to {length:,} samples ({rate:,} Hz to "
            f"{round(rate * length / max(have, 1)):,} Hz, linear interpolation)",
            stacklevel=2,
        )
    return normalise(samples.astype(np.float32), mean, std, shape)


def _pcm(raw: bytes, width: int) -> np.ndarray:
    """PCM samples as float32 in [-1, 1): 8-bit WAV is unsigned, wider samples signed."""
    if width == 1:
        return (np.frombuffer(raw, np.uint8).astype(np.float32) - 128.0) / 128.0
    if width == 3:  # 24-bit: widen each little-endian triple to int32
        triples = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        value = triples[:, 0] | (triples[:, 1] << 8) | (triples[:, 2] << 16)
        return (np.where(value >= 1 << 23, value - (1 << 24), value) / float(1 << 23)).astype(np.float32)
    kind = {2: np.int16, 4: np.int32}.get(width)
    if kind is None:
        raise fail("bad-input", f"{width * 8}-bit samples; WAV files of 8, 16, 24 or 32 bits are read")
    return (np.frombuffer(raw, kind).astype(np.float32) / float(np.iinfo(kind).max + 1)).astype(np.float32)


def _bounded(path: Path, size: int) -> None:
    from .base.resources import shortfall

    problem = shortfall(size)
    if problem:
        raise fail("bad-input", f"{path}: {size:,} bytes {problem}")


def load_frames(folder: Path, shape: tuple[int, ...], mean, std) -> np.ndarray:
    """A folder of images, in name order, as the C x D x H x W volume of a 3-D network (video
    frames, or the slices of a scan): D images, each resized as `run` resizes images."""
    if len(shape) != 4:
        raise fail(
            "bad-input",
            f"{folder}: is a folder; a folder of frames is the input of a 3-D network (CxDxHxW), "
            f"and this network takes {format_shape(shape)}",
            "give a file: an image, a .npy array" + (" or a .wav" if len(shape) == 2 else ""),
        )
    frames = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if len(frames) != shape[1]:
        raise fail(
            "bad-input",
            f"{folder}: {len(frames)} frames ({', '.join(sorted(IMAGE_SUFFIXES))}), the network takes {shape[1]}",
            f"give a folder of exactly {shape[1]} images; they are read in name order",
        )
    plane = (shape[0], *shape[2:])
    return np.stack([load_image(frame, plane, mean, std) for frame in frames], axis=1)


def load_inputs(
    paths: list[str],
    shape: tuple[int, ...],
    batch: int,
    seed: int = 0,
    mean=None,
    std=None,
    resample: bool = False,
    resize: bool = True,
) -> np.ndarray:
    """Stack every input into one batch; random data in [0, 1) when there are none."""
    if not paths:
        return np.random.default_rng(seed).random((batch, *shape), dtype=np.float32)
    stacked = _stack(paths, shape, mean, std, resample, resize)
    bad = int(np.count_nonzero(~np.isfinite(stacked)))
    if bad:
        warnings.warn(f"the input holds {bad:,} NaN or infinite values; the outputs will too", stacklevel=2)
    return stacked


def _stack(
    paths: list[str], shape: tuple[int, ...], mean, std, resample: bool = False, resize: bool = True
) -> np.ndarray:
    arrays = []
    for name in paths:
        path = Path(name)
        if path.is_dir():  # the frames of a 3-D network's input (an error for the others)
            arrays.append(load_frames(path, shape, mean, std)[None])
            continue
        if not path.is_file():
            raise fail("bad-input", f"{path}: no such file")
        if path.suffix.lower() in AUDIO_SUFFIXES:
            arrays.append(load_wav(path, shape, mean, std, resample)[None])
        elif path.suffix.lower() == ".npy":
            arrays.append(normalise(load_array(path, shape), mean, std, shape))
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            arrays.append(load_image(path, shape, mean, std, resize)[None])
        else:
            raise fail(
                "bad-input",
                f"{path}: expected an image ({', '.join(sorted(IMAGE_SUFFIXES))}), a .wav, a folder of "
                "frames (3-D networks) or a .npy array",
            )
    return np.concatenate(arrays)
