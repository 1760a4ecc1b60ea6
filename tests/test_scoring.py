"""The scoring path: TAP, cosine x scale, softmax / sigmoid, multi-view averaging, segments."""

from __future__ import annotations

import pytest
import torch

from openvocab.scoring import label_probabilities, score_segments, score_views, similarity_logits


def _unit(x):
    return x / x.norm(dim=-1, keepdim=True)


def test_similarity_is_scaled_cosine():
    v = torch.tensor([[3.0, 4.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    torch.testing.assert_close(similarity_logits(v, t, logit_scale=100.0), torch.tensor([[60.0, 80.0, -60.0]]))


def test_softmax_sums_to_one_and_multilabel_is_independent():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 6, generator=g) * 10
    p = label_probabilities(logits, multi_label=False)
    torch.testing.assert_close(p.sum(-1), torch.ones(4))
    m = label_probabilities(logits, multi_label=True, bias=-25.0)  # σ(a·cos + b), b from the calibration
    torch.testing.assert_close(m, torch.sigmoid(logits - 25.0))
    with pytest.raises(ValueError, match="bias"):  # no hidden default bias: the calibration gives it
        label_probabilities(logits, multi_label=True)
    # adding labels changes softmax scores but never another label's multi-label score
    more = torch.cat([logits, torch.full((4, 2), 30.0)], dim=1)
    torch.testing.assert_close(label_probabilities(more, multi_label=True, bias=-25.0)[:, :6], m)
    assert not torch.allclose(label_probabilities(more)[:, :6], p)


def test_views_average_probabilities_of_tap_embeddings():
    g = torch.Generator().manual_seed(1)
    frames = torch.randn(3, 4, 8, 16, generator=g)  # crops, temporal views, T, D
    labels = torch.randn(5, 16, generator=g)
    got = score_views(frames, labels, logit_scale=50.0)
    expected = torch.zeros(5)
    for c in range(3):
        for v in range(4):
            clip = frames[c, v].mean(0)  # TAP
            expected += (50.0 * _unit(clip) @ _unit(labels).T).softmax(-1)
    torch.testing.assert_close(got, expected / 12)


def test_segments_pool_the_frames_inside_each_window():
    d = 8
    labels = torch.eye(3, d)
    # frames at 0.5 s and 1.5 s point at label 0, at 2.5 s at label 1; window 3 (3-4 s) gets no frame
    frames = torch.stack([labels[0], labels[0], labels[1]])
    times = torch.tensor([0.5, 1.5, 2.5])
    probs, kept = score_segments(frames, times, labels, boundaries=torch.tensor([0.0, 2.0, 3.0, 4.0]), logit_scale=100.0)
    assert kept.tolist() == [0, 1]
    assert probs.argmax(-1).tolist() == [0, 1]
    # a frame exactly at the end of the video belongs to the last window
    probs, kept = score_segments(labels[2:3], torch.tensor([4.0]), labels, boundaries=torch.tensor([0.0, 2.0, 4.0]), logit_scale=100.0)
    assert kept.tolist() == [1] and probs.argmax(-1).tolist() == [2]
