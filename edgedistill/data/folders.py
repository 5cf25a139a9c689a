"""ImageFolder loading (`root/<class>/<image>`) into uint8 arrays, with clear errors.

Grey, palette, RGBA and CMYK images are converted to the task's channels. Unreadable or truncated images fail
the run naming the file, or (`data.on_corrupt: skip`) are skipped and returned in `FolderImages.skipped`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edgedistill.data.images import ImageSet
from edgedistill.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


@dataclass(frozen=True)
class FolderImages:
    """One split of an ImageFolder: images, class names (label order) and the unreadable files skipped."""

    images: ImageSet
    classes: list[str]
    skipped: list[str] = field(default_factory=list)


class _Unreadable(Exception):
    """An image file PIL cannot decode (message: why)."""


def _read(path: Path, channels: int, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            im = raw.convert("L" if channels == 1 else "RGB")  # forces the full decode: truncation shows here
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    # PIL reports broken files as OSError, SyntaxError (some plugins), ValueError or a decompression bomb.
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise _Unreadable(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
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
    images: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[str] = []
    for label, name in enumerate(found):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root / name}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        n_before = len(images)
        for f in files:
            try:
                images.append(_read(f, channels, size))
            except _Unreadable as e:
                if on_corrupt != "skip":
                    raise DataError(
                        f"{f}: cannot read image ({e}); fix or delete it, or set data.on_corrupt: skip"
                    ) from None
                skipped.append(f"{f}\t{e}")
                continue
            labels.append(label)
            if images[-1].shape != images[0].shape:
                raise DataError(
                    f"{f}: image is {images[-1].shape[2]}x{images[-1].shape[1]}, others are "
                    f"{images[0].shape[2]}x{images[0].shape[1]}; set data.image_size to resize all images"
                )
        if len(images) == n_before:
            raise DataError(f"{root / name}: every image in this class is unreadable ({len(files)} skipped)")
    return FolderImages(ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64)), found, skipped)
