"""MOV's inference equations (§3.3-3.4, Eq. 10-12) against hand-computed values, and the effect of τ_v (Table 7)."""

from __future__ import annotations

import math

import pytest
import torch

from openvocab.scoring import MOV_BETA, MOV_TAU, MOV_TAU_VIDEO, mov_base_probabilities, mov_novel_probabilities


def _unit(*angles_deg: float) -> torch.Tensor:
    """2-D unit vectors at the given angles: cos(angle between rows) is known exactly."""
    a = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([a.cos(), a.sin()], dim=-1).float()


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def test_defaults_are_the_papers():
    assert (MOV_TAU, MOV_TAU_VIDEO, MOV_BETA) == (0.01, 0.003, 0.25)


def test_base_probabilities_equal_eq10_by_hand():
    labels = _unit(0.0, 60.0, 90.0)
    video = _unit(30.0)[0] * 3.0  # not normalised: sim() is the cosine
    got = mov_base_probabilities(video, labels, tau=0.1)
    expected = _softmax([math.cos(math.radians(d)) / 0.1 for d in (30.0, 30.0, 60.0)])
    assert got.tolist() == pytest.approx(expected, abs=1e-6)


def test_novel_probabilities_equal_eq11_12_by_hand():
    labels = _unit(0.0, 45.0, 100.0)
    fused, frozen = _unit(20.0)[0], _unit(80.0)[0]
    got = mov_novel_probabilities(fused, frozen, labels, tau_other=0.05, tau_video=0.02, beta=0.3)
    p_f = _softmax([math.cos(math.radians(a)) / 0.05 for a in (20.0, 25.0, 80.0)])
    p_v = _softmax([math.cos(math.radians(a)) / 0.02 for a in (80.0, 35.0, 20.0)])
    assert got.tolist() == pytest.approx([0.3 * f + 0.7 * v for f, v in zip(p_f, p_v)], abs=1e-6)
    assert float(got.sum()) == pytest.approx(1.0, abs=1e-6)
    batch = mov_novel_probabilities(torch.stack([fused, frozen]), torch.stack([frozen, fused]), labels)
    assert batch.shape == (2, 3) and torch.allclose(batch.sum(-1), torch.ones(2))
    with pytest.raises(ValueError, match="beta"):
        mov_novel_probabilities(fused, frozen, labels, beta=1.5)


def test_lowering_tau_video_lets_the_frozen_video_ranking_win_as_in_table7():
    """Constructed case in CLIP's regime: the frozen video feature ranks the true class 0 first but with cosine margins
    of 0.005 (a flat distribution at τ 0.01), while the fused flow feature is confidently wrong (class 1). With
    τ_v = τ = 0.01 the mixture follows the flow stream (Table 7's first row: final accuracy below the video's); with
    τ_v = 0.003 the video distribution is as sharp as the flow one and the mixture ranks class 0 first (row 2)."""
    labels = torch.eye(3, 4)  # three orthonormal label rows; a 4th, label-free axis carries the rest of each feature
    frozen = torch.tensor([0.300, 0.295, 0.290, 0.86])  # unit-ish: cosines ~0.30 / 0.295 / 0.29
    fused = torch.tensor([0.25, 0.30, 0.20, 0.90])
    flat = mov_novel_probabilities(fused, frozen, labels, tau_video=0.01)
    sharp = mov_novel_probabilities(fused, frozen, labels, tau_video=0.003)
    assert int(flat.argmax()) == 1 and int(sharp.argmax()) == 0
    assert int(mov_novel_probabilities(fused, frozen, labels, beta=0.0).argmax()) == 0, "β = 0 is the frozen video alone"


def test_mov_loss_is_eq9_by_hand():
    from openvocab.train.losses import mov_loss

    g = torch.Generator().manual_seed(0)
    v, x, b = torch.randn(4, 8, generator=g), torch.randn(4, 8, generator=g), torch.randn(5, 8, generator=g)
    y = torch.tensor([0, 3, 4, 1])

    def ce(feat):
        logits = torch.nn.functional.normalize(feat, dim=-1) @ torch.nn.functional.normalize(b, dim=-1).T / 0.01
        return -logits.log_softmax(-1)[torch.arange(4), y].mean()

    assert float(mov_loss(v, x, b, y)) == pytest.approx(float(0.5 * ce(v) + 0.5 * ce(x)), rel=1e-5)
    assert float(mov_loss(v, x, b, y, alpha=1.0)) == pytest.approx(float(ce(v)), rel=1e-5)
    b.requires_grad_(True)
    mov_loss(v.requires_grad_(True), x, b, y).backward()
    assert b.grad is None and v.grad is not None, "the text embeddings B stay frozen"
