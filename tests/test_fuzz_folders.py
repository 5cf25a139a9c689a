"""Fuzzing the ImageFolder loader: whatever lies in the class folders, it returns or fails with one domain error.

Files are random bytes, truncated real images, real images in unusual PIL modes and sizes, named pipes, folders
and dangling links with image suffixes. Each example must finish within the deadline (a pipe would block a naive
loader forever) and either load every readable image as uint8 (N, C, H, W) or raise an `EdgedistillError`.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from edgedistill.data.folders import load_image_folder
from edgedistill.errors import EdgedistillError

MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F", "LA", "YCbCr"]
FORMATS = {"png": "PNG", "jpg": "JPEG", "bmp": "BMP", "gif": "GIF", "tiff": "TIFF", "webp": "WEBP"}


def _image_bytes(mode: str, size: tuple[int, int], fmt: str, seed: int) -> bytes | None:
    rng = np.random.default_rng(seed)
    im = Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).convert(mode)
    buf = io.BytesIO()
    try:
        im.save(buf, format=fmt)
    except (OSError, ValueError, KeyError):  # not every format stores every mode
        return None
    return buf.getvalue()


entry = st.one_of(
    st.tuples(st.just("bytes"), st.binary(max_size=256)),
    st.tuples(
        st.just("image"),
        st.tuples(
            st.sampled_from(MODES),
            st.tuples(st.integers(1, 40), st.integers(1, 40)),
            st.sampled_from(sorted(FORMATS)),
            st.integers(0, 10**6),
            st.floats(0.0, 1.0),  # fraction kept: < 1 truncates the file
        ),
    ),
    st.tuples(st.sampled_from(["fifo", "dir", "dangling", "empty"]), st.none()),
)


def _write(path: Path, kind: str, spec: object) -> None:
    if kind == "bytes":
        path.write_bytes(spec)  # type: ignore[arg-type]
    elif kind == "image":
        mode, size, suffix, seed, keep = spec  # type: ignore[misc]
        data = _image_bytes(mode, size, FORMATS[suffix], seed) or b""
        path.with_suffix("." + suffix).write_bytes(data[: max(1, int(len(data) * keep))] if keep < 1 else data)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "dir":
        path.mkdir()
    elif kind == "dangling":
        os.symlink(path.parent / "nowhere.png", path)
    else:
        path.write_bytes(b"")


@settings(max_examples=40, deadline=5000, suppress_health_check=[HealthCheck.too_slow])
@given(
    classes=st.lists(st.lists(entry, min_size=1, max_size=4), min_size=1, max_size=3),
    channels=st.sampled_from([1, 3]),
    size=st.sampled_from([None, 8]),
    on_corrupt=st.sampled_from(["error", "skip"]),
)
def test_image_folder_loader_never_crashes_or_hangs(
    classes: list[list[tuple[str, object]]], channels: int, size: int | None, on_corrupt: str
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "train"
        for c, files in enumerate(classes):
            (root / f"c{c}").mkdir(parents=True)
            for i, (kind, spec) in enumerate(files):
                _write(root / f"c{c}" / f"f{i}.png", kind, spec)
        try:
            got = load_image_folder(root, channels, size, on_corrupt=on_corrupt)
        except EdgedistillError as e:
            assert "\n" not in str(e) and str(e)
            return
        imgs = got.images.images
        assert imgs.dtype == np.uint8 and imgs.ndim == 4 and imgs.shape[1] == channels
        if size is not None:
            assert imgs.shape[2:] == (size, size)
        assert got.classes == [f"c{c}" for c in range(len(classes))]
        assert on_corrupt == "skip" or not got.skipped
