"""MOV's heads (§3.1-3.2, Eq. 2-8) against a functional re-implementation from their own weights, the fusion's
wiring (which branch sees what), and the spectrogram path through a CLIP tower (interpolated position embeddings)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from openvocab.models.mov import MovCrossAttention, MovFusion, MovTemporalLayer, MovTemporalTransformer


def _mha(attn: torch.nn.MultiheadAttention, q: torch.Tensor, kv: torch.Tensor) -> torch.Tensor:
    """Multi-head attention written out: per-head softmax(QKᵀ/√d)V, then the output projection."""
    d, h = attn.embed_dim, attn.num_heads
    wq, wk, wv = attn.in_proj_weight.split(d)
    bq, bk, bv = attn.in_proj_bias.split(d)

    def heads(x: torch.Tensor) -> torch.Tensor:
        return x.reshape(*x.shape[:2], h, d // h).transpose(1, 2)  # (B, h, T, d/h)

    qh, kh, vh = heads(q @ wq.T + bq), heads(kv @ wk.T + bk), heads(kv @ wv.T + bv)
    weights = (qh @ kh.transpose(-1, -2) / (d // h) ** 0.5).softmax(-1)
    out = (weights @ vh).transpose(1, 2).reshape(*q.shape[:2], d)
    return out @ attn.out_proj.weight.T + attn.out_proj.bias


def _ln(norm: torch.nn.LayerNorm, x: torch.Tensor) -> torch.Tensor:
    return F.layer_norm(x, norm.normalized_shape, norm.weight, norm.bias, norm.eps)


def _mlp(mlp, x: torch.Tensor) -> torch.Tensor:
    return F.linear(F.gelu(F.linear(x, mlp[0].weight, mlp[0].bias)), mlp[2].weight, mlp[2].bias)


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (LayerNorm gains around 1), so no term of the equations hides behind a zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            gain = name.endswith("weight") and p.ndim == 1
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if gain else 0.0))


@torch.no_grad()
def test_cross_attention_is_eq5_6_with_separate_query_and_key_value_norms():
    ca = MovCrossAttention(dim=32, heads=4)
    _randomise(ca, 0)
    q, c = torch.randn(2, 5, 32), torch.randn(2, 7, 32)
    ln_c = _ln(ca.norm_context, c)
    q1 = _mha(ca.attn, _ln(ca.norm_query, q), ln_c) + q  # Eq. 5
    expected = (_mlp(ca.mlp, _ln(ca.norm_out, q1)) + q1).mean(1)  # Eq. 6
    torch.testing.assert_close(ca(q, c), expected, atol=1e-5, rtol=1e-5)
    assert ca.norm_query is not ca.norm_context and not torch.equal(ca.norm_query.weight, ca.norm_context.weight)


@torch.no_grad()
def test_temporal_layer_is_eq2_3_and_keeps_the_sequence():
    layer = MovTemporalLayer(32, 4)
    _randomise(layer, 1)
    z = torch.randn(3, 6, 32)
    h = _ln(layer.norm1, z)
    y = _mha(layer.attn, h, h) + z  # Eq. 2
    torch.testing.assert_close(layer(z), _mlp(layer.mlp, _ln(layer.norm2, y)) + y, atol=1e-5, rtol=1e-5)  # Eq. 3
    phi = MovTemporalTransformer(dim=32, layers=2, heads=4)
    assert phi(z).shape == (3, 6, 32)


@torch.no_grad()
def test_temporal_positions_start_at_zero_and_make_frame_order_matter():
    phi = MovTemporalTransformer(dim=32, layers=1, heads=4).eval()
    z, perm = torch.randn(1, 6, 32), torch.tensor([5, 3, 1, 0, 2, 4])
    torch.testing.assert_close(phi(z[:, perm]), phi(z)[:, perm], atol=1e-5, rtol=1e-5)  # equivariant at step 0
    phi.position.normal_(std=0.5)
    assert not torch.allclose(phi(z[:, perm]).mean(1), phi(z).mean(1), atol=1e-3), "with positions the pooled feature depends on order"


@torch.no_grad()
def test_fusion_wiring_video_queries_the_other_stream_the_other_queries_the_backbone_video():
    mov = MovFusion(other="flow", dim=32, layers=1, heads=4).eval()
    _randomise(mov, 2)
    v, f = torch.randn(2, 4, 32), torch.randn(2, 4, 32)
    out = mov(v, f)
    assert out.video.shape == out.other.shape == out.frozen_video.shape == (2, 32)
    torch.testing.assert_close(out.frozen_video, v.mean(1))
    # x_m (Eq. 7-8) attends to the backbone's v, not to φ_v(v): changing φ_v leaves it unchanged and moves v_m
    before = mov(v, f)
    _randomise(mov.video_temporal, 3)
    after = mov(v, f)
    torch.testing.assert_close(after.other, before.other)
    assert not torch.allclose(after.video, before.video, atol=1e-4)
    # v_m (Eq. 5-6) attends to the other stream: changing the flow input moves it
    assert not torch.allclose(mov(v, f + torch.randn_like(f)).video, after.video, atol=1e-4)  # not a constant shift: LayerNorm removes it
    audio = MovFusion(other="audio", dim=32, layers=1, heads=4)
    assert audio(v, torch.randn(2, 32)).other.shape == (2, 32)
    with pytest.raises(ValueError, match="flow' or 'audio"):
        MovFusion(other="depth")


def test_a_128x800_spectrogram_passes_through_a_vit_b16_tower_with_interpolated_positions():
    """MOV §4.2: the spectrogram image (3 duplicated channels, 128 mel bins x 800 frames for 8 s) goes through the CLIP
    vision tower with its position embedding bilinearly interpolated to the 8 x 50 patch grid; at the native grid the
    interpolation returns the original embedding exactly."""
    from openvocab.models.backbone import ClipBackbone

    bb = ClipBackbone.from_pretrained("random:vit-b-16")
    emb = bb.clip.vision_model.embeddings
    native = emb.interpolate_pos_encoding(torch.zeros(1, emb.num_positions, emb.embed_dim), 224, 224)
    torch.testing.assert_close(native, emb.position_embedding.weight.unsqueeze(0))
    with torch.no_grad():
        spec = torch.randn(1, 128, 800).expand(3, -1, -1).unsqueeze(0)  # (1, 3, 128, 800)
        out = bb.encode_frames(spec)
        image = torch.randn(2, 3, 224, 224)
        plain = bb.clip.vision_model(pixel_values=image).pooler_output
    assert out.shape == (1, bb.embed_dim) and torch.isfinite(out).all()
    torch.testing.assert_close(bb.clip.visual_projection(plain), bb.encode_frames(image).detach(), atol=1e-5, rtol=1e-5)
