"""The CLIP wrapper against transformers' own forward, and the random-model factory against the real shapes."""

from __future__ import annotations

import itertools
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


# ---------------------------------------------------------------- text: sorted batches padded to their own longest
_MIXED_PROMPTS = [
    "a photo of a cat",
    "yoga",
    "",
    "a video of a person playing guitar very loudly in the rain.",
    "a person " + "juggling many bright orange balls " * 30,  # longer than 77 tokens: truncated
    "a demonstration of a person doing arm wrestling.",
    "dog",
    "a example of a person practicing cleaning the pool with a long brush.",
]


@pytest.mark.parametrize("batch_size", [1, 3, 256])
def test_sorted_short_padding_equals_padding_to_77_and_transformers(backbone, reference, batch_size):
    """Batches padded to their own longest prompt (sorted by length) give the embeddings of 77-token inputs."""
    with torch.inference_mode():
        ours, truncated = backbone.encode_prompts(_MIXED_PROMPTS, batch_size=batch_size)
        full = backbone.tokenizer(_MIXED_PROMPTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        assert full["input_ids"].shape == (len(_MIXED_PROMPTS), 77)
        at_77 = backbone.encode_text(full["input_ids"], full["attention_mask"])
        theirs = reference.get_text_features(**full).pooler_output
    assert truncated == [4]
    assert ours.dtype == torch.float32 and ours.shape == (len(_MIXED_PROMPTS), backbone.embed_dim)
    torch.testing.assert_close(ours, at_77, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_short_padding_also_holds_for_argmax_pooling(backbone, reference, monkeypatch):
    """Released OpenAI configs carry the pre-2023 ``eos_token_id = 2``: transformers then pools at the arg-max id,
    which is the first <|endoftext|> (the largest id) -- padding with it must not move that position."""
    monkeypatch.setattr(backbone.clip.text_model, "eos_token_id", 2)
    monkeypatch.setattr(reference.text_model, "eos_token_id", 2)
    with torch.inference_mode():
        ours, _ = backbone.encode_prompts(_MIXED_PROMPTS, batch_size=3)
        full = backbone.tokenizer(_MIXED_PROMPTS, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        theirs = reference.get_text_features(**full).pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_encode_prompts_reports_progress(backbone):
    calls: list[tuple[int, int]] = []
    out, _ = backbone.encode_prompts(_MIXED_PROMPTS, batch_size=3, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(3, 8), (6, 8), (8, 8)]
    assert out.shape[0] == 8
    empty, cut = backbone.encode_prompts([], progress=lambda d, t: calls.append((d, t)))
    assert empty.shape == (0, backbone.embed_dim) and cut == [] and len(calls) == 3
    with pytest.raises(TypeError):
        backbone.encode_prompts("one string")
    with pytest.raises(ValueError, match="batch_size"):
        backbone.encode_prompts(["a"], batch_size=0)


def test_encode_labels_progress_counts_prompts(backbone, caplog):
    from openvocab.text.prompts import prompt_set

    prompts = prompt_set("ensemble")
    labels = ["playing guitar", "yoga", "juggling " * 80]
    calls: list[tuple[int, int]] = []
    with caplog.at_level("WARNING"):
        emb = backbone.encode_labels(labels, prompts, progress=lambda d, t: calls.append((d, t)))
    total = len(labels) * len(prompts.templates)
    assert emb.shape == (3, backbone.embed_dim)
    assert calls and calls[-1] == (total, total) and all(b[0] > a[0] for a, b in itertools.pairwise(calls))
    assert "truncated" in caplog.text and "juggling" in caplog.text
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


# ---------------------------------------------------------------- text: shared prefixes computed once
def _template_prompts() -> list[str]:
    from openvocab.text.prompts import build_prompts, prompt_set

    labels = [
        "playing guitar",
        "playing drums",
        "playing cello",
        "yoga",
        "arm wrestling",
        "riding a bike",
        "dog barking",
        "playing ice hockey",
        "juggling " * 40,
    ]  # the last one is truncated to the 77-token context
    return build_prompts(labels, prompt_set("ensemble")) + ["a photo of a cat", "", "an unrelated sentence"]


@pytest.mark.parametrize("eos_token_id", [None, 2])  # None: the model's own (49407); 2: the released OpenAI configs
def test_shared_prefixes_equal_transformers_on_77_token_inputs(backbone, reference, monkeypatch, eos_token_id):
    from openvocab.models.text_encoding import plan_prefixes, pooled_positions

    if eos_token_id is not None:
        monkeypatch.setattr(backbone.clip.text_model, "eos_token_id", eos_token_id)
        monkeypatch.setattr(reference.text_model, "eos_token_id", eos_token_id)
    prompts = _template_prompts()
    ids = backbone.tokenizer(prompts, truncation=True, max_length=77)["input_ids"]
    plan = plan_prefixes(ids, pooled_positions(ids, backbone.clip.text_model.eos_token_id))
    assert len(plan.prefixes) >= 28 and max(len(p) for p in plan.prefixes) >= 7, "templates (and 'playing') are shared"
    with torch.inference_mode():
        shared, truncated = backbone.encode_prompts(prompts, batch_size=16)
        plain, _ = backbone.encode_prompts(prompts, batch_size=16, share_prefixes=False)
        full = backbone.tokenizer(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        theirs = reference.get_text_features(**full).pooler_output
    assert truncated == list(range(8 * 28, 9 * 28))
    torch.testing.assert_close(shared, theirs, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(plain, theirs, atol=1e-5, rtol=1e-5)


def test_plan_prefixes_never_covers_the_pooled_token():
    from openvocab.models.text_encoding import plan_prefixes, pooled_positions

    ids = [[1, 5, 6, 9, 3]] * 4 + [[1, 5, 7, 3]] * 4 + [[1, 5, 6]] * 2  # 3 = end of text; the last rows have none
    pooled = pooled_positions(ids, 3)
    assert pooled == [4] * 4 + [3] * 4 + [0] * 2
    plan = plan_prefixes(ids, pooled, min_shared=4)
    assert [plan.prefix_length(i) for i in range(10)] == [4] * 4 + [3] * 4 + [0] * 2
    assert all(plan.prefix_length(i) <= p for i, p in enumerate(pooled))
    plan = plan_prefixes(ids, pooled, min_shared=8)
    assert [plan.prefix_length(i) for i in range(8)] == [2] * 8  # only (1, 5) is shared by 8 rows
    assert pooled_positions([[1, 9, 4, 9]], 2) == [1]  # eos_token_id 2: the first arg-max


def test_shared_prefix_rows_without_end_of_text_pool_like_transformers(backbone, reference):
    """A row without <|endoftext|> (no CLIP tokenizer makes one) pools at position 0 in transformers (run here on the
    unpadded row: padding with 0, which the causal mask hides); such rows take no prefix and still match."""
    from openvocab.models.text_encoding import encode_token_ids

    good = backbone.tokenizer(["a photo of a person doing yoga."] * 9)["input_ids"]
    ids = [*good, [49406, 320, 1125, 539]]  # no end-of-text token
    with torch.inference_mode():
        ours = encode_token_ids(backbone.clip.text_model, backbone.clip.text_projection, ids, pad_id=49407, batch_size=4)
        padded = torch.zeros((len(ids), 77), dtype=torch.long)
        for i, seq in enumerate(ids):
            padded[i, : len(seq)] = torch.tensor(seq)
        theirs = reference.get_text_features(input_ids=padded).pooler_output
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_prefix_cache_bound_falls_back_to_fewer_prefixes(backbone, reference, monkeypatch):
    from openvocab.models import text_encoding

    prompts = _template_prompts()
    with torch.inference_mode():
        full = backbone.tokenizer(prompts, padding="max_length", truncation=True, max_length=77, return_tensors="pt")
        theirs = reference.get_text_features(**full).pooler_output
        for limit in (2 * 1024 * 64 * 4 * 2, 1):  # room for a few short prefixes only; room for none
            monkeypatch.setattr(text_encoding, "MAX_PREFIX_CACHE_BYTES", limit)
            ours, _ = backbone.encode_prompts(prompts, batch_size=32)
            torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
