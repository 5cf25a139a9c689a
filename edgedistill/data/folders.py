"""ImageFolder loading (`root/<class>/<image>`) into uint8 arrays, with clear errors.

Grey, palette, RGBA and CMYK images are converted to the task's channels. Unreadable or truncated images fail
the run naming the file, or (`data.on_corrupt: skip`) are skipped and returned in `FolderImages.skipped`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

from edgedistill.data.images import ImageSet
from edgedistill.errors import DataError, ResourceError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class FolderImages:
    """One split of an ImageFolder: images, class names (label order) and the unreadable files skipped."""

    images: ImageSet
    classes: list[str]
    skipped: list[str] = field(default_factory=list)


class Unreadable(Exception):
    """An image file PIL cannot decode (message: why)."""


def read_image(path: Path | BinaryIO, channels: int, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (channels, H, W), converted and resized; `Unreadable` when PIL cannot decode it."""
    from PIL import Image, UnidentifiedImageError

    bomb = (Image.DecompressionBombError, Image.DecompressionBombWarning)  # > 89 MP: refused, not warned about
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as raw:
                im = raw.convert("L" if channels == 1 else "RGB")  # forces the full decode: truncation shows here
                if size is not None and im.size != (size[1], size[0]):
                    im = im.resize((size[1], size[0]), Image.Resampling.BILINEAR)
                arr = np.asarray(im, dtype=np.uint8)
    # PIL reports broken files as OSError, SyntaxError (some plugins), ValueError or a decompression bomb.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, *bomb) as e:
        raise Unreadable(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(
    root: Path, channels: int, size: int | None, classes: list[str] | None = None, on_corrupt: str = "error"
) -> FolderImages:
    """Read every image under `root/<class>/` (sorted class names = label order).

    Args:
        root: folder with one sub-folder per class.
        channels: 1 (grey) or 3 (RGB); images are converted.
        size: resize to size×size; without it, images of different sizes are an error naming one.
        classes: expected class names (test split must match train's).
        on_corrupt: "error" (fail naming the file) or "skip" (leave it out and list it).
    """
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected <root>/<class>/<image> files)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not found:
        raise DataError(f"{root}: no class sub-folders")
    if classes is not None and found != classes:
        raise DataError(f"{root}: classes {found} differ from the training classes {classes}")
    files = []
    for label, name in enumerate(found):
        in_class = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not in_class:
            raise DataError(f"{root / name}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += [(f, label) for f in in_class]
    images, labels, skipped = decode_images(files, channels, None if size is None else (size, size), on_corrupt)
    for label, name in enumerate(found):
        if not (labels == label).any():
            raise DataError(f"{root / name}: every image in this class is unreadable (see data.on_corrupt)")
    return FolderImages(ImageSet(images, labels), found, skipped)


def decode_images(
    files: list[tuple[Path, int]],
    channels: int,
    size: tuple[int, int] | None,
    on_corrupt: str = "error",
    field: str = "data",
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Decode (file, label) pairs into uint8 (N, C, H, W) and int64 labels; also the skipped files ("path\treason").

    Args:
        size: (height, width) to resize to; without it, images of different sizes are an error naming one.
        on_corrupt: "error" (fail naming the file) or "skip".
        field: the config section named in the errors' hints (`data`, `data.extra_unlabeled[0]`).
    """
    images: np.ndarray | None = None  # one preallocated array: decoded size, no list-then-stack copy
    labels = np.empty(len(files), dtype=np.int64)
    skipped: list[str] = []
    n = 0
    if size is not None and files:  # the decoded size is known: check memory before the first (resized) image
        images = _allocate(Path(os.path.commonpath([p for p, _ in files])), len(files), (channels, *size))
    for f, label in files:
        try:
            if not f.is_file():  # a named pipe or device would block or never end; a dangling link fails anyway
                raise Unreadable("not a regular file")
            arr = read_image(f, channels, size)
        except Unreadable as e:
            if on_corrupt != "skip":
                hint = f"fix or delete it, or set {field}.on_corrupt: skip"
                raise DataError(f"{f}: cannot read image ({e}); {hint}") from None
            skipped.append(f"{f}\t{e}")
            continue
        if images is None:
            images = _allocate(Path(os.path.commonpath([p for p, _ in files])), len(files), arr.shape)
        if arr.shape != images.shape[1:]:
            raise DataError(
                f"{f}: image is {arr.shape[2]}x{arr.shape[1]}, others are {images.shape[3]}x{images.shape[2]}; "
                "set data.image_size to resize all images"
            )
        images[n], labels[n] = arr, label
        n += 1
    if images is None:
        images = np.empty((0, channels, *(size or (0, 0))), dtype=np.uint8)
    return images[:n], labels[:n], skipped


def _allocate(root: Path, n: int, shape: tuple[int, ...]) -> np.ndarray:
    """uint8 (n, C, H, W), after checking that it fits the free memory."""
    import psutil

    need = n * int(np.prod(shape))
    free = psutil.virtual_memory().available
    if need > 0.8 * free:
        raise ResourceError(
            f"{root}: {n} images of {shape[2]}x{shape[1]}x{shape[0]} need {need / 2**20:.0f} MiB decoded, "
            f"{free / 2**20:.0f} MiB of memory is available; set a smaller data.image_size or use fewer images"
        )
    return np.empty((n, *shape), dtype=np.uint8)


def load_unlabeled_folder(
    root: Path, channels: int, size: tuple[int, int] | None, on_corrupt: str = "error", field: str = "data"
) -> FolderImages:
    """Every image under `root` at any depth, unlabeled (sub-folder names are ignored).

    Args:
        size: (height, width) to resize to.
        field: the config section named in the errors' hints.
    """
    if not root.is_dir():
        raise DataError(f"{root}: folder not found")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"{root}: no images in it or below it ({', '.join(sorted(IMAGE_SUFFIXES))})")
    images, _, skipped = decode_images([(f, 0) for f in files], channels, size, on_corrupt, field)
    if not len(images):
        raise DataError(f"{root}: every image is unreadable (see {field}.on_corrupt)")
    return FolderImages(ImageSet(images), [], skipped)
