"""ImageFolder loading (`root/<class>/<image>`) into uint8 arrays, with clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgedistill.data.images import ImageSet
from edgedistill.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}


def _read(path: Path, channels: int, size: int | None) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as raw:
            im = raw.convert("L" if channels == 1 else "RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.Resampling.BILINEAR)
            arr = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: cannot read image ({e.__class__.__name__})") from None
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def load_image_folder(
    root: Path, channels: int, size: int | None, classes: list[str] | None = None
) -> tuple[ImageSet, list[str]]:
    """Read every image under `root/<class>/` (sorted class names = label order).

    Args:
        root: folder with one sub-folder per class.
        channels: 1 (grey) or 3 (RGB); images are converted.
        size: resize to size×size; required when images differ in size.
        classes: expected class names (test split must match train's).
    """
    if not root.is_dir():
        raise DataError(f"{root}: folder not found (expected <root>/<class>/<image> files)")
    found = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not found:
        raise DataError(f"{root}: no class sub-folders")
    if classes is not None and found != classes:
        raise DataError(f"{root}: classes {found} differ from the training classes {classes}")
    images, labels = [], []
    for label, name in enumerate(found):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{root / name}: class folder has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        for f in files:
            images.append(_read(f, channels, size))
            labels.append(label)
    shapes = {a.shape for a in images}
    if len(shapes) > 1:
        raise DataError(f"{root}: images have different sizes {sorted(shapes)[:3]}...; set data.image_size")
    return ImageSet(np.stack(images), np.asarray(labels, dtype=np.int64)), found
