"""Mean average precision (ActivityNet's metric, Text4Vis Table 2) against scikit-learn, and hit@k for multi-hot
targets (untrimmed videos with several labels)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from openvocab.errors import InputError
from openvocab.eval.metrics import (
    average_precision,
    mean_average_precision,
    multi_hot,
    topk_accuracy,
)


def _sklearn_map(scores: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-class ``average_precision_score`` (NaN where a class has no positive) and their mean over the others."""
    per_class = np.full(truth.shape[1], np.nan)
    for c in range(truth.shape[1]):
        if truth[:, c].any():
            per_class[c] = skm.average_precision_score(truth[:, c], scores[:, c])
    return per_class, float(np.nanmean(per_class))


def _case(seed: int, *, ties: bool, multi: bool, n: int = 150, c: int = 9):
    rng = np.random.default_rng(seed)
    # ties: few distinct values, so many videos share a class score (one threshold in AP)
    scores = rng.integers(0, 5, (n, c)).astype(np.float64) if ties else rng.normal(size=(n, c))
    if multi:
        truth = rng.random((n, c)) < 0.2
        truth[np.arange(n), rng.integers(0, c, n)] = True  # every video has at least one label
        truth[:, 4] = False  # a class without positives: left out of the mean
        return scores, truth, truth
    targets = rng.choice(np.setdiff1d(np.arange(c), [4]), size=n)
    return scores, targets, np.eye(c, dtype=bool)[targets]


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("multi", [False, True])
def test_map_equals_sklearn_average_precision_per_class(seed, ties, multi):
    scores, targets, truth = _case(seed, ties=ties, multi=multi)
    ref_per_class, ref_map = _sklearn_map(scores, truth)
    ours = average_precision(scores, targets)
    assert np.isnan(ours[4]) and np.isnan(ref_per_class[4])
    np.testing.assert_allclose(ours, ref_per_class, rtol=0, atol=1e-12, equal_nan=True)
    assert mean_average_precision(scores, targets) == pytest.approx(ref_map, abs=1e-12)
    # torch inputs, multi-hot as float 0/1 and as bool give the same
    assert mean_average_precision(torch.from_numpy(scores), torch.from_numpy(truth.astype(np.float32)), num_classes=9) == pytest.approx(ref_map, abs=1e-12)
    if multi:  # the same as scikit-learn's own macro average when every class has a positive
        keep = truth.any(axis=0)
        macro = skm.average_precision_score(truth[:, keep], scores[:, keep], average="macro")
        assert mean_average_precision(scores[:, keep], truth[:, keep]) == pytest.approx(macro, abs=1e-12)


def test_map_hand_example_with_a_tie():
    # class 0: positives at scores 0.9 and 0.5, negative tied with the positive at 0.5 -> AP = 1/2 + 1/2 * 2/3
    scores = np.array([[0.9, 0.1], [0.5, 0.2], [0.5, 0.7], [0.1, 0.3]])
    targets = np.array([0, 0, 1, 1])
    ap = average_precision(scores, targets)
    assert ap[0] == pytest.approx(0.5 + 0.5 * (2 / 3))
    # class 1: ranking by column 1 is rows 2 (pos), 3 (pos), 1, 0 -> AP 1
    assert ap[1] == pytest.approx(1.0)
    assert mean_average_precision(scores, targets) == pytest.approx((ap[0] + 1.0) / 2)


def test_hit_at_k_for_multi_hot_targets_by_hand():
    scores = np.array(
        [
            [0.5, 0.3, 0.2, 0.0],  # ranks: 0, 1, 2, 3
            [0.1, 0.2, 0.3, 0.4],  # ranks: 3, 2, 1, 0
            [0.4, 0.4, 0.1, 0.1],  # tie: class 1 ranks above class 0 (higher index first), 3 above 2
            [0.9, 0.05, 0.03, 0.02],
        ]
    )
    truth = np.array(
        [
            [0, 1, 1, 0],  # best true rank 1 -> hit@2, not hit@1
            [1, 0, 0, 1],  # class 3 is top -> hit@1
            [1, 0, 0, 0],  # class 0 ranks 1 behind the tied class 1 -> hit@2 only
            [0, 0, 0, 0],  # no true label: never a hit
        ]
    )
    assert topk_accuracy(scores, truth, ks=(1, 2, 4)) == {1: 0.25, 2: 0.75, 4: 0.75}
    assert topk_accuracy(torch.from_numpy(scores), torch.from_numpy(truth).bool(), ks=(1,)) == {1: 0.25}


@pytest.mark.parametrize("ties", [False, True])
def test_hit_at_k_of_one_hot_targets_is_topk_accuracy(ties):
    scores, targets, truth = _case(7, ties=ties, multi=False)
    ks = (1, 2, 5, 9)
    assert topk_accuracy(scores, truth.astype(np.int64), ks=ks) == topk_accuracy(scores, targets, ks=ks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert topk_accuracy(scores, truth, ks=(2,))[2] == pytest.approx(skm.top_k_accuracy_score(targets, scores, k=2, labels=np.arange(9)))


def test_bad_targets_are_one_line_input_errors():
    scores = np.zeros((3, 4))
    for bad in (np.array([[0, 2, 0, 0]] * 3), np.ones((3, 5)), np.ones((2, 4)), np.zeros((3, 4, 1))):
        with pytest.raises(InputError) as err:
            mean_average_precision(scores, bad)
        assert "\n" not in str(err.value)
    with pytest.raises(InputError, match="at least one class with a positive"):
        mean_average_precision(scores, np.zeros((3, 4)))
    with pytest.raises(InputError, match="num_classes"):
        mean_average_precision(scores, np.array([0, 1, 2]), num_classes=5)
    with pytest.raises(InputError):
        multi_hot(np.array([0, 1]))  # indices need num_classes
    assert multi_hot(np.array([2, 0]), num_classes=3).tolist() == [[False, False, True], [True, False, False]]
