"""Training data that need not fit in memory, and the preprocessing kept with a model.

- A folder of class folders is listed, not loaded: a PyTorch Dataset reads each image
  when its batch needs it, in `--workers` processes. A broken image is reported by its
  path, and skipped or fatal (`--on-bad-image`), never a traceback from a worker.
- An `.npz` is memory-mapped where numpy stores it uncompressed (`numpy.savez`), so only
  the batches in use are read.
- Preprocessing: per-channel mean and std (or the `imagenet` preset), and training-time
  augmentation — a random crop after zero padding and a random horizontal flip — drawn
  from the seed, the epoch and the example's index, so the same seed gives the same
  batches with any number of workers, and a resumed run continues the same stream.
  Mean and std go into the exported model's metadata; `cnnspec run` applies them.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..base.diagnostics import fail
from ..base.records import record
from ..inputs import IMAGE_SUFFIXES

PRESETS = {"imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))}
META_MEAN, META_STD = "preprocess_mean", "preprocess_std"


@record
class Preprocess:
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    crop_pad: int = 0  # augmentation: zero padding, then a random crop back to the input size
    flip: bool = False  # augmentation: a random horizontal flip

    @property
    def augments(self) -> bool:
        return self.crop_pad > 0 or self.flip

    def metadata(self) -> dict[str, str]:
        """What a model needs to be run as it was trained (augmentation is training only)."""
        out = {}
        if self.mean is not None:
            out[META_MEAN] = ",".join(f"{v:g}" for v in self.mean)
        if self.std is not None:
            out[META_STD] = ",".join(f"{v:g}" for v in self.std)
        return out

    def normalise(self, x: np.ndarray) -> np.ndarray:
        """x: N x C x H x W (or N x F)."""
        shape = (1, -1) + (1,) * (x.ndim - 2)
        if self.mean is not None:
            x = x - np.asarray(self.mean, np.float32).reshape(shape)
        if self.std is not None:
            x = x / np.asarray(self.std, np.float32).reshape(shape)
        return x.astype(np.float32, copy=False)

    def augment(self, x: np.ndarray, seed: int, epoch: int, index: int) -> np.ndarray:
        """One example (C x H x W), its crop and flip drawn from (seed, epoch, index)."""
        if not self.augments or x.ndim != 3:
            return x
        rng = np.random.default_rng([seed, epoch, index])
        if self.crop_pad:
            p = self.crop_pad
            padded = np.pad(x, ((0, 0), (p, p), (p, p)))
            top, left = rng.integers(0, 2 * p + 1, 2)
            x = padded[:, top : top + x.shape[1], left : left + x.shape[2]]
        if self.flip and rng.random() < 0.5:
            x = x[:, :, ::-1]
        return np.ascontiguousarray(x)


def model_preprocess(metadata: dict[str, str]) -> tuple[list[float] | None, list[float] | None]:
    """The mean and std a trained model records, if any."""

    def values(key: str) -> list[float] | None:
        text = metadata.get(key)
        if not text:
            return None
        try:
            return [float(v) for v in text.split(",")]
        except ValueError:
            return None

    return values(META_MEAN), values(META_STD)


# ------------------------------------------------------------------ sources


def npz_array(path: Path, key: str) -> np.ndarray:
    """`key` of an .npz, memory-mapped when stored uncompressed, else read."""
    import numpy.lib.format as npformat

    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{key}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with archive.open(info) as member:
                version = npformat.read_magic(member)
                header = (
                    npformat.read_array_header_1_0(member)
                    if version == (1, 0)
                    else npformat.read_array_header_2_0(member)
                )
                offset_in_member = member.tell()
            shape, fortran, dtype = header
            if not dtype.hasobject and not fortran:
                with open(path, "rb") as raw:  # the member's data starts after its local header
                    raw.seek(info.header_offset + 26)
                    name_length = int.from_bytes(raw.read(2), "little")
                    extra_length = int.from_bytes(raw.read(2), "little")
                start = info.header_offset + 30 + name_length + extra_length + offset_in_member
                return np.memmap(path, dtype=dtype, mode="r", offset=start, shape=shape)
    with np.load(path, allow_pickle=False) as archive:
        return np.asarray(archive[key])


@dataclass
class FolderData:
    """A class-folder data set, listed: (path, label) per image, read on demand."""

    paths: list[Path]
    y: np.ndarray
    classes: list[str]
    shape: tuple[int, ...]

    def __len__(self) -> int:
        return len(self.paths)


def list_folder(path: Path, shape: tuple[int, ...]) -> FolderData:

    folders = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not folders:
        raise fail("bad-input", f"{path}: no class subfolders", "put the images of class NAME in PATH/NAME/")
    paths, labels = [], []
    for index, folder in enumerate(folders):
        images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if not images:
            raise fail(
                "bad-input",
                f"{folder}: class '{folder.name}' has no images ({', '.join(sorted(IMAGE_SUFFIXES))})",
            )
        paths += images
        labels += [index] * len(images)
    return FolderData(paths, np.asarray(labels, np.int64), [f.name for f in folders], shape)


def relabel(data: FolderData, names: list[str]) -> FolderData:
    """A class folder labelled as a model numbers its classes: folder NAME is the index of
    NAME among the model's class names (not its place among the folders, which shifts when
    a class has no folder)."""
    unknown = [c for c in data.classes if c not in names]
    if unknown:
        raise fail(
            "bad-input",
            f"class folder '{unknown[0]}' is not a class of the model (its classes: {', '.join(names[:20])})",
            "name each class folder after one of the model's classes",
        )
    index = np.asarray([names.index(c) for c in data.classes], np.int64)
    return FolderData(data.paths, index[data.y], list(names), data.shape)


class ImageFolderDataset:
    """torch.utils.data.Dataset protocol over a FolderData: (image, label, broken path)."""

    def __init__(self, data: FolderData, indices: np.ndarray, preprocess: Preprocess, seed: int, train: bool):
        self.data, self.indices, self.preprocess, self.seed, self.train = (
            data,
            indices,
            preprocess,
            seed,
            train,
        )
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int):
        from ..base.diagnostics import CnnspecError
        from ..inputs import load_image

        index = int(self.indices[position])
        path = self.data.paths[index]
        label = int(self.data.y[index])
        try:
            x = load_image(path, self.data.shape, None, None)
        except CnnspecError as exc:
            return None, label, f"{path}: {exc.diagnostics[0].message.split(': ', 1)[-1]}"
        x = self.preprocess.normalise(x[None])[0]
        if self.train:
            x = self.preprocess.augment(x, self.seed, self.epoch, index)
        return x, label, None


def collate(items):
    """A batch without its broken images, and their paths."""
    import torch

    good = [(x, y) for x, y, broken in items if broken is None]
    broken = [b for _, _, b in items if b is not None]
    if not good:
        return None, None, broken
    return torch.from_numpy(np.stack([x for x, _ in good])), torch.tensor([y for _, y in good]), broken
