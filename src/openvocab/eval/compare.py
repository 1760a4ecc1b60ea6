"""Per-class comparison of two evaluations: MOV's per-class accuracy analysis (§4.5, Fig. 3).

MOV interprets what flow and audio add by the per-class accuracy gain of MOV over the CLIP baseline (video + text
only), showing the classes with the largest gains and the largest losses (Fig. 3: e.g. *yawning* and *long jump*
gain from motion, *sloshing water* and *wind noise* lose with audio). Here both runs are the predictions CSVs that
``openvocab evaluate --predictions`` writes (``path,labels,predicted,score``; true labels joined by ``|``), so any
two models, recipes or modality sets can be compared on the same videos:

    gains = class_gains("mov.csv", "clip.csv")      # [(class, acc_ours, acc_base, gain), ...], largest gain first
    plot_class_gains(gains, "fig3.png")              # openvocab.eval.plots: the top gains and losses as bars

Accuracies are fractions in [0, 1]. A video counts once for each of its true classes and is correct when its
predicted (top-1) label is among them -- plain per-class top-1 accuracy (recall) for single-label data, hit@1 for
multi-label rows.
"""

from __future__ import annotations

import csv
import io
import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

from openvocab.errors import InputError

__all__ = ["ClassGain", "class_gains", "gain_report", "per_class_accuracy", "read_predictions", "summarise_gains"]

_REQUIRED = ("path", "labels", "predicted")


class Prediction(NamedTuple):
    """One row of a predictions CSV: the video, its true labels, the predicted label."""

    path: str
    labels: tuple[str, ...]
    predicted: str


class ClassGain(NamedTuple):
    """A class's accuracy in our run and in the baseline, and ``gain = ours - baseline`` (fractions)."""

    name: str
    ours: float
    baseline: float
    gain: float


def read_predictions(path: str | os.PathLike[str]) -> list[Prediction]:
    """The rows of a predictions CSV (``openvocab evaluate --predictions``). A missing file, a header without the
    ``path,labels,predicted`` columns, a malformed row or a file without rows raises :class:`InputError` naming the
    file (and line): a predictions file is written by openvocab, so a bad one is refused whole."""
    file = Path(path).expanduser()
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise InputError(f"cannot read the predictions CSV ({reason})", path=file) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [c.strip().lower() for c in next(reader, [])]
        missing = [c for c in _REQUIRED if c not in header]
        if missing:
            raise InputError(f"not a predictions CSV: the header needs {', '.join(_REQUIRED)} (got {', '.join(header) or 'nothing'})", path=file)
        col = {name: header.index(name) for name in _REQUIRED}
        rows: list[Prediction] = []
        for cells in reader:
            if not any(c.strip() for c in cells):
                continue
            if len(cells) != len(header):
                raise InputError(f"line {reader.line_num}: expected {len(header)} columns, got {len(cells)}", path=file)
            labels = tuple(x for x in cells[col["labels"]].split("|") if x)
            rows.append(Prediction(cells[col["path"]], labels, cells[col["predicted"]]))
    except csv.Error as exc:
        raise InputError(f"line {reader.line_num}: malformed CSV ({exc})", path=file) from None
    if not rows:
        raise InputError("the predictions CSV has no rows", path=file)
    return rows


def _accuracy_counts(rows: Sequence[Prediction]) -> dict[str, tuple[int, int]]:
    counts: dict[str, list[int]] = {}
    for row in rows:
        hit = row.predicted in row.labels
        for label in dict.fromkeys(row.labels):
            entry = counts.setdefault(label, [0, 0])
            entry[0] += int(hit)
            entry[1] += 1
    return {name: (c, t) for name, (c, t) in sorted(counts.items())}


def per_class_accuracy(predictions_csv: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """``{class: (correct, total)}`` over the labelled videos of a predictions CSV, classes sorted by name."""
    return _accuracy_counts(read_predictions(predictions_csv))


def _video_keys(rows: Sequence[Prediction]) -> Counter:
    return Counter((r.path, r.labels) for r in rows)


def class_gains(ours_csv: str | os.PathLike[str], baseline_csv: str | os.PathLike[str]) -> list[ClassGain]:
    """Per-class accuracy of ``ours_csv`` minus that of ``baseline_csv`` (MOV Fig. 3), over the classes present in
    both, sorted by gain (largest first; ties by name). The two files must score the same videos with the same true
    labels (in any order); otherwise :class:`InputError` says how many differ and names one."""
    ours_rows, base_rows = read_predictions(ours_csv), read_predictions(baseline_csv)
    ours_keys, base_keys = _video_keys(ours_rows), _video_keys(base_rows)
    if ours_keys != base_keys:
        only_ours, only_base = ours_keys - base_keys, base_keys - ours_keys
        example = next(iter(only_ours or only_base))[0]
        side = "ours" if only_ours else "the baseline"
        raise InputError(
            f"{ours_csv} and {baseline_csv} cover different videos ({sum(only_ours.values())} rows only in ours, "
            f"{sum(only_base.values())} only in the baseline; e.g. {example} in {side}): evaluate both on the same data"
        )
    ours, base = _accuracy_counts(ours_rows), _accuracy_counts(base_rows)
    gains = []
    for name in sorted(set(ours) & set(base)):
        a = ours[name][0] / ours[name][1]
        b = base[name][0] / base[name][1]
        gains.append(ClassGain(name, a, b, a - b))
    gains.sort(key=lambda g: (-g.gain, g.name))
    return gains


def summarise_gains(gains: Sequence[ClassGain]) -> dict:
    """``{"classes", "improved", "worse", "unchanged", "mean_gain"}`` (mean over classes, a fraction)."""
    values = [float(g[3]) for g in gains]
    eps = 1e-12
    return {
        "classes": len(values),
        "improved": sum(v > eps for v in values),
        "worse": sum(v < -eps for v in values),
        "unchanged": sum(abs(v) <= eps for v in values),
        "mean_gain": sum(values) / len(values) if values else 0.0,
    }


def gain_report(ours_csv: str | os.PathLike[str], baseline_csv: str | os.PathLike[str], *, plot: str | os.PathLike[str] | None = None, top: int = 20) -> dict:
    """:func:`class_gains` summarised for a JSON result (``improved``, ``worse``, ``mean_gain``, ``plot``), with the
    Fig. 3 bar chart written to ``plot`` when given (:func:`openvocab.eval.plots.plot_class_gains`)."""
    gains = class_gains(ours_csv, baseline_csv)
    report = summarise_gains(gains)
    report["baseline"] = str(baseline_csv)
    report["plot"] = None
    if plot is not None:
        from openvocab.eval.plots import plot_class_gains

        report["plot"] = str(plot_class_gains(gains, plot, top=top))
    return report
