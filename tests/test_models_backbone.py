"""The CLIP wrapper against transformers' own forward, and the random-model factory against the real shapes."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import CLIPModel

from openvocab.errors import ModelLoadError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.create import ARCHITECTURES, clip_config, create_model_dir


@pytest.fixture(scope="module")
def backbone(tiny_model_dir) -> ClipBackbone:
    return ClipBackbone.from_pretrained(tiny_model_dir)


@pytest.fixture(scope="module")
def reference(tiny_model_dir) -> CLIPModel:
    return CLIPModel.from_pretrained(str(tiny_model_dir)).eval()


def test_frame_features_equal_transformers_get_image_features(backbone, reference):
    pixels = torch.randn(5, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ours = backbone.encode_frames(pixels)
        theirs = reference.get_image_features(pixel_values=pixels).pooler_output
    assert ours.shape == (5, backbone.embed_dim)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_text_features_equal_transformers_get_text_features(backbone, reference):
    prompts = ["a photo of a cat", "a video of a person playing guitar.", "yoga"]
    with torch.inference_mode():
        ours, truncated = backbone.encode_prompts(prompts)
        inputs = backbone.tokenizer(prompts, padding=True, return_tensors="pt")
        theirs = reference.get_text_features(**inputs).pooler_output
    assert truncated == []
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_logits_match_clip_forward(backbone, reference):
    """cos x exp(logit_scale), our scoring path, equals CLIPModel's own logits_per_image."""
    from openvocab.scoring import similarity_logits

    pixels = torch.randn(3, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    prompts = ["a dog", "a cat barking loudly", "two people arm wrestling"]
    inputs = backbone.tokenizer(prompts, padding=True, return_tensors="pt")
    with torch.inference_mode():
        theirs = reference(pixel_values=pixels, **inputs).logits_per_image
        ours = similarity_logits(backbone.encode_frames(pixels), backbone.encode_prompts(prompts)[0], logit_scale=backbone.logit_scale)
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def test_vision_tokens_every_layer(backbone, reference):
    pixels = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        tokens = backbone.vision_tokens(pixels)
        out = reference.vision_model(pixel_values=pixels, output_hidden_states=True)
    cfg = reference.config.vision_config
    patches = (cfg.image_size // cfg.patch_size) ** 2
    assert tokens.shape == (2, cfg.num_hidden_layers + 1, 1 + patches, cfg.hidden_size)
    torch.testing.assert_close(tokens[:, -1], out.last_hidden_state)
    with torch.inference_mode():
        # the CLS token of the last layer, post-LayerNorm and projected, is the frame feature
        cls = reference.visual_projection(reference.vision_model.post_layernorm(tokens[:, -1, 0]))
        torch.testing.assert_close(cls, backbone.encode_frames(pixels), atol=1e-5, rtol=1e-5)
        chosen = backbone.vision_tokens(pixels, layers=[1])
    torch.testing.assert_close(chosen[:, 0], out.hidden_states[1])


def test_logit_scale_is_exp_of_parameter(backbone, reference):
    assert backbone.logit_scale == pytest.approx(float(reference.logit_scale.detach().exp()))


def test_fingerprint_tracks_text_weights_only(tiny_model_dir):
    a = ClipBackbone.from_pretrained(tiny_model_dir)
    b = ClipBackbone.from_pretrained(tiny_model_dir)
    assert a.fingerprint == b.fingerprint
    with torch.no_grad():
        b.clip.vision_model.post_layernorm.weight.add_(1.0)
    b._fingerprint = None
    assert b.fingerprint == a.fingerprint, "vision weights do not change text embeddings"
    with torch.no_grad():
        b.clip.text_projection.weight.mul_(1.01)
    b._fingerprint = None
    assert b.fingerprint != a.fingerprint


@pytest.mark.parametrize(
    "arch, params",
    # parameter counts of the released checkpoints openai/clip-vit-{base-patch32,base-patch16,large-patch14}
    [("vit-b-32", 151_277_313), ("vit-b-16", 149_620_737), ("vit-l-14", 427_616_513)],
)
def test_architectures_are_exact(arch, params):
    with torch.device("meta"):
        model = CLIPModel(clip_config(arch))
    assert sum(p.numel() for p in model.parameters()) == params
    assert arch in ARCHITECTURES


def test_created_directory_loads_with_transformers(tiny_model_dir):
    from transformers import CLIPProcessor

    processor = CLIPProcessor.from_pretrained(str(tiny_model_dir))
    assert len(processor.tokenizer) == 49408
    assert processor.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    marker = json.loads((tiny_model_dir / "openvocab_random_weights.json").read_text())
    assert marker["architecture"] == "tiny"
    assert ClipBackbone.from_pretrained(tiny_model_dir).random_weights
    assert (tiny_model_dir / "model.safetensors").is_file()


def test_create_refuses_to_overwrite(tmp_path):
    target = tmp_path / "m"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(Exception, match="not empty"):
        create_model_dir("tiny", target)
    assert (target / "keep.txt").read_text() == "mine"


def test_offline_hub_id_gives_one_clear_line(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as err:
        ClipBackbone.from_pretrained("openai/clip-vit-base-patch32")
    msg = str(err.value)
    assert "\n" not in msg and "openai/clip-vit-base-patch32" in msg and "local model directory" in msg


def test_directory_without_config_is_refused(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="no config.json"):
        ClipBackbone.from_pretrained(tmp_path)


def test_random_architecture_spec_builds_in_memory():
    a = ClipBackbone.from_pretrained("random:tiny")
    b = ClipBackbone.from_pretrained("random:tiny")
    assert a.random_weights and a.embed_dim == 64
    assert a.fingerprint == b.fingerprint, "seeded: the label bank stays valid across runs"
    with pytest.raises(ModelLoadError, match="unknown architecture"):
        ClipBackbone.from_pretrained("random:vit-z-1")
