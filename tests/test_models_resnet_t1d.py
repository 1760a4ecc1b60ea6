"""CLIP-ResNet inside the recogniser: T1D (Text4Vis Table 8) placement, initialisation and temporal mixing; BatchNorm
of a frozen backbone; the ViT-only / ResNet-only temporal modules refused on the other tower."""

from __future__ import annotations

import pytest
import torch

from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import RecognizerSpec, create_recognizer
from openvocab.models.recognizer import VideoRecognizer

T = 4


def _recognizer(**spec_kwargs) -> VideoRecognizer:
    backbone = ClipBackbone.from_pretrained("random:tiny-rn")
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():  # OpenAI's init zeroes every bn3 (residual branches start at 0): give them weight, as training would
        for name, module in backbone.clip.vision_model.named_modules():
            if name.endswith("bn3"):
                module.weight.copy_(torch.rand(module.weight.shape, generator=g) + 0.5)
    spec = RecognizerSpec.single(model="random:tiny-rn", num_classes=3, classifier="orthogonal", frames=T, logit_scale=100.0, **spec_kwargs)
    return create_recognizer(spec, class_names=["a", "b", "c"], backbones={"rgb": backbone}).eval()


def _video(b: int = 2, seed: int = 0, size: int = 64) -> torch.Tensor:
    return torch.randn(b, T, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _reference_shift(x: torch.Tensor, frames: int, fold_div: int = 8) -> torch.Tensor:
    """TSM's residual shift written out: 1/8 of the channels read frame t+1, the next 1/8 frame t-1 (zeros past the
    ends), the rest frame t."""
    bt, c, h, w = x.shape
    v = x.reshape(bt // frames, frames, c, h, w)
    fold = c // fold_div
    out = v.clone()
    out[:, :, :fold] = 0
    out[:, :-1, :fold] = v[:, 1:, :fold]
    out[:, :, fold : 2 * fold] = 0
    out[:, 1:, fold : 2 * fold] = v[:, :-1, fold : 2 * fold]
    return out.reshape(bt, c, h, w)


def test_identity_t1d_leaves_the_pretrained_model_unchanged():
    plain = _recognizer()
    t1d = _recognizer(t1d_stages=(4, 5), t1d_init="identity")
    x = _video()
    with torch.no_grad():
        torch.testing.assert_close(t1d.primary_stream.frame_features(x), plain.primary_stream.frame_features(x), rtol=0, atol=1e-6)
    n_blocks = len(t1d.backbone.clip.vision_model.layer3) + len(t1d.backbone.clip.vision_model.layer4)
    assert len(t1d.t1d.convs) == n_blocks and set(t1d.t1d.convs) >= {"res4_0", "res5_0"}


def test_shift_init_equals_tsm_residual_shift_on_res4_5():
    model = _recognizer(t1d_stages=(4, 5), t1d_init="shift")
    reference = _recognizer()  # same seeded weights; shift added by hand on the residual branch of res4-5
    vision = reference.backbone.clip.vision_model
    handles = [blk.conv1.register_forward_pre_hook(lambda m, a: (_reference_shift(a[0], T),)) for layer in (vision.layer3, vision.layer4) for blk in layer]
    x = _video()
    with torch.no_grad():
        got, want = model.primary_stream.frame_features(x), reference.primary_stream.frame_features(x)
    for h in handles:
        h.remove()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        assert not torch.allclose(got, _recognizer().primary_stream.frame_features(x), atol=1e-4), "the shift must change the features"


def test_t1d_mixes_neighbouring_frames_of_one_video_only():
    model = _recognizer(t1d_stages=(4, 5), t1d_init="shift")
    plain = _recognizer()
    x = _video()
    y = x.clone()
    y[0, 0] = 3.0 * torch.randn(y[0, 0].shape, generator=torch.Generator().manual_seed(9))  # a different frame 0 in video 0
    with torch.no_grad():
        fx, fy = model.primary_stream.frame_features(x), model.primary_stream.frame_features(y)
        px, py = plain.primary_stream.frame_features(x), plain.primary_stream.frame_features(y)
    assert (fy[0, 1] - fx[0, 1]).abs().max() > 1e-4, "frame 1 sees frame 0 through T1D"
    torch.testing.assert_close(fy[1], fx[1], rtol=0, atol=1e-6)  # the other video of the batch is untouched
    torch.testing.assert_close(py[0, 1], px[0, 1], rtol=0, atol=1e-6)  # without T1D frames are independent


def test_t1d_weights_train_and_are_saved():
    model = _recognizer(t1d_stages=(5,), t1d_init="shift").train()
    logits = model(_video())
    logits.logsumexp(-1).mean().backward()
    names = [n for n, p in model.trainable_named_parameters() if n.startswith("streams.rgb.t1d.")]
    assert names and all(model.get_parameter(n).grad is not None for n in names)
    assert any(k.startswith("streams.rgb.t1d.convs.res5_0.") for k in model.state_dict())
    assert not any(k.startswith("streams.rgb.t1d.convs.res4_") for k in model.state_dict())


def test_frozen_backbone_keeps_batchnorm_statistics():
    model = _recognizer(train_backbone=False).train()
    bn = model.backbone.clip.vision_model.bn1
    before = bn.running_mean.clone()
    with torch.no_grad():
        model(_video())
    assert not bn.training and torch.equal(bn.running_mean, before)
    trained = _recognizer(train_backbone=True).train()
    bn = trained.backbone.clip.vision_model.bn1
    before = bn.running_mean.clone()
    with torch.no_grad():
        trained(_video())
    assert bn.training and not torch.equal(bn.running_mean, before), "a trained backbone updates BatchNorm as usual"


def test_vit_and_resnet_temporal_modules_are_refused_on_the_other_tower():
    with pytest.raises(ValueError, match="TokenT1D needs a ViT"):
        _recognizer(token_t1d_blocks=(0,))
    backbone = ClipBackbone.from_pretrained("random:tiny")
    spec = RecognizerSpec.single(model="random:tiny", num_classes=3, classifier="orthogonal", t1d_stages=(4,))
    with pytest.raises(ValueError, match="T1D needs a CLIP-ResNet"):
        create_recognizer(spec, class_names=["a", "b", "c"], backbones={"rgb": backbone})
    with pytest.raises(ValueError, match="res2-res5"):
        _recognizer(t1d_stages=(6,))


def test_resnet_backbone_refuses_vit_tokens_and_describes_itself():
    backbone = ClipBackbone.from_pretrained("random:tiny-rn")
    assert backbone.is_resnet and "CLIP-ResNet" in backbone.describe()
    with pytest.raises(ValueError, match="ViT"):
        backbone.vision_tokens(torch.zeros(1, 3, 224, 224))
    assert not ClipBackbone.from_pretrained("random:tiny").is_resnet
