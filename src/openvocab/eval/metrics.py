"""Single-label classification metrics of the papers, on numpy arrays or torch tensors.

* Top-1 / top-5 accuracy (Text4Vis Tables 1, 4; MOV Tables 1-3).
* Mean class accuracy: the mean over classes of per-class recall (Text4Vis Table 5, UCF-101 / HMDB-51), over the
  classes that occur in the targets (scikit-learn's ``balanced_accuracy_score``).
* Confusion matrix (rows: true class, columns: predicted class, as scikit-learn).
* Multi-view averaging: per-view softmax then the mean over views (Text4Vis §4.1 "4×3 Views"; MOV §4.2 "the
  final score is averaged over 12 views").

Ties: a target tied with other classes ranks below the tied classes of HIGHER index and above those of lower
index — exactly scikit-learn's ``top_k_accuracy_score`` (a stable ascending sort, reversed). :func:`predict`
(the top-1 class) follows the same rule, so top-1 accuracy and the confusion matrix agree. All accuracies are
fractions in ``[0, 1]``.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from openvocab.errors import InputError

__all__ = ["as_numpy", "confusion_matrix", "mean_class_accuracy", "multi_view_average", "predict", "topk_accuracy"]

ArrayLike = np.ndarray | torch.Tensor


def as_numpy(x: ArrayLike | Iterable, *, name: str = "array") -> np.ndarray:
    """A numpy view of ``x`` (torch tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    try:
        return np.asarray(x)
    except Exception as exc:
        raise InputError(f"{name} cannot be converted to an array: {exc}") from exc


def _scores(scores: ArrayLike, *, name: str = "scores") -> np.ndarray:
    s = as_numpy(scores, name=name)
    if s.ndim != 2 or s.shape[1] == 0:
        raise InputError(f"{name} must have shape (N, C) with C >= 1, got {s.shape}")
    if not np.issubdtype(s.dtype, np.number) or np.issubdtype(s.dtype, np.complexfloating):
        raise InputError(f"{name} must be real numbers, got dtype {s.dtype}")
    if np.isnan(s).any():
        raise InputError(f"{name} contain NaN")
    return s


def _labels(labels: ArrayLike, *, n: int | None, num_classes: int | None, name: str) -> np.ndarray:
    y = as_numpy(labels, name=name)
    if y.ndim != 1:
        raise InputError(f"{name} must have shape (N,), got {y.shape}")
    integral = np.issubdtype(y.dtype, np.integer) or (np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0))
    if y.size and not integral:
        raise InputError(f"{name} must be integer class indices, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if n is not None and y.shape[0] != n:
        raise InputError(f"{name} has {y.shape[0]} entries but the scores have {n} rows")
    if y.size and (y.min() < 0 or (num_classes is not None and y.max() >= num_classes)):
        raise InputError(f"{name} must be class indices in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    return y


def _target_rank(s: np.ndarray, y: np.ndarray) -> np.ndarray:
    """0-based rank of each target among its row's classes (ties: higher class index first, as scikit-learn)."""
    target = s[np.arange(s.shape[0]), y][:, None]
    index = np.arange(s.shape[1])[None, :]
    return (s > target).sum(axis=1) + ((s == target) & (index > y[:, None])).sum(axis=1)


def predict(scores: ArrayLike) -> np.ndarray:
    """Top-1 class per row of ``(N, C)`` scores; among tied maxima the highest class index (see module notes)."""
    s = _scores(scores)
    return (s.shape[1] - 1 - np.argmax(s[:, ::-1], axis=1)).astype(np.int64)


def topk_accuracy(scores: ArrayLike, targets: ArrayLike, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose target is among the ``k`` highest scores, for each ``k`` in ``ks``.

    ``scores`` ``(N, C)`` (logits or probabilities), ``targets`` ``(N,)`` class indices. ``k >= C`` gives 1.0.
    Equals scikit-learn's ``top_k_accuracy_score(targets, scores, k=k, labels=range(C))``, ties included.
    """
    s = _scores(scores)
    y = _labels(targets, n=s.shape[0], num_classes=s.shape[1], name="targets")
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise InputError(f"ks must be positive integers, got {ks}")
    if y.size == 0:
        raise InputError("cannot compute accuracy of zero samples")
    rank = _target_rank(s, y)
    return {k: float(np.mean(rank < k)) for k in ks}


def mean_class_accuracy(scores: ArrayLike, targets: ArrayLike, num_classes: int | None = None) -> float:
    """Mean over classes of per-class recall (Text4Vis Table 5), over the classes present in ``targets``.

    ``scores`` is ``(N, C)`` scores or ``(N,)`` predicted class indices. Classes absent from ``targets`` (even if
    predicted) are left out of the mean, as in scikit-learn's ``balanced_accuracy_score``. ``num_classes``
    (optional) validates the index range.
    """
    s = as_numpy(scores, name="scores")
    if s.ndim == 2:
        if num_classes is not None and s.shape[1] != num_classes:
            raise InputError(f"scores have {s.shape[1]} classes but num_classes is {num_classes}")
        num_classes = s.shape[1]
        preds = predict(s)
    else:
        preds = _labels(s, n=None, num_classes=num_classes, name="predictions")
    y = _labels(targets, n=preds.shape[0], num_classes=num_classes, name="targets")
    if y.size == 0:
        raise InputError("cannot compute accuracy of zero samples")
    classes, inverse = np.unique(y, return_inverse=True)
    correct = np.bincount(inverse, weights=(preds == y).astype(np.float64), minlength=classes.size)
    support = np.bincount(inverse, minlength=classes.size)
    return float(np.mean(correct / support))


def confusion_matrix(preds: ArrayLike, targets: ArrayLike, num_classes: int) -> np.ndarray:
    """``(C, C)`` int64 counts: entry ``[i, j]`` = samples of true class ``i`` predicted as ``j``.

    ``preds`` is ``(N,)`` predicted indices or ``(N, C)`` scores (reduced with :func:`predict`).
    """
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise InputError(f"num_classes must be a positive integer, got {num_classes!r}")
    p = as_numpy(preds, name="preds")
    if p.ndim == 2:
        if p.shape[1] != num_classes:
            raise InputError(f"scores have {p.shape[1]} classes but num_classes is {num_classes}")
        p = predict(p)
    p = _labels(p, n=None, num_classes=num_classes, name="preds")
    y = _labels(targets, n=p.shape[0], num_classes=num_classes, name="targets")
    flat = np.bincount(y * num_classes + p, minlength=num_classes * num_classes)
    return flat.reshape(num_classes, num_classes).astype(np.int64)


def multi_view_average(scores: ArrayLike, *, already_probabilities: bool) -> ArrayLike:
    """``(N, V, C)`` per-view scores -> ``(N, C)``: softmax over classes per view (unless ``already_probabilities``),
    then the mean over the ``V`` views (Text4Vis / MOV 4×3-view testing). Returns the input's kind (numpy/torch).
    """
    if isinstance(scores, torch.Tensor):
        if scores.ndim != 3:
            raise InputError(f"scores must have shape (N, views, C), got {tuple(scores.shape)}")
        probs = scores.float() if already_probabilities else scores.float().softmax(dim=-1)
        return probs.mean(dim=1)
    s = as_numpy(scores, name="scores").astype(np.float64)
    if s.ndim != 3:
        raise InputError(f"scores must have shape (N, views, C), got {s.shape}")
    if not already_probabilities:
        e = np.exp(s - s.max(axis=-1, keepdims=True))
        s = e / e.sum(axis=-1, keepdims=True)
    return s.mean(axis=1)
