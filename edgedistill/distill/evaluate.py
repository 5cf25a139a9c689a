"""Evaluation of a model (bank at a config, or a plain net) on uint8 images: top-1 accuracy, and the universal
evaluation of a multi-domain task (per-domain top-1 and the embedding's retrieval metrics)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from edgedistill.data.images import TaskData
from edgedistill.models.layout import memory_format


@torch.inference_mode()
def predict(
    model: nn.Module,
    images: np.ndarray,
    pre: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch: int = 1000,
) -> np.ndarray:
    """Arg-max class per image."""
    was_training = model.training
    model.eval()
    fmt = memory_format(model)  # the weights' layout: a channels_last net fed NCHW images runs ~1.5x slower
    out = []
    for i in range(0, len(images), batch):
        x = pre(torch.from_numpy(images[i : i + batch]).to(device)).contiguous(memory_format=fmt)
        out.append(model(x).argmax(1).cpu())
    model.train(was_training)
    return torch.cat(out).numpy()


def accuracy(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    pre: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    batch: int = 1000,
) -> float:
    """Top-1 accuracy in percent."""
    return float((predict(model, images, pre, device, batch) == labels).mean() * 100.0)


def retrieval_metrics(embeddings: torch.Tensor, labels: np.ndarray, k: int, chunk: int = 1024) -> dict[str, float]:
    """Recall@1 and mAP@k (percent) of every image as a query against all the others, by cosine similarity.

    A neighbour is relevant when it has the query's label. recall@1: the nearest other image is relevant. AP@k:
    Σ_{i≤k} precision@i · rel_i / min(k, relevant images); a query with no other image of its class scores 0
    (UnED/UDON's definitions).
    """
    e = torch.nn.functional.normalize(embeddings.float(), dim=1)
    y = torch.from_numpy(np.asarray(labels)).to(e.device)
    n, key = len(e), f"map_at_{k}"
    k = min(k, n - 1)  # a set smaller than k + 1 ranks every other image
    if k < 1:
        raise ValueError(f"retrieval needs at least 2 images, got {n}")
    relevant_total = torch.bincount(y)[y] - 1  # per query: the other images of its class
    hits, ap = [], []
    ranks = torch.arange(1, k + 1, device=e.device, dtype=torch.float32)
    for i in range(0, n, chunk):
        sims = e[i : i + chunk] @ e.T
        rows = torch.arange(i, min(i + chunk, n), device=e.device)
        sims[rows - i, rows] = -float("inf")  # a query never retrieves itself
        nearest = sims.topk(k, dim=1).indices
        rel = (y[nearest] == y[rows].unsqueeze(1)).float()
        hits.append(rel[:, 0])
        precision = rel.cumsum(1) / ranks
        denom = relevant_total[rows].clamp(max=k).float()
        ap.append(torch.where(denom > 0, (precision * rel).sum(1) / denom.clamp_min(1), torch.zeros_like(denom)))
    return {"recall_at_1": float(torch.cat(hits).mean() * 100), key: float(torch.cat(ap).mean() * 100)}


@torch.inference_mode()
def embed(
    model: nn.Module, images: np.ndarray, pre: Callable[[torch.Tensor], torch.Tensor], device: torch.device, batch: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(pooled features, logits) of every image: the universal embedding and head of a bank or subnet."""
    was_training = model.training
    model.eval()
    feats, logits = [], []
    for i in range(0, len(images), batch):
        f = model.forward_features(pre(torch.from_numpy(images[i : i + batch]).to(device)))  # type: ignore[operator]
        feats.append(f.float().cpu())
        logits.append(model.forward_head(f).float().cpu())  # type: ignore[operator]
    model.train(was_training)
    return torch.cat(feats), torch.cat(logits)


def universal_metrics(
    model: nn.Module,
    data: TaskData,
    pre: Callable[[torch.Tensor], torch.Tensor],
    device: torch.device,
    k: int,
    batch: int,
) -> dict[str, dict[str, float]]:
    """Per domain of `data`'s test split: top-1 % over the domain's own classes, and the embedding's recall@1 % and
    mAP@k % with the domain's test images as queries against the rest of them. A one-domain task is one domain."""
    assert data.test.labels is not None
    feats, logits = embed(model, data.test.images, pre, device, batch)
    names = data.domain_names if data.universal else [data.name]
    index = data.test_domains if data.test_domains is not None else np.zeros(len(data.test), dtype=np.int64)
    classes = data.domain_classes or [list(range(data.num_classes))]
    out: dict[str, dict[str, float]] = {}
    for d, name in enumerate(names):
        rows = np.flatnonzero(index == d)
        labels = data.test.labels[rows]
        pred = np.asarray(classes[d])[logits[rows][:, classes[d]].argmax(1).numpy()]
        out[name] = {"top1": float((pred == labels).mean() * 100)} | retrieval_metrics(feats[rows], labels, k)
    return out
