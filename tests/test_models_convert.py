"""``openvocab model convert``: OpenAI CLIP / open_clip checkpoints (OpenAI key layout) -> openvocab model directories.

Correctness is shown against references that do not go through convert.py: transformers' own CLIPModel (exported to
OpenAI's layout by an inverse mapping written here), a functional re-implementation of OpenAI's CLIP forward
(``nn.MultiheadAttention`` semantics via ``F.multi_head_attention_forward``), and ``nn.MultiheadAttention`` itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn
from transformers import CLIPConfig, CLIPModel

from openvocab.cli import main
from openvocab.errors import InputError, ModelLoadError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.convert import (
    convert_checkpoint,
    convert_state_dict,
    load_openai_state_dict,
)

# ViT with 2 vision heads (width 128) and 1 text head (width 64): heads = width // 64, as OpenAI's build_model
# infers; embedding dim 48 differs from both widths so a transposed projection cannot pass unnoticed
TEXT = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=256,
    num_hidden_layers=2,
    num_attention_heads=1,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=48,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)
VISION = dict(
    hidden_size=128, intermediate_size=512, num_hidden_layers=2, num_attention_heads=2, patch_size=16, image_size=64, hidden_act="quick_gelu", projection_dim=48
)


def _randomise(model: nn.Module, seed: int) -> nn.Module:
    """Every floating tensor random (LayerNorm affine and biases included: nothing left at an identity value)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.is_floating_point():
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * (0.02 if "embedding" in name else 0.2))
    return model.eval()


@pytest.fixture(scope="module")
def hf_vit() -> CLIPModel:
    return _randomise(CLIPModel(CLIPConfig(text_config=TEXT, vision_config=VISION, projection_dim=48)), seed=1)


# ------------------------------------------------------------------------------------- inverse mapping (test's own)
def _blocks_to_openai(sd: dict, src: str, dst: str, n: int, out: dict) -> None:
    for i in range(n):
        s, d = f"{src}.encoder.layers.{i}.", f"{dst}transformer.resblocks.{i}."
        for kind in ("weight", "bias"):
            out[f"{d}attn.in_proj_{kind}"] = torch.cat([sd[f"{s}self_attn.{p}_proj.{kind}"] for p in ("q", "k", "v")])
            out[f"{d}attn.out_proj.{kind}"] = sd[f"{s}self_attn.out_proj.{kind}"]
            out[f"{d}ln_1.{kind}"] = sd[f"{s}layer_norm1.{kind}"]
            out[f"{d}ln_2.{kind}"] = sd[f"{s}layer_norm2.{kind}"]
            out[f"{d}mlp.c_fc.{kind}"] = sd[f"{s}mlp.fc1.{kind}"]
            out[f"{d}mlp.c_proj.{kind}"] = sd[f"{s}mlp.fc2.{kind}"]


def _text_to_openai(model: nn.Module, out: dict) -> None:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out["token_embedding.weight"] = sd["text_model.embeddings.token_embedding.weight"]
    out["positional_embedding"] = sd["text_model.embeddings.position_embedding.weight"]
    _blocks_to_openai(sd, "text_model", "", model.text_model.config.num_hidden_layers, out)
    out["ln_final.weight"] = sd["text_model.final_layer_norm.weight"]
    out["ln_final.bias"] = sd["text_model.final_layer_norm.bias"]
    out["text_projection"] = sd["text_projection.weight"].t().contiguous()  # OpenAI: x @ P, P (width, embed)
    out["logit_scale"] = sd["logit_scale"]


def vit_to_openai(model: CLIPModel) -> dict[str, torch.Tensor]:
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}
    out: dict[str, torch.Tensor] = {}
    _text_to_openai(model, out)
    out["visual.class_embedding"] = sd["vision_model.embeddings.class_embedding"]
    out["visual.conv1.weight"] = sd["vision_model.embeddings.patch_embedding.weight"]
    out["visual.positional_embedding"] = sd["vision_model.embeddings.position_embedding.weight"]
    for ours, theirs in (("ln_pre", "pre_layrnorm"), ("ln_post", "post_layernorm")):
        for kind in ("weight", "bias"):
            out[f"visual.{ours}.{kind}"] = sd[f"vision_model.{theirs}.{kind}"]
    _blocks_to_openai(sd, "vision_model", "visual.", model.config.vision_config.num_hidden_layers, out)
    out["visual.proj"] = sd["visual_projection.weight"].t().contiguous()
    return out


@pytest.fixture(scope="module")
def openai_sd(hf_vit) -> dict[str, torch.Tensor]:
    return vit_to_openai(hf_vit)


# ------------------------------------------------------------------------------------- OpenAI's forward, functionally
def _ln(x, sd, name):
    return F.layer_norm(x, x.shape[-1:], sd[f"{name}.weight"], sd[f"{name}.bias"])


def _openai_block(x, sd, p, heads, mask):  # x: (L, N, E), as OpenAI's ResidualAttentionBlock
    h = _ln(x, sd, p + "ln_1")
    a, _ = F.multi_head_attention_forward(
        h,
        h,
        h,
        x.shape[-1],
        heads,
        sd[p + "attn.in_proj_weight"],
        sd[p + "attn.in_proj_bias"],
        None,
        None,
        False,
        0.0,
        sd[p + "attn.out_proj.weight"],
        sd[p + "attn.out_proj.bias"],
        need_weights=False,
        attn_mask=mask,
    )
    x = x + a
    h = F.linear(_ln(x, sd, p + "ln_2"), sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])
    h = h * torch.sigmoid(1.702 * h)  # QuickGELU
    return x + F.linear(h, sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])


def openai_image_features(sd, pixels, heads, layers):
    w = sd["visual.conv1.weight"]
    x = F.conv2d(pixels, w, stride=w.shape[-1]).flatten(2).permute(0, 2, 1)
    cls = sd["visual.class_embedding"] + torch.zeros(x.shape[0], 1, x.shape[-1])
    x = _ln(torch.cat([cls, x], dim=1) + sd["visual.positional_embedding"], sd, "visual.ln_pre").permute(1, 0, 2)
    for i in range(layers):
        x = _openai_block(x, sd, f"visual.transformer.resblocks.{i}.", heads, None)
    return _ln(x.permute(1, 0, 2)[:, 0], sd, "visual.ln_post") @ sd["visual.proj"]


def openai_text_features(sd, ids, heads, layers):
    x = (sd["token_embedding.weight"][ids] + sd["positional_embedding"]).permute(1, 0, 2)
    mask = torch.full((ids.shape[1], ids.shape[1]), float("-inf")).triu(1)
    for i in range(layers):
        x = _openai_block(x, sd, f"transformer.resblocks.{i}.", heads, mask)
    x = _ln(x.permute(1, 0, 2), sd, "ln_final")
    return x[torch.arange(ids.shape[0]), ids.argmax(dim=-1)] @ sd["text_projection"]


def _token_ids(n: int = 3, seed: int = 0) -> torch.Tensor:
    """OpenAI-style tokens: SOT, random words, EOT (the largest id), zero padding to 77."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.zeros(n, 77, dtype=torch.long)
    for row, length in enumerate((5, 12, 40)[:n]):
        ids[row, 0] = 49406
        ids[row, 1 : length - 1] = torch.randint(1, 49000, (length - 2,), generator=g)
        ids[row, length - 1] = 49407
    return ids


def _pixels(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(3))


# ------------------------------------------------------------------------------------- equivalence
def test_vit_conversion_reproduces_transformers_and_openai_forward(hf_vit, openai_sd, tmp_path):
    """safetensors in OpenAI layout -> model directory -> ClipBackbone: the same image and text features as the
    original CLIPModel AND as OpenAI's forward run directly on the OpenAI-layout tensors."""
    save_file(openai_sd, str(tmp_path / "vit.safetensors"))
    seen = []
    out = convert_checkpoint(tmp_path / "vit.safetensors", tmp_path / "model", on_architecture=seen.append)
    arch = seen[0]
    assert (arch.kind, arch.image_size, arch.patch_size, arch.vision_width, arch.vision_layers, arch.vision_heads) == ("vit", 64, 16, 128, 2, 2)
    assert (arch.text_width, arch.text_layers, arch.text_heads, arch.context_length, arch.vocab_size, arch.embed_dim) == (64, 2, 1, 77, 49408, 48)
    assert {"config.json", "model.safetensors", "preprocessor_config.json", "tokenizer_config.json"} <= {p.name for p in out.iterdir()}

    backbone = ClipBackbone.from_pretrained(out)
    assert not backbone.random_weights and backbone.image_spec.size == 64 and len(backbone.tokenizer) == 49408
    pixels, ids = _pixels(), _token_ids()
    with torch.inference_mode():
        ours_img, ours_txt = backbone.encode_frames(pixels), backbone.encode_text(ids)
        ref_img = hf_vit.get_image_features(pixel_values=pixels).pooler_output
        ref_txt = hf_vit.get_text_features(input_ids=ids).pooler_output
        oa_img = openai_image_features(openai_sd, pixels, heads=2, layers=2)
        oa_txt = openai_text_features(openai_sd, ids, heads=1, layers=2)
    torch.testing.assert_close(ours_img, ref_img, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_txt, ref_txt, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ours_img, oa_img, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ours_txt, oa_txt, atol=1e-5, rtol=1e-4)
    assert backbone.logit_scale == pytest.approx(float(hf_vit.logit_scale.detach().exp()))


@pytest.mark.parametrize("heads", [1, 4])
def test_in_proj_split_matches_nn_multihead_attention(heads):
    """The q/k/v split order against nn.MultiheadAttention itself (what OpenAI's blocks are), not the test's inverse."""
    width = 64
    torch.manual_seed(heads)
    mha = nn.MultiheadAttention(width, heads).eval()
    with torch.no_grad():
        mha.in_proj_bias.normal_()
        mha.out_proj.bias.normal_()
    config = CLIPConfig(
        text_config=dict(TEXT, hidden_size=width, intermediate_size=4 * width, num_attention_heads=heads, num_hidden_layers=1),
        vision_config=dict(VISION, hidden_size=width, intermediate_size=4 * width, num_attention_heads=heads, num_hidden_layers=1),
        projection_dim=48,
    )
    sd = vit_to_openai(CLIPModel(config))
    for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
        sd[f"transformer.resblocks.0.attn.{k}"] = mha.state_dict()[k].clone()
    model, arch = convert_state_dict(sd, text_heads=heads)
    assert arch.text_heads == heads
    x = torch.randn(3, 7, width)  # (batch, tokens, width)
    with torch.inference_mode():
        expected, _ = mha(x.transpose(0, 1), x.transpose(0, 1), x.transpose(0, 1), need_weights=False)
        got, _ = model.text_model.encoder.layers[0].self_attn(x)
    torch.testing.assert_close(got, expected.transpose(0, 1), atol=1e-5, rtol=1e-5)


def test_heads_cannot_be_read_from_shapes_but_can_be_given(openai_sd, hf_vit):
    """width // 64 is the default; a checkpoint with other head counts converts exactly when they are given."""
    from openvocab.models.create import clip_config

    tiny = _randomise(CLIPModel(clip_config("tiny")), seed=2)  # widths 64 with 2 heads each
    sd = vit_to_openai(tiny)
    default, arch = convert_state_dict(sd)
    assert (arch.vision_heads, arch.text_heads) == (1, 1)
    given, arch = convert_state_dict(sd, vision_heads=2, text_heads=2)
    pixels = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        ref = tiny.get_image_features(pixel_values=pixels).pooler_output
        torch.testing.assert_close(given.get_image_features(pixel_values=pixels).pooler_output, ref, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(default.get_image_features(pixel_values=pixels).pooler_output, ref, atol=1e-3)
    with pytest.raises(InputError, match="not divisible"):
        convert_state_dict(sd, vision_heads=3)
    gelu, arch = convert_state_dict(sd, activation="gelu")  # open_clip models trained without -quickgelu
    assert arch.activation == gelu.config.text_config.hidden_act == gelu.config.vision_config.hidden_act == "gelu"


# ------------------------------------------------------------------------------------- file formats
class _Holder(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _torchscript_archive(state: dict[str, torch.Tensor], path: Path) -> Path:
    """A scripted module whose state_dict has exactly these names (like OpenAI's released .pt archives)."""
    root = _Holder()
    for key, tensor in state.items():
        *parents, leaf = key.split(".")
        node = root
        for part in parents:
            if part not in node._modules:
                node.add_module(part, _Holder())
            node = node._modules[part]
        if tensor.is_floating_point():
            node.register_parameter(leaf, nn.Parameter(tensor.clone(), requires_grad=False))
        else:
            node.register_buffer(leaf, tensor.clone())
    torch.jit.save(torch.jit.script(root), str(path))
    return path


def test_file_formats_load_and_convert_identically(openai_sd, tmp_path):
    """safetensors, torch.save with nesting + 'module.' prefixes, a TorchScript archive (with OpenAI's extra int
    buffers), open_clip directories and an fp16 copy: the same tensors and the same converted weights."""
    save_file(openai_sd, str(tmp_path / "a.safetensors"))
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in openai_sd.items()}}, tmp_path / "b.pt")
    extras = {"input_resolution": torch.tensor(64), "context_length": torch.tensor(77), "vocab_size": torch.tensor(49408)}
    _torchscript_archive({**openai_sd, **extras}, tmp_path / "ViT-tiny.pt")
    (tmp_path / "oc1").mkdir()
    save_file(openai_sd, str(tmp_path / "oc1" / "open_clip_model.safetensors"))
    (tmp_path / "oc2").mkdir()
    torch.save({"model": openai_sd}, tmp_path / "oc2" / "open_clip_pytorch_model.bin")
    sources = ["a.safetensors", "b.pt", "ViT-tiny.pt", "oc1", "oc2"]

    reference, _ = convert_state_dict(openai_sd)
    ref = reference.state_dict()
    for name in sources:
        loaded = load_openai_state_dict(tmp_path / name)
        assert set(loaded) - set(extras) == set(openai_sd), name
        assert all(torch.equal(loaded[k], v) for k, v in openai_sd.items()), name
        converted = convert_state_dict(loaded)[0].state_dict()
        assert converted.keys() == ref.keys() and all(torch.equal(converted[k], ref[k]) for k in ref), name

    half = {k: v.half() for k, v in openai_sd.items()}  # OpenAI's archives are fp16
    model = convert_state_dict(half)[0]
    assert model.dtype == torch.float32
    torch.testing.assert_close(model.visual_projection.weight, openai_sd["visual.proj"].half().float().t())


# ------------------------------------------------------------------------------------- safety and bad input
def _side_effect(path: str) -> None:
    Path(path).write_text("the payload ran")


class _Payload:
    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (_side_effect, (self.path,))


def test_pickle_with_code_is_refused_and_never_runs(openai_sd, tmp_path):
    marker = tmp_path / "ran.txt"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": dict(openai_sd), "hook": _Payload(marker)}, evil)
    with pytest.raises(ModelLoadError) as exc:
        load_openai_state_dict(evil)
    msg = str(exc.value)
    assert "\n" not in msg and str(evil) in msg and "weights_only" in msg
    assert not marker.exists()
    torch.load(evil, weights_only=False)  # control: an unrestricted unpickle WOULD have run it
    assert marker.read_text() == "the payload ran"


@pytest.mark.parametrize(
    "case, error, words",
    [
        ("missing", InputError, "no such file"),
        ("text", ModelLoadError, "not a PyTorch checkpoint"),
        ("no_visual", ModelLoadError, "no 'visual.' keys"),
        ("empty_dir", InputError, "open_clip_model.safetensors"),
        ("bad_safetensors", ModelLoadError, "not a readable safetensors"),
        ("extra_key", ModelLoadError, "visual.transformer.resblocks.0.ls_1.gamma"),
        ("missing_key", ModelLoadError, "visual.ln_post.bias"),
        ("wrong_shape", ModelLoadError, "shapes do not fit the architecture read from the others: visual.proj"),
    ],
)
def test_bad_input_is_one_line_naming_the_file(case, error, words, openai_sd, tmp_path):
    path = tmp_path / "ckpt.pt"
    if case == "text":
        path.write_text("hello, this is not a checkpoint\n")
    elif case == "no_visual":
        torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 3)}}, path)
    elif case == "empty_dir":
        path = tmp_path / "empty"
        path.mkdir()
    elif case == "bad_safetensors":
        path = tmp_path / "x.safetensors"
        path.write_bytes(b"\x00" * 64)
    elif case == "extra_key":
        torch.save({**openai_sd, "visual.transformer.resblocks.0.ls_1.gamma": torch.ones(128)}, path)
    elif case == "missing_key":
        torch.save({k: v for k, v in openai_sd.items() if k != "visual.ln_post.bias"}, path)
    elif case == "wrong_shape":
        torch.save({**openai_sd, "visual.proj": torch.zeros(100, 48)}, path)
    with pytest.raises(error) as exc:
        convert_checkpoint(path, tmp_path / "out")
    msg = str(exc.value)
    assert "\n" not in msg and str(path) in msg and words in msg, msg
    assert not (tmp_path / "out").exists()


@pytest.fixture
def cli(monkeypatch, capsys):
    def call(*args: str):
        monkeypatch.setattr(sys, "argv", ["openvocab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return exc.value.code, out, err

    return call


def test_cli_convert_errors_and_overwrite(cli, openai_sd, tmp_path):
    code, out, _ = cli("model", "convert", "--help")
    assert code == 0 and "openvocab model convert" in out

    src = tmp_path / "ViT-tiny.pt"
    torch.save(openai_sd, src)
    code, out, err = cli("model", "convert", str(src), str(tmp_path / "m"))
    assert code == 0, err
    assert "ViT-16 vision (2 layers, width 128, 2 heads)" in out and str(tmp_path / "m") in out

    existing = tmp_path / "taken"
    existing.mkdir()
    (existing / "keep.txt").write_text("mine")
    for args, words in [
        ((str(src), str(existing)), "already exists"),
        ((str(tmp_path / "nope.pt"), str(tmp_path / "m2")), "no such file"),
        ((str(src), str(tmp_path / "m3"), "--activation", "relu"), "activation"),
    ]:
        code, out, err = cli("model", "convert", *args)
        lines = [line for line in err.splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and words in lines[0], err
    assert [p.name for p in existing.iterdir()] == ["keep.txt"] and (existing / "keep.txt").read_text() == "mine"

    code, _, err = cli("model", "convert", str(src), str(existing), "--overwrite")
    assert code == 0, err
    assert not (existing / "keep.txt").exists() and (existing / "model.safetensors").is_file()


# ------------------------------------------------------------------------------------- ResNet
def test_resnet_conversion_reproduces_the_original(tmp_path):
    clip_resnet = pytest.importorskip("openvocab.models.clip_resnet")
    original = _randomise(clip_resnet.build_random_clip_resnet("tiny-rn"), seed=4)  # BN statistics random too
    sd: dict[str, torch.Tensor] = {}
    _text_to_openai(original, sd)
    for key, tensor in original.state_dict().items():
        if key.startswith("vision_model."):
            sd["visual." + key[len("vision_model.") :]] = tensor.detach().clone()
    assert "visual.layer1.0.downsample.0.weight" in sd and "visual.attnpool.c_proj.weight" in sd  # OpenAI's names
    sd = {k: v for k, v in sd.items() if not k.endswith("num_batches_tracked")}  # filled in when absent

    torch.save(sd, tmp_path / "RN-tiny.pt")
    seen = []
    out = convert_checkpoint(tmp_path / "RN-tiny.pt", tmp_path / "rn", text_heads=2, on_architecture=seen.append)
    arch = seen[0]
    assert (arch.kind, arch.vision_layers, arch.vision_width, arch.image_size, arch.embed_dim) == ("resnet", (1, 1, 1, 1), 8, 224, 64)
    converted = clip_resnet.ClipResNetModel.from_pretrained(out)
    pixels, ids = _pixels(2, 224), _token_ids()
    with torch.inference_mode():
        torch.testing.assert_close(converted.get_image_features(pixels), original.get_image_features(pixels), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(converted.get_text_features(ids), original.get_text_features(ids), atol=1e-5, rtol=1e-5)
    assert (out / "preprocessor_config.json").is_file() and (out / "tokenizer_config.json").is_file()
    with torch.inference_mode():  # and it is a regular openvocab model directory
        torch.testing.assert_close(ClipBackbone.from_pretrained(out).encode_frames(pixels), original.get_image_features(pixels), atol=1e-5, rtol=1e-5)
