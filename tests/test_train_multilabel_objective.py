"""Open-vocabulary multi-label §3.3: batch construction (:func:`batch_classes`) and the weighted BCE of Eq. 2
(:func:`multilabel_bce`)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from openvocab.errors import InputError
from openvocab.train.losses import multilabel_bce
from openvocab.train.samplers import batch_classes

POSITIVES = [{3, 7}, {7}, {0, 19, 11}]  # B = 3, P_B = {0, 3, 7, 11, 19}


def _check_targets(positives, classes, targets):
    assert classes.dtype == np.int64 and targets.dtype == np.float32
    assert np.all(np.diff(classes) > 0)  # sorted ascending, distinct
    assert targets.shape == (len(positives), classes.size)
    for i, pos in enumerate(positives):
        expected = np.array([c in pos for c in classes.tolist()], dtype=np.float32)
        np.testing.assert_array_equal(targets[i], expected)


def test_batch_has_per_video_times_b_classes_and_exact_targets():
    classes, targets = batch_classes(POSITIVES, num_classes=50, rng=np.random.default_rng(0))
    assert classes.shape == (12,)
    assert {0, 3, 7, 11, 19} <= set(classes.tolist())
    _check_targets(POSITIVES, classes, targets)
    classes, targets = batch_classes(POSITIVES, num_classes=50, rng=np.random.default_rng(0), per_video=6)
    assert classes.shape == (18,)
    _check_targets(POSITIVES, classes, targets)


def test_sampled_negatives_are_never_a_positive_of_any_video():
    union = set().union(*POSITIVES)
    for seed in range(300):
        classes, targets = batch_classes(POSITIVES, num_classes=30, rng=np.random.default_rng(seed))
        negatives = set(classes.tolist()) - union
        assert len(negatives) == 12 - len(union)
        assert not negatives & union
        # a column is all-zero exactly when it is a sampled negative
        assert set(classes[targets.sum(axis=0) == 0].tolist()) == negatives


def test_negatives_cover_every_eligible_class_and_no_ineligible_one():
    rng = np.random.default_rng(123)
    union = set().union(*POSITIVES)
    counts = np.zeros(40, dtype=np.int64)
    for _ in range(2000):
        classes, _ = batch_classes(POSITIVES, num_classes=40, rng=rng)
        counts[classes] += 1
    eligible = [c for c in range(40) if c not in union]
    assert all(counts[c] == 2000 for c in union)  # positives are always present
    assert all(counts[c] > 0 for c in eligible)
    assert counts[eligible].sum() == 2000 * (12 - len(union))  # only eligible classes were drawn as negatives
    # uniform: each eligible class expected 2000·7/35 = 400 times; a very loose band
    assert counts[eligible].min() > 300 and counts[eligible].max() < 500


def test_more_positives_than_budget_keeps_all_positives_and_no_negatives():
    positives = [set(range(0, 6)), set(range(6, 11))]  # |P_B| = 11 > 4·2
    classes, targets = batch_classes(positives, num_classes=100, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(classes, np.arange(11))
    _check_targets(positives, classes, targets)


def test_small_vocabulary_uses_every_class():
    positives = [{1}, {2}, {1, 4}]  # 4B = 12 > 6 classes
    classes, targets = batch_classes(positives, num_classes=6, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(classes, np.arange(6))
    _check_targets(positives, classes, targets)


def test_video_without_positives_is_all_negatives():
    positives = [set(), {5}]
    classes, targets = batch_classes(positives, num_classes=20, rng=np.random.default_rng(1))
    assert classes.shape == (8,) and 5 in classes
    assert targets[0].sum() == 0
    _check_targets(positives, classes, targets)
    classes, targets = batch_classes([[], []], num_classes=20, rng=np.random.default_rng(1))
    assert classes.shape == (8,) and targets.sum() == 0


def test_deterministic_per_seed():
    a = batch_classes(POSITIVES, num_classes=1000, rng=np.random.default_rng(7))
    b = batch_classes(POSITIVES, num_classes=1000, rng=np.random.default_rng(7))
    c = batch_classes(POSITIVES, num_classes=1000, rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])


@pytest.mark.parametrize(
    "positives, kwargs",
    [
        ([{0, 10}], {"num_classes": 10}),
        ([{-1}], {"num_classes": 10}),
        ([{1.5}], {"num_classes": 10}),
        ([], {"num_classes": 10}),
        ([{1}], {"num_classes": 0}),
        ([{1}], {"num_classes": 10, "per_video": 0}),
    ],
)
def test_bad_inputs_raise_one_line_input_error(positives, kwargs):
    with pytest.raises(InputError) as info:
        batch_classes(positives, rng=np.random.default_rng(0), **kwargs)
    assert "\n" not in str(info.value)


# -- loss -------------------------------------------------------------------------------------------------------------


def _reference(video, labels, targets, tau, w):
    """Eq. 2 as a loop over pairs in float64, split into (positive term, unweighted negative term), both / B."""
    v = video.double() / video.double().norm(dim=1, keepdim=True)
    t = labels.double() / labels.double().norm(dim=1, keepdim=True)
    pos = neg = 0.0
    for i in range(v.shape[0]):
        for j in range(t.shape[0]):
            s = float(v[i] @ t[j])
            p = 1.0 / (1.0 + math.exp(-s / tau))
            if targets[i, j] == 1:
                pos += -math.log(p)
            else:
                neg += -math.log(1.0 - p)
    b = v.shape[0]
    return pos / b, neg / b


def _batch(seed=0, b=3, k=12, d=16):
    g = torch.Generator().manual_seed(seed)
    video = torch.randn(b, d, generator=g)
    labels = torch.randn(k, d, generator=g)
    targets = (torch.rand(b, k, generator=g) < 0.3).float()
    return video, labels, targets


@pytest.mark.parametrize("tau, w", [(0.07, 1.0), (0.5, 0.25), (1.0, 3.0)])
def test_loss_matches_pairwise_loop(tau, w):
    video, labels, targets = _batch()
    pos, neg = _reference(video, labels, targets, tau, w)
    loss = multilabel_bce(video, labels, targets, tau=tau, negative_weight=w)
    assert loss.ndim == 0
    assert torch.allclose(loss.double(), torch.tensor(pos + w * neg, dtype=torch.float64), rtol=1e-5, atol=1e-5)


def test_weight_scales_only_the_negative_term():
    video, labels, targets = _batch(seed=1)
    _, neg = _reference(video, labels, targets, 0.1, 1.0)
    l1 = multilabel_bce(video, labels, targets, tau=0.1, negative_weight=1.0)
    l2 = multilabel_bce(video, labels, targets, tau=0.1, negative_weight=2.0)
    assert math.isclose(float(l2 - l1), neg, rel_tol=1e-5, abs_tol=1e-5)
    # all-positive targets: w has no effect at all
    ones = torch.ones_like(targets)
    a = multilabel_bce(video, labels, ones, tau=0.1, negative_weight=1.0)
    b = multilabel_bce(video, labels, ones, tau=0.1, negative_weight=5.0)
    assert torch.equal(a, b)


def test_loss_is_mean_over_videos():
    video, labels, targets = _batch(seed=2)
    doubled = multilabel_bce(torch.cat([video, video]), labels, torch.cat([targets, targets]), tau=0.1, negative_weight=1.0)
    single = multilabel_bce(video, labels, targets, tau=0.1, negative_weight=1.0)
    assert torch.allclose(doubled, single)


def test_gradients_flow_to_video_and_labels():
    video, labels, targets = _batch(seed=3)
    video.requires_grad_(True)
    labels.requires_grad_(True)
    multilabel_bce(video, labels, targets, tau=0.07, negative_weight=1.0).backward()
    for x in (video, labels):
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_large_logits_stay_finite():
    # cos = ±1 at tau = 1e-4 gives |s/τ| = 1e4: the naive log(sigmoid) would be -inf
    video = torch.tensor([[1.0, 0.0]], requires_grad=True)
    labels = torch.tensor([[1.0, 0.0], [-1.0, 0.0]], requires_grad=True)
    wrong = torch.tensor([[0.0, 1.0]])  # the aligned label is a negative, the opposite one a positive
    loss = multilabel_bce(video, labels, wrong, tau=1e-4, negative_weight=1.0)
    assert torch.isfinite(loss) and math.isclose(loss.item(), 2e4, rel_tol=1e-4)
    loss.backward()
    assert torch.isfinite(video.grad).all() and torch.isfinite(labels.grad).all()
    right = torch.tensor([[1.0, 0.0]])
    assert multilabel_bce(video, labels, right, tau=1e-4, negative_weight=1.0).item() == pytest.approx(0.0, abs=1e-6)


@pytest.mark.parametrize(
    "shapes, kwargs",
    [
        (((3, 4), (5, 4), (3, 5)), {"tau": 0.0, "negative_weight": 1.0}),
        (((3, 4), (5, 4), (3, 5)), {"tau": 0.1, "negative_weight": 0.0}),
        (((3, 4), (5, 4), (3, 5)), {"tau": 0.1, "negative_weight": -1.0}),
        (((3, 4), (5, 3), (3, 5)), {"tau": 0.1, "negative_weight": 1.0}),
        (((3, 4), (5, 4), (5, 3)), {"tau": 0.1, "negative_weight": 1.0}),
        (((3,), (5, 4), (3, 5)), {"tau": 0.1, "negative_weight": 1.0}),
    ],
)
def test_loss_bad_inputs_raise_one_line_input_error(shapes, kwargs):
    video, labels, y = torch.ones(shapes[0]), torch.ones(shapes[1]), torch.zeros(shapes[2])
    with pytest.raises(InputError) as info:
        multilabel_bce(video, labels, y, **kwargs)
    assert "\n" not in str(info.value)
