"""Task similarity of a teacher to the target (registry): computed on the labeled target split.

Every metric takes (teacher features (N, D), teacher logits (N, Z), target labels (N,)) and returns a score
where higher means a better source for the target. kNN and linear-probe scores are accuracies in [0, 1];
LogME is a mean log-evidence per sample; LEEP a mean log-likelihood (≤ 0). `softmax_weights` turns scores into
the teachers' weights α.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from edgedistill.errors import DataError
from edgedistill.registry import Registry

if TYPE_CHECKING:
    from edgedistill.teachers.cache import CachedTeacher

SimilarityFn = Callable[[np.ndarray, np.ndarray, np.ndarray], float]
SIMILARITY: Registry[SimilarityFn] = Registry("similarity metric")


def _classes_with_two(labels: np.ndarray) -> int:
    counts = np.bincount(labels)
    counts = counts[counts > 0]
    if counts.min() < 2:
        raise DataError("task similarity needs at least 2 labeled images per class")
    return int(counts.min())


@SIMILARITY.register("knn")
def knn_loo(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out accuracy of a cosine k-NN majority vote (ties go to the more similar class)."""
    _classes_with_two(labels)
    f = features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    k = min(k, len(labels) - 1)
    nn_idx = np.argsort(-sim, axis=1)[:, :k]
    rows = np.repeat(np.arange(len(labels)), k)
    votes = np.zeros((len(labels), int(labels.max()) + 1))
    np.add.at(votes, (rows, labels[nn_idx].ravel()), 1.0 + 1e-3 * np.take_along_axis(sim, nn_idx, 1).ravel())
    return float((votes.argmax(1) == labels).mean())


@SIMILARITY.register("linear")
def linear_probe(features: np.ndarray, logits: np.ndarray, labels: np.ndarray, folds: int = 5) -> float:
    """Stratified k-fold cross-validated accuracy of a logistic-regression probe on the features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    cv = StratifiedKFold(n_splits=min(folds, _classes_with_two(labels)), shuffle=True, random_state=0)
    return float(cross_val_score(LogisticRegression(C=10.0, max_iter=2000), features, labels, cv=cv).mean())


def logme_evidence(alpha: float, beta: float, sigma: np.ndarray, z: np.ndarray, y2: float, n: int, d: int) -> float:
    """Log evidence of Bayesian linear regression y = F m + ε, m ~ N(0, 1/α), ε ~ N(0, 1/β).

    Args:
        sigma: eigenvalues of FᵀF that are not zero (the squared singular values of F).
        z: Uᵀy for F's left singular vectors; y2: ‖y‖².
    """
    t = alpha + beta * sigma
    m2 = float(np.sum((beta * np.sqrt(sigma) * z / t) ** 2))
    res2 = float(np.sum((alpha * z / t) ** 2) + y2 - np.sum(z**2))
    logdet = float(np.sum(np.log(t)) + (d - len(sigma)) * np.log(alpha))
    return (
        n / 2 * np.log(beta) + d / 2 * np.log(alpha) - n / 2 * np.log(2 * np.pi)
        - beta / 2 * res2 - alpha / 2 * m2 - logdet / 2
    )  # fmt: skip


def logme_fixed_point(
    sigma: np.ndarray, z: np.ndarray, y2: float, n: int, iters: int = 100, tol: float = 1e-5
) -> tuple[float, float]:
    """MacKay's evidence-maximisation fixed point for (α, β) (You et al., LogME, ICML 2021, Alg. 1)."""
    alpha, beta = 1.0, 1.0
    for _ in range(iters):
        t = alpha + beta * sigma
        gamma = float(np.sum(beta * sigma / t))
        m2 = float(np.sum((beta * np.sqrt(sigma) * z / t) ** 2))
        res2 = float(np.sum((alpha * z / t) ** 2) + y2 - np.sum(z**2))
        new_alpha, new_beta = gamma / max(m2, 1e-12), (n - gamma) / max(res2, 1e-12)
        done = abs(new_alpha - alpha) / alpha < tol and abs(new_beta - beta) / beta < tol
        alpha, beta = new_alpha, new_beta
        if done:
            break
    return alpha, beta


@SIMILARITY.register("logme")
def logme(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """LogME: maximum log evidence per sample of a linear model from features to each one-hot label column."""
    f = features.astype(np.float64)
    n, d = f.shape
    u, s, _ = np.linalg.svd(f, full_matrices=False)
    keep = s > 1e-10 * max(s.max(initial=0.0), 1e-300)
    u, sigma = u[:, keep], s[keep] ** 2
    scores = []
    for c in np.unique(labels):
        y = (labels == c).astype(np.float64)
        z = u.T @ y
        alpha, beta = logme_fixed_point(sigma, z, float(y @ y), n)
        scores.append(logme_evidence(alpha, beta, sigma, z, float(y @ y), n, d) / n)
    return float(np.mean(scores))


@SIMILARITY.register("leep")
def leep(features: np.ndarray, logits: np.ndarray, labels: np.ndarray) -> float:
    """LEEP (Nguyen et al., ICML 2020): mean log of the expected empirical prediction from source classes."""
    z = logits.astype(np.float64)
    theta = np.exp(z - z.max(1, keepdims=True))
    theta /= theta.sum(1, keepdims=True)
    onehot = np.eye(int(labels.max()) + 1)[labels]
    joint = onehot.T @ theta / len(labels)  # P(y, z)
    cond = joint / np.maximum(joint.sum(0, keepdims=True), 1e-300)  # P(y | z)
    eep = np.sum(theta * cond[labels], axis=1)
    return float(np.mean(np.log(np.maximum(eep, 1e-300))))


def similarity_scores(cached: list[CachedTeacher], labels: np.ndarray, metric: str) -> list[float]:
    """Task similarity of each teacher, from its cached outputs on the labeled split."""
    fn = SIMILARITY.get(metric)
    return [fn(c.sets["labeled"].features.read(), c.sets["labeled"].logits.read(), labels) for c in cached]


def softmax_weights(scores: np.ndarray, gamma: float, top_k: int | None = None) -> np.ndarray:
    """α = softmax(s / γ) over the `top_k` best scores (0 for the rest); sums to 1."""
    s = np.asarray(scores, dtype=np.float64)
    keep = np.argsort(-s, kind="stable")[: top_k or len(s)]
    z = (s[keep] - s[keep].max()) / gamma
    alpha = np.zeros_like(s)
    alpha[keep] = np.exp(z) / np.exp(z).sum()
    return alpha
