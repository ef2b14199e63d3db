"""Pure functions behind `task=probe`: the refusal direction, projections, AUROC, a linear probe.

The refusal direction follows Arditi et al., "Refusal in Language Models Is Mediated by a Single
Direction" (NeurIPS 2024): per LM layer, the difference between the mean residual-stream activation
at the last prompt token over harmful and over harmless instructions. Everything here works on
numpy arrays (float64) and is unit-tested on hand-computed values (tests/test_refusal_direction.py).
Shapes: `n` prompts, `L` LM layers (hidden states, embeddings included), `D` hidden width.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch


def difference_of_means(harmful: np.ndarray, benign: np.ndarray) -> np.ndarray:
    """mean(harmful) − mean(benign) over axis 0: [n_h, L, D], [n_b, L, D] → [L, D] (any trailing shape)."""
    if len(harmful) == 0 or len(benign) == 0:
        raise ValueError(f"a direction needs harmful and benign examples, got {len(harmful)} and {len(benign)}")
    return np.asarray(harmful, np.float64).mean(axis=0) - np.asarray(benign, np.float64).mean(axis=0)


def unit(direction: np.ndarray) -> np.ndarray:
    """`direction` scaled to unit length along its last axis; a zero vector stays zero."""
    direction = np.asarray(direction, np.float64)
    norm = np.linalg.norm(direction, axis=-1, keepdims=True)
    return np.divide(direction, norm, out=np.zeros_like(direction), where=norm > 0)


def project(states: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Scalar projection of each state onto the unit direction of its layer: [n, L, D], [L, D] → [n, L]."""
    return np.einsum("nld,ld->nl", np.asarray(states, np.float64), unit(direction))


def rescale(projection: np.ndarray, harmful_mean: np.ndarray, benign_mean: np.ndarray) -> np.ndarray:
    """Projections on the calibration scale: 0 = the benign calibration mean, 1 = the harmful one (per layer).

    A layer where both means coincide has no scale: its values are NaN.
    """
    gap = np.asarray(harmful_mean, np.float64) - np.asarray(benign_mean, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(gap != 0, (np.asarray(projection, np.float64) - benign_mean) / gap, np.nan)


def midranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of `values`, tied values sharing the mean of their ranks."""
    values = np.asarray(values, np.float64)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), np.float64)
    sorted_values = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_values[j + 1] == sorted_values[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1  # ranks i+1..j+1 share their mean
        i = j + 1
    return ranks


def auroc(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Area under the ROC curve of scores, positives expected higher: the Mann–Whitney U / (n_pos · n_neg).

    Ties between a positive and a negative count one half. None when either side is empty.
    """
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = midranks(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def separation(positive: Sequence[float], negative: Sequence[float]) -> float:
    """Standardised mean difference (mean_pos − mean_neg) / pooled SD (population variances).

    With zero spread on both sides: 0 when the means are equal, else ±inf. Used to pick the LM layer
    whose calibration projections separate best.
    """
    pos, neg = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    diff = pos.mean() - neg.mean()
    sd = math.sqrt((pos.var() + neg.var()) / 2)
    if sd == 0:
        return 0.0 if diff == 0 else math.copysign(math.inf, diff)
    return float(diff / sd)


def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
    """Spearman's rank correlation (Pearson's r of midranks); None with < 3 pairs or a constant side."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if len(x) != len(y):
        raise ValueError(f"spearman needs paired values, got {len(x)} and {len(y)}")
    if len(x) < 3:
        return None
    rx, ry = midranks(x) - (len(x) + 1) / 2, midranks(y) - (len(y) + 1) / 2
    denom = math.sqrt(float((rx * rx).sum() * (ry * ry).sum()))
    return None if denom == 0 else float((rx * ry).sum() / denom)


def stratified_folds(labels: Sequence[bool], k: int, seed: int) -> list[np.ndarray]:
    """k disjoint test-index sets covering every item, each class dealt round-robin after a seeded shuffle."""
    labels = np.asarray(labels, bool)
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for cls in (True, False):
        idx = np.flatnonzero(labels == cls)
        idx = idx[rng.permutation(len(idx))]
        for j, i in enumerate(idx):
            folds[(offset + j) % k].append(int(i))
        offset += len(idx)  # the next class starts where this one stopped, keeping fold sizes even
    return [np.sort(np.asarray(f, np.int64)) for f in folds]


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iterations: int = 50) -> tuple[np.ndarray, float]:
    """Ridge logistic regression by Newton's method: minimises Σ log-loss + (l2/2)·‖w‖² (intercept unpenalised).

    The objective is scikit-learn's `LogisticRegression` default (C = 1/l2). x: [n, d]; y: [n] in {0, 1}.
    Returns (w [d], b). With d > n the optimum lies in the row span of x (the gradient condition
    l2·w = Xᵀ(y − p)), so the fit runs in that span (an SVD basis of rank ≤ n): the same optimum,
    at the cost of n, not d, unknowns. The algebra runs in torch (float64), which keeps to the
    process's torch thread count (`threads`); numpy's BLAS would start its own threads, measured
    60× slower on a shared 2-core CPU.
    """
    x_t, y_t = torch.as_tensor(np.asarray(x, np.float64)), torch.as_tensor(np.asarray(y, np.float64))
    _, s, vt = torch.linalg.svd(x_t, full_matrices=False)
    basis = vt[s > (s.max() if len(s) else 0.0) * 1e-10]  # [r, d]
    z = torch.cat([x_t @ basis.T, torch.ones(len(x_t), 1, dtype=torch.float64)], dim=1)  # [n, r+1]; last = intercept
    penalty = torch.full((z.shape[1],), float(l2), dtype=torch.float64)
    penalty[-1] = 0.0
    theta = torch.zeros(z.shape[1], dtype=torch.float64)
    ridge = torch.diag(penalty) + 1e-9 * torch.eye(len(theta), dtype=torch.float64)
    for _ in range(iterations):
        p = torch.sigmoid(z @ theta)
        grad = z.T @ (p - y_t) + penalty * theta
        step = torch.linalg.solve((z.T * (p * (1 - p))) @ z + ridge, grad)
        theta -= step
        if float(step.abs().max()) < 1e-10:
            break
    return (basis.T @ theta[:-1]).numpy(), float(theta[-1])


def probe_accuracy(
    x: np.ndarray, labels: Sequence[bool], folds: int = 5, seed: int = 0, l2: float = 1.0
) -> float | None:
    """Cross-validated accuracy of a ridge logistic probe (harmful = True) on states x [n, d].

    Stratified, seeded folds (fewer when a class has fewer than `folds` items); features standardised
    with each training fold's mean and SD. None when a class has fewer than 2 items.
    """
    labels = np.asarray(labels, bool)
    k = min(folds, int(labels.sum()), int((~labels).sum()))
    if k < 2:
        return None
    x = np.asarray(x, np.float64)
    correct = 0
    for test in stratified_folds(labels, k, seed):
        train = np.setdiff1d(np.arange(len(labels)), test)
        mean, sd = x[train].mean(axis=0), x[train].std(axis=0)
        sd[sd == 0] = 1.0
        w, b = fit_logistic((x[train] - mean) / sd, labels[train].astype(np.float64), l2)
        predicted = ((x[test] - mean) / sd) @ w + b > 0
        correct += int((predicted == labels[test]).sum())
    return correct / len(labels)


def token_mass(logits: np.ndarray, token_ids: Sequence[int]) -> np.ndarray:
    """Per row, the softmax probability summed over `token_ids` (each counted once): [n, V] → [n]."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=-1, keepdims=True)
    ids = sorted(set(int(t) for t in token_ids))
    return probs[:, ids].sum(axis=-1)
