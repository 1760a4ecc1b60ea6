"""Evaluation plots: confusion matrices, the inter-class correlation map of a classifier (Text4Vis Fig. 1/A.5) and
per-class accuracy gains of one run over another (MOV Fig. 3, :func:`plot_class_gains`), and the multi-label curves
of the multi-label paper's Fig. 6: F1 against the decision threshold with a calibrated threshold marked
(:func:`plot_f1_thresholds`) and precision against recall (:func:`plot_precision_recall`), one line per dataset.

Text4Vis visualises the correlation between the rows of an offline classifier (textual embeddings, LDA, random
normal/orthogonal matrices) as the cosine similarity of its L2-normalised class vectors; :func:`class_correlation`
computes that matrix and :func:`plot_class_correlation` draws it. matplotlib (the ``plots`` extra) is imported
only when a plot is drawn, and only its object-oriented API with the Agg canvas is used, so no global pyplot
backend is changed. PNGs are written atomically (:func:`openvocab.atomic.atomic_path`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from openvocab.atomic import atomic_path
from openvocab.errors import InputError
from openvocab.eval.metrics import as_numpy

__all__ = ["class_correlation", "plot_class_correlation", "plot_class_gains", "plot_confusion_matrix", "plot_f1_thresholds", "plot_precision_recall"]


def class_correlation(embeddings) -> np.ndarray:
    """``(C, D)`` class vectors -> ``(C, C)`` cosine similarities of the L2-normalised rows (float64)."""
    e = as_numpy(embeddings, name="embeddings").astype(np.float64)
    if e.ndim != 2 or e.shape[0] == 0:
        raise InputError(f"embeddings must have shape (C, D), got {e.shape}")
    norms = np.linalg.norm(e, axis=1, keepdims=True)
    unit = e / np.maximum(norms, 1e-12)
    return unit @ unit.T


def _figure(size: float):
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise InputError("plots need matplotlib: pip install 'openvocab[plots]'") from exc
    fig = Figure(figsize=(size, size), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike) -> Path:
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return Path(path)


def _heatmap(
    matrix: np.ndarray,
    labels: Sequence[str],
    path,
    *,
    title: str,
    cbar_label: str,
    xlabel: str,
    ylabel: str,
    vmin: float | None,
    vmax: float | None,
    cmap: str,
    annotate: bool,
) -> Path:
    n = matrix.shape[0]
    fig = _figure(max(4.0, 0.28 * n + 2.5))
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(matrix, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label=cbar_label)
    font = max(4, min(9, int(240 / max(n, 1))))
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    ax.set_xticklabels(labels, rotation=90, fontsize=font)
    ax.set_yticklabels(labels, fontsize=font)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if annotate and n <= 12:
        threshold = 0.5 * (vmax if vmax is not None else float(matrix.max()))
        for i in range(n):
            for j in range(n):
                value = matrix[i, j]
                text = f"{value:.2f}" if not float(value).is_integer() else f"{int(value)}"
                ax.text(j, i, text, ha="center", va="center", fontsize=font, color="white" if value > threshold else "black")
    return _save(fig, path)


def _check_names(class_names: Sequence[str], n: int) -> list[str]:
    names = [str(c) for c in class_names]
    if len(names) != n:
        raise InputError(f"{len(names)} class names for a {n}-class matrix")
    return names


def plot_confusion_matrix(cm, class_names: Sequence[str], path: str | os.PathLike, *, normalise: bool = True, max_classes: int = 50) -> Path:
    """Draw a confusion matrix (rows: true, columns: predicted) to a PNG at ``path``.

    ``normalise`` divides each row by its count (per-class recall on the diagonal; empty rows stay 0). With more
    than ``max_classes`` classes, the ``max_classes`` classes with the most misclassified samples (as true or as
    predicted class) are shown, in index order — the title says so.
    """
    m = as_numpy(cm, name="confusion matrix").astype(np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] == 0:
        raise InputError(f"confusion matrix must be square (C, C), got {m.shape}")
    names = _check_names(class_names, m.shape[0])
    if max_classes < 1:
        raise InputError(f"max_classes must be >= 1, got {max_classes}")
    if normalise:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows > 0)
    title = "Confusion matrix" + (" (row-normalised)" if normalise else "")
    counts = as_numpy(cm).astype(np.float64)
    if m.shape[0] > max_classes:
        errors = counts.sum(axis=0) + counts.sum(axis=1) - 2 * np.diag(counts)
        keep = np.sort(np.argsort(-errors, kind="stable")[:max_classes])
        m = m[np.ix_(keep, keep)]
        names = [names[i] for i in keep]
        title += f": {max_classes} of {counts.shape[0]} classes with most errors"
    return _heatmap(
        m,
        names,
        path,
        title=title,
        cbar_label="fraction of true class" if normalise else "videos",
        xlabel="predicted",
        ylabel="true",
        vmin=0.0,
        vmax=1.0 if normalise else None,
        cmap="Blues",
        annotate=True,
    )


def plot_class_correlation(embeddings, class_names: Sequence[str], path: str | os.PathLike, *, max_classes: int = 20) -> Path:
    """Draw the inter-class correlation map of a classifier's rows (Text4Vis Fig. 1 / Fig. A.5) to a PNG.

    ``embeddings`` ``(C, D)``: one row per class (text embeddings, LDA directions, ...). The first
    ``max_classes`` classes are shown, as in the paper's figures of a class subset.
    """
    e = as_numpy(embeddings, name="embeddings")
    if e.ndim != 2:
        raise InputError(f"embeddings must have shape (C, D), got {e.shape}")
    names = _check_names(class_names, e.shape[0])
    if max_classes < 1:
        raise InputError(f"max_classes must be >= 1, got {max_classes}")
    k = min(max_classes, e.shape[0])
    corr = class_correlation(e[:k])
    title = "Inter-class cosine similarity" + (f" (first {k} of {e.shape[0]} classes)" if k < e.shape[0] else "")
    return _heatmap(
        corr, names[:k], path, title=title, cbar_label="cosine similarity", xlabel="class", ylabel="class", vmin=-1.0, vmax=1.0, cmap="RdBu_r", annotate=False
    )


def plot_class_gains(gains: Sequence[Sequence], path: str | os.PathLike, *, top: int = 20, title: str | None = None) -> Path:
    """Draw per-class accuracy gains (MOV Fig. 3) as horizontal bars to a PNG: the ``top`` classes with the largest
    gains (green, largest at the top) above the ``top`` with the largest losses (red), in accuracy points (%).

    ``gains``: ``(class, acc_ours, acc_baseline, gain)`` rows with fractions, as
    :func:`openvocab.eval.compare.class_gains` returns. MOV shows the top 20 of each side. Classes with no change
    are not drawn; with none changed the chart says so.
    """
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise InputError(f"top must be a positive integer, got {top!r}")
    rows = [(str(g[0]), 100.0 * float(g[3])) for g in gains]
    better = sorted((r for r in rows if r[1] > 0), key=lambda r: (-r[1], r[0]))[:top]
    worse = sorted((r for r in rows if r[1] < 0), key=lambda r: (r[1], r[0]))[:top]
    shown = better + worse[::-1]  # top to bottom: largest gain ... smallest gain, smallest loss ... largest loss
    fig = _figure(7.0)
    fig.set_size_inches(7.0, max(2.5, 0.26 * len(shown) + 1.2))
    ax = fig.add_subplot(1, 1, 1)
    if shown:
        positions = list(range(len(shown)))[::-1]
        values = [v for _, v in shown]
        ax.barh(positions, values, color=["#2a9d3f" if v > 0 else "#d1495b" for v in values], height=0.75)
        ax.set_yticks(positions)
        ax.set_yticklabels([name for name, _ in shown], fontsize=8)
        ax.axvline(0.0, color="black", linewidth=0.8)
        ax.set_ylim(-0.75, len(shown) - 0.25)
    else:
        ax.set_yticks([])
        ax.text(0.5, 0.5, "no class changed accuracy", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("accuracy gain (percentage points)")
    ax.set_title(title or f"Per-class accuracy gain: top {len(better)} gains and top {len(worse)} losses of {len(rows)} classes")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


#: At most this many points per curve are drawn (a curve has one point per distinct score: up to millions).
MAX_CURVE_POINTS = 4000


def _thin(n: int) -> np.ndarray:
    """Indices of at most :data:`MAX_CURVE_POINTS` evenly spread points of ``n`` (first and last kept)."""
    return np.arange(n) if n <= MAX_CURVE_POINTS else np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.int64))


def _curves(curves: Mapping) -> dict:
    if not curves:
        raise InputError("no curve to plot")
    return {str(name): c for name, c in curves.items()}


def plot_f1_thresholds(curves: Mapping, path: str | os.PathLike, *, threshold: float | None = None, threshold_label: str | None = None) -> Path:
    """Fig. 6 of the multi-label paper: micro F1 against the decision threshold, one line per dataset
    (``{name: F1Curve}`` from :func:`openvocab.eval.multilabel.f1_curve`), the ``threshold`` in use (e.g. the
    calibrated one) as a dashed vertical line with each dataset's F1 there, and each dataset's peak F1 as a dot."""
    from openvocab.eval.multilabel import F1Curve

    curves = _curves(curves)
    fig = _figure(6.0)
    fig.set_size_inches(7.0, 4.5)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        if not isinstance(c, F1Curve):
            raise InputError(f"{name}: expected an F1Curve")
        keep = _thin(c.thresholds.size)
        (line,) = ax.plot(c.thresholds[keep], c.f1[keep], drawstyle="steps-post", label=name, linewidth=1.4)
        best = int(np.argmax(c.f1))
        ax.plot([c.thresholds[best]], [c.f1[best]], "o", color=line.get_color(), markersize=4)
    if threshold is not None:
        ax.axvline(
            float(threshold),
            color="black",
            linestyle="--",
            linewidth=1.0,
            label=f"threshold {float(threshold):.3g}" + (f" ({threshold_label})" if threshold_label else ""),
        )
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("threshold on the multi-label score")
    ax.set_ylabel("F1 (all video-label pairs)")
    ax.set_title("F1 across thresholds (dots: peak F1)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)


def plot_precision_recall(curves: Mapping, path: str | os.PathLike) -> Path:
    """Precision against recall over all video-label pairs, one line per dataset (``{name: F1Curve}``), with each
    dataset's AUPR in the legend."""
    from openvocab.eval.multilabel import F1Curve

    curves = _curves(curves)
    fig = _figure(5.0)
    ax = fig.add_subplot(1, 1, 1)
    for name, c in curves.items():
        if not isinstance(c, F1Curve):
            raise InputError(f"{name}: expected an F1Curve")
        area = float(np.sum(np.diff(np.r_[0.0, c.recall]) * c.precision))
        keep = _thin(c.recall.size)
        ax.plot(np.r_[0.0, c.recall[keep]], np.r_[c.precision[0], c.precision[keep]], drawstyle="steps-pre", label=f"{name} (AUPR {area:.3f})", linewidth=1.4)
    ax.set_xlim(0.0, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall (all video-label pairs)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    return _save(fig, path)
