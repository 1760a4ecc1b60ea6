"""Classification metrics of the papers, on numpy arrays or torch tensors.

* Top-1 / top-5 accuracy (Text4Vis Tables 1, 4; MOV Tables 1-3); with multi-hot targets, hit@k (a row is a hit
  when ANY of its true labels is among its ``k`` highest scores; ActivityNet's untrimmed videos, Text4Vis Table 2).
* Mean average precision (Text4Vis Table 2: ActivityNet's official classification metric): per class, the average
  precision of the videos' scores for that class against the videos' ground truth, then the mean over the classes
  that have at least one positive video (see :func:`mean_average_precision`).
* Mean class accuracy: the mean over classes of per-class recall (Text4Vis Table 5, UCF-101 / HMDB-51), over the
  classes that occur in the targets (scikit-learn's ``balanced_accuracy_score``).
* Confusion matrix (rows: true class, columns: predicted class, as scikit-learn).
* Multi-view averaging: per-view softmax then the mean over views (Text4Vis §4.1 "4×3 Views"; MOV §4.2 "the
  final score is averaged over 12 views").

Ties: a target tied with other classes ranks below the tied classes of HIGHER index and above those of lower
index — exactly scikit-learn's ``top_k_accuracy_score`` (a stable ascending sort, reversed). :func:`predict`
(the top-1 class) follows the same rule, so top-1 accuracy and the confusion matrix agree; hit@k ranks the classes
with the same rule. Average precision treats tied scores as one threshold, exactly scikit-learn's
``average_precision_score``. All accuracies and precisions are fractions in ``[0, 1]``.

Targets are class indices ``(N,)`` (single-label) or, where stated, multi-hot ``(N, C)`` 0/1 (or bool) arrays.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from openvocab.errors import InputError

__all__ = [
    "as_numpy",
    "average_precision",
    "confusion_matrix",
    "mean_average_precision",
    "mean_class_accuracy",
    "multi_hot",
    "predict",
    "topk_accuracy",
]

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


def multi_hot(targets: ArrayLike, *, n: int | None = None, num_classes: int | None = None, name: str = "targets") -> np.ndarray:
    """``(N, C)`` bool ground truth from class indices ``(N,)`` (one-hot; ``num_classes`` required) or from a
    multi-hot ``(N, C)`` array of 0/1 (or bool) values (``num_classes``, when given, must equal ``C``)."""
    y = as_numpy(targets, name=name)
    if y.ndim == 1:
        if num_classes is None:
            raise InputError(f"{name}: class indices need num_classes to become multi-hot")
        idx = _labels(y, n=n, num_classes=num_classes, name=name)
        out = np.zeros((idx.shape[0], int(num_classes)), dtype=bool)
        out[np.arange(idx.shape[0]), idx] = True
        return out
    if y.ndim != 2:
        raise InputError(f"{name} must have shape (N,) class indices or (N, C) multi-hot, got {y.shape}")
    if n is not None and y.shape[0] != n:
        raise InputError(f"{name} has {y.shape[0]} rows but the scores have {n} rows")
    if num_classes is not None and y.shape[1] != num_classes:
        raise InputError(f"{name} have {y.shape[1]} classes but the scores have {num_classes}")
    if y.dtype != bool:
        if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating) or not np.isin(y, (0, 1)).all():
            raise InputError(f"multi-hot {name} must hold only 0 and 1")
        y = y != 0
    return y


def _ranks(s: np.ndarray) -> np.ndarray:
    """``(N, C)`` 0-based rank of every class in its row: descending score, ties broken towards the HIGHER class
    index (a stable ascending sort, reversed: the rule of :func:`_target_rank` and scikit-learn)."""
    order = np.argsort(s, axis=1, kind="stable")[:, ::-1]
    ranks = np.empty(s.shape, dtype=np.int64)
    ranks[np.arange(s.shape[0])[:, None], order] = np.arange(s.shape[1])[None, :]
    return ranks


def topk_accuracy(scores: ArrayLike, targets: ArrayLike, ks: Iterable[int] = (1, 5)) -> dict[int, float]:
    """Fraction of rows whose target is among the ``k`` highest scores, for each ``k`` in ``ks``.

    ``scores`` ``(N, C)`` (logits or probabilities), ``targets`` ``(N,)`` class indices. ``k >= C`` gives 1.0.
    Equals scikit-learn's ``top_k_accuracy_score(targets, scores, k=k, labels=range(C))``, ties included.

    With multi-hot ``targets`` ``(N, C)`` this is hit@k: a row is a hit when ANY of its true labels is among its
    ``k`` highest-ranked classes (same tie rule); one-hot targets give exactly the single-label accuracy. A row
    with no true label can never be a hit (it counts as a miss).
    """
    s = _scores(scores)
    ks = [int(k) for k in ks]
    if any(k < 1 for k in ks):
        raise InputError(f"ks must be positive integers, got {ks}")
    if as_numpy(targets, name="targets").ndim == 2:
        truth = multi_hot(targets, n=s.shape[0], num_classes=s.shape[1])
        if truth.shape[0] == 0:
            raise InputError("cannot compute accuracy of zero samples")
        best = np.where(truth, _ranks(s), s.shape[1]).min(axis=1)  # rank of the best-ranked true label
        return {k: float(np.mean(best < k)) for k in ks}
    y = _labels(targets, n=s.shape[0], num_classes=s.shape[1], name="targets")
    if y.size == 0:
        raise InputError("cannot compute accuracy of zero samples")
    rank = _target_rank(s, y)
    return {k: float(np.mean(rank < k)) for k in ks}


def _binary_average_precision(score: np.ndarray, truth: np.ndarray) -> float:
    """AP of one class: sum over score thresholds (distinct values, high to low) of (recall gain) x precision."""
    order = np.argsort(score, kind="mergesort")[::-1]  # scikit-learn's order: stable ascending sort, reversed
    s, t = score[order], truth[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last row of each group of tied scores
    tps = np.cumsum(t, dtype=np.int64)[ends]
    precision = tps / (ends + 1)
    recall = tps / tps[-1]
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def average_precision(scores: ArrayLike, targets: ArrayLike, num_classes: int | None = None) -> np.ndarray:
    """Per-class average precision ``(C,)`` over the samples (rows): column ``c`` of ``scores`` ranks the samples,
    the positives are the samples whose targets include ``c``. NaN for a class with no positive sample.

    ``targets``: class indices ``(N,)`` or multi-hot ``(N, C)``. Each value equals scikit-learn's
    ``average_precision_score(truth[:, c], scores[:, c])`` (non-interpolated; tied scores are one threshold).
    ``num_classes`` (optional) must equal ``C`` and validates index targets.
    """
    s = _scores(scores)
    if num_classes is not None and s.shape[1] != num_classes:
        raise InputError(f"scores have {s.shape[1]} classes but num_classes is {num_classes}")
    truth = multi_hot(targets, n=s.shape[0], num_classes=s.shape[1])
    if truth.shape[0] == 0:
        raise InputError("cannot compute average precision of zero samples")
    s = s.astype(np.float64)
    return np.array([_binary_average_precision(s[:, c], truth[:, c]) if truth[:, c].any() else np.nan for c in range(s.shape[1])])


def mean_average_precision(scores: ArrayLike, targets: ArrayLike, num_classes: int | None = None) -> float:
    """mAP: the mean of :func:`average_precision` over the classes that have at least one positive sample.

    ActivityNet's classification metric (Text4Vis Table 2): scores ``(N, C)`` of ``N`` videos (e.g. the
    view-averaged softmax), targets as class indices ``(N,)`` or multi-hot ``(N, C)`` (untrimmed videos with several
    activities). Classes without positives are left out of the mean (their AP is undefined; scikit-learn would
    warn and count them as 0), so a subset of the classes is scored like the full set restricted to its classes.
    Equals ``mean(average_precision_score(truth[:, c], scores[:, c]) for c with positives)`` of scikit-learn.

    Other implementations: Text4Vis' code (torchnet ``mAPMeter``) gives the same value when no two videos tie on a
    class score and every class has a positive (it breaks ties by sort order and counts a class without positives
    as 0); the official ActivityNet evaluation script instead interpolates precision (VOC-style envelope) over the
    top-k labels submitted per video (a different number on the same scores).
    """
    ap = average_precision(scores, targets, num_classes=num_classes)
    if np.isnan(ap).all():
        raise InputError("mean average precision needs at least one class with a positive sample")
    return float(np.nanmean(ap))


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
