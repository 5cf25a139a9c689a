"""Packaged digit teachers: loading and declared preprocessing (other sources and the cache: test_multisource)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from edgedistill.data.packages import pkg_dir
from edgedistill.errors import ConfigError, RegistryError
from edgedistill.teachers import load_teacher, parse_source, teacher_logits


def test_parse_source() -> None:
    assert parse_source("ccexam:usps?crop=0.72&invert=1") == ("ccexam", "usps", {"crop": "0.72", "invert": "1"})
    assert parse_source("ccexam:svhn") == ("ccexam", "svhn", {})
    with pytest.raises(ConfigError, match="expected 'kind:name"):
        parse_source("usps")


def test_source_errors() -> None:
    with pytest.raises(RegistryError, match="did you mean 'ccexam'"):
        load_teacher("ccexm:usps")
    with pytest.raises(ConfigError, match="unknown ccexam teacher"):
        load_teacher("ccexam:cifar")
    with pytest.raises(ConfigError, match=r"unknown option\(s\) \['zoom'\]"):
        load_teacher("ccexam:usps?zoom=2")


def _samples(prefix: str, mode: str) -> tuple[np.ndarray, np.ndarray]:
    files = sorted((pkg_dir("ccexam") / "samples").glob(f"{prefix}*.png"))
    imgs, labels = [], []
    for f in files:
        a = np.asarray(Image.open(f).convert(mode), dtype=np.uint8)
        imgs.append(a[None] if a.ndim == 2 else a.transpose(2, 0, 1))
        labels.append(int(f.stem.split("_")[-1]))
    return np.stack(imgs), np.array(labels)


@pytest.mark.parametrize(
    ("name", "prefix", "mode"),
    [("mnist", "mnist_test", "L"), ("usps", "usps_digit", "L"), ("svhn", "svhn_digit", "RGB")],
)
def test_each_teacher_gets_its_own_samples_right(name: str, prefix: str, mode: str) -> None:
    x, y = _samples(prefix, mode)
    assert len(x) >= 3
    pred = teacher_logits(load_teacher(f"ccexam:{name}"), x).argmax(1).numpy()
    assert np.array_equal(pred, y)


def test_teacher_input_pipeline_shapes() -> None:
    t = load_teacher("ccexam:svhn?invert=1&crop=0.8")
    x = t.input(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert x.shape == (2, 3, 32, 32)
    assert torch.allclose(x[:, 0], torch.full_like(x[:, 0], (1 - 0.4377) / 0.1980))  # inverted black → white
    feats, logits = t.predict(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    assert feats.shape == (2, 256) and logits.shape == (2, 10)  # penultimate layer of the SVHN CNN
