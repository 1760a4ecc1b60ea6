"""Metrics against scikit-learn: top-k (with ties), mean class accuracy, confusion matrix; multi-view averaging."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn import metrics as skm

from openvocab.errors import InputError
from openvocab.eval.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    predict,
    topk_accuracy,
)


def random_case(seed: int, n: int = 200, c: int = 12, *, ties: bool, absent: tuple[int, ...] = ()):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 4, (n, c)).astype(np.float32) if ties else rng.normal(size=(n, c)).astype(np.float32)
    present = np.setdiff1d(np.arange(c), absent)
    targets = rng.choice(present, size=n)
    return scores, targets


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_topk_matches_sklearn(seed, ties):
    scores, targets = random_case(seed, ties=ties, absent=(2, 7))
    ours = topk_accuracy(scores, targets, ks=(1, 2, 5, 12))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # k >= C is "meaningless" to sklearn but defined (1.0)
        for k in (1, 2, 5, 12):
            ref = skm.top_k_accuracy_score(targets, scores, k=k, labels=np.arange(12))
            assert ours[k] == pytest.approx(ref, abs=1e-12), (k, ours[k], ref)
    assert ours[12] == 1.0
    assert topk_accuracy(torch.from_numpy(scores), torch.from_numpy(targets), ks=(1, 5)) == {1: ours[1], 5: ours[5]}


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("ties", [False, True])
def test_mean_class_accuracy_and_confusion_match_sklearn(seed, ties):
    scores, targets = random_case(seed, ties=ties, absent=(0, 5))
    preds = predict(scores)
    # top-1 from predict() agrees with top-1 accuracy, ties included
    assert np.mean(preds == targets) == pytest.approx(topk_accuracy(scores, targets, ks=(1,))[1])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about predicted classes absent from y_true
        ref = skm.balanced_accuracy_score(targets, preds)
    assert mean_class_accuracy(scores, targets) == pytest.approx(ref, abs=1e-12)
    assert mean_class_accuracy(preds, targets, num_classes=12) == pytest.approx(ref, abs=1e-12)
    assert mean_class_accuracy(torch.from_numpy(scores), torch.from_numpy(targets)) == pytest.approx(ref, abs=1e-12)
    cm = confusion_matrix(preds, targets, 12)
    assert cm.dtype == np.int64
    assert np.array_equal(cm, skm.confusion_matrix(targets, preds, labels=np.arange(12)))
    assert np.array_equal(confusion_matrix(torch.from_numpy(scores), torch.from_numpy(targets), 12), cm)
    assert cm[0].sum() == 0 and cm[5].sum() == 0


def test_tie_rule_and_hand_cases():
    scores = np.array([[1.0, 1.0, 0.0], [0.2, 0.5, 0.3], [0.0, 0.0, 0.0]])
    assert predict(scores).tolist() == [1, 1, 2]  # ties go to the higher class index, as sklearn's ranking
    targets = np.array([0, 1, 0])
    acc = topk_accuracy(scores, targets, ks=(1, 2, 3))
    assert acc == {1: pytest.approx(1 / 3), 2: pytest.approx(2 / 3), 3: 1.0}
    # per-class recall: class 0 -> 0/2, class 1 -> 1/1; class 2 absent from targets is left out
    assert mean_class_accuracy(scores, targets) == pytest.approx(0.5)


def test_bad_inputs_raise_input_error():
    with pytest.raises(InputError):
        topk_accuracy(np.zeros((3, 4)), np.array([0, 1]))
    with pytest.raises(InputError):
        topk_accuracy(np.zeros((2, 4)), np.array([0, 4]))
    with pytest.raises(InputError):
        topk_accuracy(np.full((1, 2), np.nan), np.array([0]))
    with pytest.raises(InputError):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    with pytest.raises(InputError):
        mean_class_accuracy(np.zeros((0, 3)), np.zeros(0, dtype=int))


def test_multi_view_rule_is_the_mean_of_per_view_probabilities():
    """The one multi-view rule (scoring.average_views / view_probabilities / clip_scores) against a hand-written
    numpy reference: softmax per view, then the mean over views."""
    from openvocab.scoring import clip_scores, view_probabilities

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 12, 7))
    e = np.exp(logits - logits.max(-1, keepdims=True))
    ref = (e / e.sum(-1, keepdims=True)).mean(1)
    out = view_probabilities(torch.from_numpy(logits).float())
    assert out.shape == (5, 7) and np.allclose(out.numpy(), ref, atol=1e-6) and np.allclose(out.sum(-1).numpy(), 1.0)
    video, labels = torch.from_numpy(rng.normal(size=(5, 12, 16))).float(), torch.from_numpy(rng.normal(size=(7, 16))).float()
    cos = (video / video.norm(dim=-1, keepdim=True)) @ (labels / labels.norm(dim=-1, keepdim=True)).T
    assert torch.allclose(clip_scores(video, labels, logit_scale=30.0), (30.0 * cos).softmax(-1).mean(1), atol=1e-6)
    assert not torch.allclose(clip_scores(video, labels, logit_scale=30.0), (30.0 * cos.mean(1)).softmax(-1), atol=1e-3), "not the mean of logits"
