"""Multi-label metrics of open-vocabulary multi-label video classification (§4.4, §4.6 of the multi-label paper).

* :func:`aupr` -- the area under the precision-recall curve over ALL video-label pairs (micro): the ``(N, C)`` scores
  and multi-hot targets are flattened to ``N·C`` binary decisions, as the paper summarises a dataset with one
  AUPR. The area is the non-interpolated average precision (a sum over score thresholds of recall gain × precision;
  tied scores are one threshold), scikit-learn's ``average_precision_score(targets.ravel(), scores.ravel())``.
  Per-class AP / mAP are :func:`openvocab.eval.metrics.average_precision` / ``mean_average_precision``.
* :func:`f1_curve` -- micro precision, recall and F1 of the decisions ``score >= t`` at every distinct score ``t``
  (Fig. 6's F1-vs-threshold curves come from it), one sort, no loop over thresholds.
* :func:`peak_f1` -- §4.4 "Peak F1": the F1 at the threshold an oracle picks for the dataset, with that threshold.
* :func:`f1_at` -- F1 at given thresholds (e.g. a calibrated one on a held-out split).
* :func:`min_f1_threshold` -- §4.6: the threshold that maximises the MINIMUM F1 over several validation datasets
  (one threshold that works across kinds of concepts), searched over the union of their distinct scores.
* :func:`multilabel_metrics` -- all of it for one dataset as a dict (``openvocab evaluate``, a trainer's validation).

Scores are probabilities or any monotone score; targets are multi-hot ``(N, C)`` (0/1 or bool). A pair set without
a positive has no AUPR (one-line error); F1 is 0 where nothing is predicted and nothing is true is impossible here
(at least one positive is required).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from openvocab.errors import InputError
from openvocab.eval.metrics import ArrayLike, as_numpy

__all__ = ["F1Curve", "aupr", "f1_at", "f1_curve", "min_f1_threshold", "multilabel_metrics", "peak_f1"]


def _pairs(scores: ArrayLike, targets: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    s = as_numpy(scores, name="scores").astype(np.float64)
    t = as_numpy(targets, name="targets")
    if s.shape != t.shape or s.ndim not in (1, 2):
        raise InputError(f"scores and multi-hot targets must have the same shape (N, C), got {s.shape} and {t.shape}")
    if t.size and not np.isin(t, (0, 1)).all():
        raise InputError("multi-hot targets must be 0/1")
    if not np.isfinite(s).all():
        raise InputError("scores must be finite")
    s, t = s.ravel(), t.ravel().astype(bool)
    if not t.any():
        raise InputError("no positive video-label pair: precision-recall metrics are undefined")
    return s, t


@dataclass(frozen=True)
class F1Curve:
    """Micro precision / recall / F1 of ``score >= threshold`` at each distinct score, thresholds descending."""

    thresholds: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    f1: np.ndarray


def _curve(s: np.ndarray, t: np.ndarray) -> F1Curve:
    order = np.argsort(s, kind="mergesort")[::-1]  # scikit-learn's order: stable ascending sort, reversed
    s, t = s[order], t[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # last pair of each group of tied scores
    tp = np.cumsum(t, dtype=np.int64)[ends]
    predicted = ends + 1
    positives = int(t.sum())
    precision = tp / predicted
    recall = tp / positives
    f1 = 2 * tp / (predicted + positives)  # 2TP / (2TP + FP + FN)
    return F1Curve(thresholds=s[ends], precision=precision, recall=recall, f1=f1)


def aupr(scores: ArrayLike, targets: ArrayLike) -> float:
    """Micro AUPR over all video-label pairs (module docstring), in ``[0, 1]``."""
    curve = _curve(*_pairs(scores, targets))
    return float(np.sum(np.diff(np.r_[0.0, curve.recall]) * curve.precision))


def f1_curve(scores: ArrayLike, targets: ArrayLike) -> F1Curve:
    """Precision, recall and F1 over all video-label pairs at every distinct score as the threshold."""
    return _curve(*_pairs(scores, targets))


def peak_f1(scores: ArrayLike, targets: ArrayLike) -> tuple[float, float]:
    """§4.4 Peak F1: ``(best F1, its threshold)`` over all thresholds (the highest such threshold on ties)."""
    curve = f1_curve(scores, targets)
    best = int(np.argmax(curve.f1))
    return float(curve.f1[best]), float(curve.thresholds[best])


def f1_at(scores: ArrayLike, targets: ArrayLike, thresholds: float | Sequence[float] | np.ndarray) -> np.ndarray | float:
    """Micro F1 of ``score >= t`` for each ``t`` (a float for a single threshold)."""
    s, t = _pairs(scores, targets)
    ts = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    ranked = np.sort(s)
    positives_sorted = np.sort(s[t])
    predicted = s.size - np.searchsorted(ranked, ts, side="left")  # pairs with score >= t
    tp = positives_sorted.size - np.searchsorted(positives_sorted, ts, side="left")
    f1 = 2 * tp / (predicted + positives_sorted.size)
    return float(f1[0]) if np.ndim(thresholds) == 0 else f1


def min_f1_threshold(datasets: Sequence[tuple[ArrayLike, ArrayLike]]) -> tuple[float, list[float]]:
    """§4.6: the threshold maximising the minimum F1 across ``datasets`` (``(scores, multi-hot targets)`` each) and
    the F1 of each dataset there. Candidates are every distinct score of any dataset; ties go to the highest."""
    if not datasets:
        raise InputError("min_f1_threshold needs at least one labelled dataset")
    candidates = np.unique(np.concatenate([_pairs(s, t)[0] for s, t in datasets]))[::-1]
    per_dataset = np.stack([np.atleast_1d(f1_at(s, t, candidates)) for s, t in datasets])
    worst = per_dataset.min(axis=0)
    best = int(np.argmax(worst))
    return float(candidates[best]), [float(v) for v in per_dataset[:, best]]


def multilabel_metrics(scores: ArrayLike, targets: ArrayLike, *, threshold: float | None = None) -> dict:
    """The multi-label metrics of one dataset, ``(N, C)`` scores against multi-hot targets, as a JSON-able dict:

    ``aupr`` (micro over video-label pairs, §4.4), ``map`` (per-class AP averaged over the classes with a positive,
    :func:`openvocab.eval.metrics.mean_average_precision`), ``peak_f1`` and its oracle ``peak_threshold`` (§4.4),
    ``positives`` (positive pairs) and, with ``threshold`` (e.g. a calibrated one), ``threshold`` and ``f1`` there.
    For a trainer's validation of a multi-label run: ``multilabel_metrics(view-averaged σ scores, multi-hot targets)``.
    """
    from openvocab.eval.metrics import mean_average_precision

    sc, tg = as_numpy(scores, name="scores"), as_numpy(targets, name="targets")
    if sc.ndim != 2:
        raise InputError(f"scores must have shape (N, C), got {sc.shape}")
    s, t = _pairs(sc, tg)
    curve = _curve(s, t)
    best = int(np.argmax(curve.f1))
    out = {
        "aupr": float(np.sum(np.diff(np.r_[0.0, curve.recall]) * curve.precision)),
        "map": mean_average_precision(sc.astype(np.float64), tg),
        "peak_f1": float(curve.f1[best]),
        "peak_threshold": float(curve.thresholds[best]),
        "positives": int(t.sum()),
    }
    if threshold is not None:
        out["threshold"] = float(threshold)
        out["f1"] = float(f1_at(s, t, float(threshold)))
    return out
