"""Multi-label metrics (multi-label paper §4.4, §4.6) against scikit-learn and brute force, in the same test."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, f1_score

from openvocab.errors import InputError
from openvocab.eval.metrics import average_precision
from openvocab.eval.multilabel import aupr, f1_at, f1_curve, min_f1_threshold, peak_f1


def _random(seed: int, n: int = 40, c: int = 7, *, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, c)) < 0.25).astype(np.int64)
    scores = rng.random((n, c)) + 0.4 * targets  # informative, not perfect
    if ties:
        scores = np.round(scores, 1)  # many tied scores, across positives and negatives
    return scores, targets


def _brute_f1(scores: np.ndarray, targets: np.ndarray, threshold: float) -> float:
    return f1_score(targets.ravel(), (scores >= threshold).ravel(), zero_division=0.0)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_aupr_is_sklearns_micro_average_precision_and_per_class_ap_too(seed, ties):
    scores, targets = _random(seed, ties=ties)
    assert aupr(scores, targets) == pytest.approx(average_precision_score(targets.ravel(), scores.ravel()), abs=1e-12)
    assert aupr(scores, targets) == pytest.approx(average_precision_score(targets, scores, average="micro"), abs=1e-12)
    per_class = average_precision(scores, targets)
    for c in range(targets.shape[1]):
        assert per_class[c] == pytest.approx(average_precision_score(targets[:, c], scores[:, c]), abs=1e-12)


def test_a_class_without_positives_leaves_micro_aupr_defined_and_its_ap_nan():
    scores, targets = _random(4)
    targets[:, 2] = 0
    assert np.isnan(average_precision(scores, targets)[2])
    assert aupr(scores, targets) == pytest.approx(average_precision_score(targets.ravel(), scores.ravel()), abs=1e-12)


@pytest.mark.parametrize("seed,ties", [(5, False), (6, True)])
def test_peak_f1_equals_a_brute_force_threshold_search(seed, ties):
    scores, targets = _random(seed, n=25, c=5, ties=ties)
    best = max((_brute_f1(scores, targets, t), t) for t in np.unique(scores))
    f1, threshold = peak_f1(scores, targets)
    assert f1 == pytest.approx(best[0], abs=1e-12)
    assert _brute_f1(scores, targets, threshold) == pytest.approx(f1, abs=1e-12), "the returned threshold achieves the peak"
    curve = f1_curve(scores, targets)
    assert np.all(np.diff(curve.thresholds) < 0), "one point per distinct score, descending"
    for t, p, r, f in zip(curve.thresholds, curve.precision, curve.recall, curve.f1):
        predicted = scores >= t
        tp = np.sum(predicted & (targets == 1))
        assert (p, r, f) == pytest.approx((tp / predicted.sum(), tp / targets.sum(), _brute_f1(scores, targets, t)), abs=1e-12)


def test_f1_at_any_threshold_matches_sklearn_including_between_and_beyond_scores():
    scores, targets = _random(7, ties=True)
    thresholds = [-1.0, 0.0, 0.35, 0.5, 0.73, 1.0, 1.4, 9.0]
    got = f1_at(scores, targets, thresholds)
    assert got == pytest.approx([_brute_f1(scores, targets, t) for t in thresholds], abs=1e-12)
    assert f1_at(scores, targets, 0.5) == pytest.approx(_brute_f1(scores, targets, 0.5), abs=1e-12)


def test_min_f1_threshold_maximises_the_worst_dataset():
    a, ta = _random(8)
    b, tb = _random(9)
    b = b * 0.5  # the second "kind of concepts" scores lower: one threshold must trade them off
    threshold, f1s = min_f1_threshold([(a, ta), (b, tb)])
    grid = np.unique(np.r_[a.ravel(), b.ravel()])
    worst = [min(_brute_f1(a, ta, t), _brute_f1(b, tb, t)) for t in grid]
    assert min(f1s) == pytest.approx(max(worst), abs=1e-12)
    assert f1s == pytest.approx([_brute_f1(a, ta, threshold), _brute_f1(b, tb, threshold)], abs=1e-12)
    assert min(f1s) > min(peak_f1(a, ta)[0], peak_f1(b, tb)[0]) - 0.5, "a usable common threshold exists here"
    alone = peak_f1(a, ta)[1]
    assert _brute_f1(b, tb, alone) <= min(f1s) + 1e-12, "the first dataset's own oracle threshold is no better for the worst case"


def test_perfect_and_hopeless_rankings():
    targets = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]])
    assert aupr(targets * 0.9 + 0.05, targets) == pytest.approx(1.0)
    assert peak_f1(targets * 0.9 + 0.05, targets) == (pytest.approx(1.0), pytest.approx(0.95))
    constant = np.full(targets.shape, 0.3)
    assert aupr(constant, targets) == pytest.approx(3 / 9), "one tied threshold: precision = prevalence"


@pytest.mark.parametrize(
    "scores,targets,words",
    [
        (np.zeros((2, 3)), np.zeros((2, 3)), "no positive"),
        (np.zeros((2, 3)), np.ones((3, 2)), "same shape"),
        (np.zeros((2, 3)), np.full((2, 3), 2), "0/1"),
        (np.full((2, 3), np.nan), np.ones((2, 3)), "finite"),
    ],
)
def test_bad_inputs_are_one_line_errors(scores, targets, words):
    with pytest.raises(InputError, match=words) as info:
        aupr(scores, targets)
    assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="at least one"):
        min_f1_threshold([])
