"""Calibrating multi-label scores across datasets (multi-label paper §4.6, Fig. 6) -- what ``openvocab calibrate`` runs.

1. Each labelled dataset's videos are embedded with the model (the path of ``openvocab evaluate``:
   :func:`openvocab.eval.run.video_embeddings`) and scored against THAT dataset's own classes (open vocabulary: the
   class names through the model's label encoder): the cosine of every view with every class, ``(N, V, C)``.
2. Platt scaling (:func:`fit_platt`): a logistic regression of the label (positive / negative pair) on the cosine,
   over every (view, label) pair of every dataset (each view carries its video's labels, because the scoring path
   turns each view into probabilities before averaging them). Its slope is ``a`` (which must be positive: a higher
   cosine must mean a more likely label) and its intercept ``b``: ``p = σ(a·cos + b)``. The regularisation is weak
   (``C = PLATT_C``), only there to keep ``a`` finite on separable toy data.
3. The threshold: the one that maximises the MINIMUM F1 across the datasets (§4.6 "pick the threshold that maximizes
   the minimum validation F1-score for the datasets used in training"; :func:`openvocab.eval.multilabel.min_f1_threshold`)
   on the calibrated scores ``σ(a·cos + b)`` averaged over views (exactly what ``classify --multi-label`` computes).
4. Per dataset: AUPR, peak F1 at the dataset's oracle threshold, and F1 at the chosen threshold
   (:class:`openvocab.calibration.DatasetFit`), saved with the calibration.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from openvocab.calibration import Calibration, DatasetFit, now_utc
from openvocab.data.manifests import Manifest
from openvocab.errors import InputError
from openvocab.eval.multilabel import F1Curve, f1_curve, min_f1_threshold, multilabel_metrics
from openvocab.io.sampling import SamplerSpec

__all__ = ["PLATT_C", "LabelledCosines", "calibrate", "check_multilabel_manifest", "dataset_cosines", "fit_calibration", "fit_platt"]

#: Inverse L2 strength of the Platt fit (scikit-learn's ``C``; the intercept is not penalised): weak -- on real data
#: (thousands of pairs) it changes nothing, on separable toy data it keeps the slope finite.
PLATT_C = 1e4
PLATT_MAX_ITER = 1000
PLATT_TOL = 1e-10


@dataclass
class LabelledCosines:
    """One labelled dataset scored by a model: cosines ``(N, V, C)`` of each view with each class, multi-hot targets
    ``(N, C)``, the class names, and the videos that could not be decoded (skipped)."""

    name: str
    cosines: torch.Tensor
    targets: np.ndarray
    class_names: list[str]
    failed: list[str] = field(default_factory=list)

    def scores(self, calibration: Calibration) -> np.ndarray:
        """``σ(a·cos + b)`` per view, averaged over views -> ``(N, C)`` (the one scoring path)."""
        from openvocab.scoring import view_probabilities

        probs = view_probabilities(calibration.scale * self.cosines.float(), multi_label=True, bias=calibration.bias)  # (N, V, C) -> (N, C)
        return probs.numpy().astype(np.float64)


def check_multilabel_manifest(manifest: Manifest) -> tuple[Manifest, list[str]]:
    """The records a multi-label calibration / evaluation can use (those with labels) and notes for the user (the
    reader's skipped rows, ``manifest.problems``, are the caller's to print).

    Raises a one-line :class:`InputError` when nothing is left, or when the vocabulary has fewer than two classes
    (no negative pair to calibrate against)."""
    from dataclasses import replace

    notes = []
    labelled = [r for r in manifest.records if r.labels]
    unlabelled = len(manifest.records) - len(labelled)
    if unlabelled:
        notes.append(
            f"{manifest.source}: {unlabelled} of {len(manifest.records)} videos have an empty label list and are skipped (every video needs its labels)"
        )
    if not labelled:
        if not manifest.records:
            manifest.require_nonempty()
        raise InputError("no video has a label (empty label lists): a multi-label calibration needs each video's labels", path=manifest.source)
    if len(manifest.classes) < 2:
        raise InputError(f"only one class ({manifest.classes[0] if manifest.classes else '-'}): multi-label scores need negatives too", path=manifest.source)
    if all(len(r.labels) == 1 for r in labelled):
        notes.append(
            f"{manifest.source}: every video has exactly one label, so it has no multi-label positives: "
            "calibrating as if that label were the video's whole label set"
        )
    return replace(manifest, records=labelled), notes


@torch.inference_mode()
def dataset_cosines(model, manifest: Manifest, *, sampler: SamplerSpec, batch_size: int = 8, workers: int = 2, device: str = "cpu") -> LabelledCosines:
    """Embed ``manifest``'s videos with ``model`` (:func:`openvocab.eval.run.video_embeddings`) and take the cosine of
    every view with every class of the manifest's own vocabulary (:func:`openvocab.eval.run.class_embeddings`)."""
    from openvocab.eval.run import class_embeddings, video_embeddings
    from openvocab.scoring import similarity_logits

    names = manifest.class_names(normalised=True)
    classes = class_embeddings(model, names)
    videos, targets, index = video_embeddings(model, manifest, sampler=sampler, batch_size=batch_size, workers=workers, device=device, multi_label=True)
    decoded = set(index.tolist())
    failed = [r.path for i, r in enumerate(manifest.records) if i not in decoded]
    cos = similarity_logits(videos, classes, logit_scale=1.0)  # (N, V, C)
    return LabelledCosines(name=manifest.source, cosines=cos.float(), targets=targets.numpy() > 0.5, class_names=names, failed=failed)


def fit_platt(cosines, labels, *, c: float = PLATT_C) -> tuple[float, float]:
    """Platt scaling: ``(a, b)`` of the logistic regression ``P(label) = σ(a·cos + b)`` on 1-D ``cosines`` and 0/1
    ``labels`` (scikit-learn's ``LogisticRegression`` with L2 ``C = c`` on the slope, lbfgs)."""
    from sklearn.linear_model import LogisticRegression

    x = np.asarray(cosines, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    if x.shape[0] != y.shape[0]:
        raise InputError(f"{x.shape[0]} cosines but {y.shape[0]} labels")
    if not y.any() or y.all():
        raise InputError("a Platt fit needs positive and negative video-label pairs")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ConvergenceWarning at the tolerance floor; the optimum is checked by tests
        lr = LogisticRegression(C=c, solver="lbfgs", max_iter=PLATT_MAX_ITER, tol=PLATT_TOL).fit(x, y)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def calibration_pairs(datasets: Sequence[LabelledCosines]) -> tuple[np.ndarray, np.ndarray]:
    """Every (view, label) pair of every dataset: cosines and 0/1 labels (a view carries its video's labels)."""
    xs, ys = [], []
    for d in datasets:
        cos = d.cosines.double().numpy()  # (N, V, C)
        xs.append(cos.reshape(-1))
        ys.append(np.broadcast_to(d.targets[:, None, :], cos.shape).reshape(-1))
    return np.concatenate(xs), np.concatenate(ys)


def fit_calibration(datasets: Sequence[LabelledCosines], *, model: str | None = None, sampler: SamplerSpec | None = None) -> Calibration:
    """Platt ``(a, b)`` over all pairs of all ``datasets``, then the max-min-F1 threshold (module docstring)."""
    if not datasets:
        raise InputError("calibration needs at least one labelled dataset")
    a, b = fit_platt(*calibration_pairs(datasets))
    if not a > 0:
        raise InputError(
            f"the fitted scale a = {a:.4g} is not positive: on these datasets a higher cosine does not make a label more likely "
            "(a model with random weights, or wrong labels?); nothing saved"
        )
    fitted = Calibration(scale=a, bias=b, threshold=0.5)
    scored = [(d.scores(fitted), d.targets) for d in datasets]
    threshold, _ = min_f1_threshold(scored)
    fits = []
    for d, (s, t) in zip(datasets, scored):
        m = multilabel_metrics(s, t, threshold=threshold)
        fits.append(
            DatasetFit(
                name=d.name,
                videos=int(t.shape[0]),
                classes=int(t.shape[1]),
                positives=m["positives"],
                aupr=m["aupr"],
                peak_f1=m["peak_f1"],
                peak_threshold=m["peak_threshold"],
                f1=m["f1"],
            )
        )
    n = len(datasets)
    return Calibration(
        scale=a,
        bias=b,
        threshold=threshold,
        source=f"openvocab calibrate on {n} dataset{'s' if n > 1 else ''}: Platt scaling, threshold maximising the minimum F1",
        model=model,
        created=now_utc(),
        frames=None if sampler is None else sampler.frames,
        views=None if sampler is None else sampler.views,
        datasets=tuple(fits),
    )


def f1_curves(datasets: Sequence[LabelledCosines], calibration: Calibration) -> dict[str, F1Curve]:
    """Each dataset's precision / recall / F1 curve under ``calibration`` (for Fig. 6-style plots)."""
    return {d.name: f1_curve(d.scores(calibration), d.targets) for d in datasets}


@dataclass
class CalibrationReport:
    calibration: Calibration
    datasets: list[LabelledCosines]
    notes: list[str]


def calibrate(
    model_source: str,
    manifests: Sequence[Manifest],
    *,
    sampler: SamplerSpec = SamplerSpec(),
    batch_size: int = 8,
    workers: int = 2,
    device: str = "cpu",
    progress=None,
) -> CalibrationReport:
    """Load the model, score each manifest against its own classes and fit a calibration (module docstring).

    ``progress(done, total, name)`` after each dataset. Videos that fail to decode are skipped and listed in each
    dataset's ``failed``; manifests are checked by :func:`check_multilabel_manifest` first (its notes are returned)."""
    from openvocab.models.factory import load_recognizer

    if not manifests:
        raise InputError("calibration needs at least one labelled manifest")
    checked, notes = [], []
    for m in manifests:
        usable, why = check_multilabel_manifest(m)
        checked.append(usable)
        notes.extend(why)
    model = load_recognizer(model_source, device=device).eval()
    if getattr(model, "fused_outputs", False):
        raise InputError("a MOV run scores single-label probabilities (Eq. 10-12): it has no multi-label scores to calibrate", path=model_source)
    datasets = []
    for i, m in enumerate(checked):
        datasets.append(dataset_cosines(model, m, sampler=sampler, batch_size=batch_size, workers=workers, device=device))
        if progress is not None:
            progress(i + 1, len(checked), m.source)
    return CalibrationReport(calibration=fit_calibration(datasets, model=str(model_source), sampler=sampler), datasets=datasets, notes=notes)
