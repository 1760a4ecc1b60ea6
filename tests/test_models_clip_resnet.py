"""CLIP-ResNet (OpenAI's ModifiedResNet + transformers' CLIP text tower) against the released shapes and references.

No pretrained weights are reachable here, so correctness is shown by: parameter counts and state-dict keys equal to
the released RN50 checkpoint; the attention pool equal to ``torch.nn.MultiheadAttention``; the text side equal to
``transformers.CLIPModel.get_text_features``; a Bottleneck equal to a functional re-statement of the architecture.
"""

from __future__ import annotations

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from torch import nn

from openvocab.errors import InputError, ModelLoadError
from openvocab.models.clip_resnet import (
    RESNET_ARCHITECTURES,
    AttentionPool2d,
    Bottleneck,
    ClipResNetConfig,
    ClipResNetModel,
    build_random_clip_resnet,
    clip_resnet_config,
)


@pytest.fixture(scope="module")
def tiny() -> ClipResNetModel:
    return build_random_clip_resnet("tiny-rn", seed=0)


def _pixels(n: int, size: int | tuple[int, int] = 224, seed: int = 0) -> torch.Tensor:
    h, w = (size, size) if isinstance(size, int) else size
    return torch.randn(n, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _randomise_batchnorm(model: nn.Module, seed: int) -> None:
    """Non-trivial BN affine parameters and running statistics (fresh ones are identity / zero-init residuals)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(1 + 0.2 * torch.randn(m.weight.shape, generator=g))
                m.bias.copy_(0.1 * torch.randn(m.bias.shape, generator=g))
                m.running_mean.copy_(0.1 * torch.randn(m.running_mean.shape, generator=g))
                m.running_var.copy_(0.5 + torch.rand(m.running_var.shape, generator=g))


# ---------------------------------------------------------------------------------------------------- architecture
def test_rn50_parameter_counts_and_keys_match_the_released_checkpoint():
    """OpenAI's RN50 checkpoint: 102,007,137 parameters = vision 38,316,896 + text 63,690,240 + logit_scale."""
    with torch.device("meta"):  # shapes only: no memory, no init time
        model = ClipResNetModel(clip_resnet_config("rn50"))
    count = lambda module: sum(p.numel() for p in module.parameters())
    assert count(model) == 102_007_137
    assert count(model.vision_model) == 38_316_896
    assert count(model.text_model) + count(model.text_projection) == 63_690_240
    assert model.logit_scale.numel() == 1 and isinstance(model.visual_projection, nn.Identity)
    sd = model.vision_model.state_dict()
    assert sorted({k.rsplit(".downsample", 1)[0] for k in sd if ".downsample." in k}) == ["layer1.0", "layer2.0", "layer3.0", "layer4.0"]
    shapes = {
        "conv1.weight": (32, 3, 3, 3),
        "conv2.weight": (32, 32, 3, 3),
        "conv3.weight": (64, 32, 3, 3),
        "layer1.0.downsample.0.weight": (256, 64, 1, 1),
        "layer4.0.downsample.0.weight": (2048, 1024, 1, 1),
        "layer3.5.conv3.weight": (1024, 256, 1, 1),
        "attnpool.positional_embedding": (50, 2048),
        "attnpool.q_proj.weight": (2048, 2048),
        "attnpool.c_proj.weight": (1024, 2048),
        "attnpool.c_proj.bias": (1024,),
    }
    for key, shape in shapes.items():
        assert tuple(sd[key].shape) == shape, key
    assert "layer3.6.conv1.weight" not in sd and "layer4.2.bn3.num_batches_tracked" in sd
    cfg = model.config.vision_config
    assert (cfg.hidden_size, cfg.num_hidden_layers, cfg.patch_size, cfg.heads, cfg.image_size) == (2048, 16, 32, 32, 224)


def test_vision_state_dict_keys_are_exactly_openais_visual_keys(tiny):
    """The full key set, spelled out from OpenAI's layout (``visual.`` prefix removed) for tiny-rn (one block/stage)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    expected = {f"conv{i}.weight" for i in (1, 2, 3)} | {f"bn{i}.{s}" for i in (1, 2, 3) for s in bn}
    for stage in range(1, 5):
        p = f"layer{stage}.0"
        expected |= {f"{p}.conv{i}.weight" for i in (1, 2, 3)} | {f"{p}.bn{i}.{s}" for i in (1, 2, 3) for s in bn}
        expected |= {f"{p}.downsample.0.weight"} | {f"{p}.downsample.1.{s}" for s in bn}
    expected |= {"attnpool.positional_embedding"} | {f"attnpool.{n}_proj.{s}" for n in "qkvc" for s in ("weight", "bias")}
    assert set(tiny.vision_model.state_dict()) == expected
    top = {k.split(".")[0] for k in tiny.state_dict()}
    assert top == {"vision_model", "text_model", "text_projection", "logit_scale"}


@torch.no_grad()
def test_random_init_follows_openai_and_is_seeded():
    state = torch.random.get_rng_state()
    a = build_random_clip_resnet("tiny-rn", seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)  # the caller's RNG is untouched
    b = build_random_clip_resnet("tiny-rn", seed=3)
    c = build_random_clip_resnet("tiny-rn", seed=4)
    assert not a.training
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert not torch.equal(a.vision_model.conv1.weight, c.vision_model.conv1.weight)
    vm = a.vision_model
    assert all(float(block.bn3.weight.abs().max()) == 0 for s in (vm.layer1, vm.layer2, vm.layer3, vm.layer4) for block in s)
    assert float(vm.bn3.weight.min()) == 1  # the stem's BN is not a residual branch
    c_in = vm.attnpool.q_proj.in_features
    for name in "qkvc":
        std = float(getattr(vm.attnpool, f"{name}_proj").weight.std())
        assert abs(std - c_in**-0.5) < 0.1 * c_in**-0.5, name
    assert abs(float(a.text_model.embeddings.token_embedding.weight.std()) - 0.02) < 0.002
    assert abs(float(a.text_projection.weight.std()) - 64**-0.5) < 0.1 * 64**-0.5
    assert abs(float(a.logit_scale) - 2.6592600) < 1e-6


def test_unknown_architecture_is_a_one_line_input_error():
    with pytest.raises(InputError, match="choose one of rn50, rn101, rn50x4, tiny-rn"):
        clip_resnet_config("rn999")
    assert set(RESNET_ARCHITECTURES) >= {"rn50", "rn101", "rn50x4", "tiny-rn"}


def test_config_round_trips_through_json():
    config = clip_resnet_config("rn50x4")
    data = json.loads(json.dumps(config.to_dict()))
    assert data["model_type"] == "openvocab-clip-resnet"
    again = ClipResNetConfig.from_dict(data)
    assert again.vision_config == config.vision_config and again.projection_dim == 640
    assert again.text_config.hidden_size == 640 and again.text_config.hidden_act == "quick_gelu" and again.text_config.eos_token_id == 49407
    assert again.vision_config.heads == 40 and again.vision_config.layers == (4, 6, 10, 6)


# ---------------------------------------------------------------------------------------------------- building blocks
@pytest.mark.parametrize("output_dim", [48, 40])
def test_attention_pool_equals_torch_multihead_attention(output_dim):
    """Query = mean token (+ its position), keys/values = all tokens; q/k/v packed into MHA's in_proj."""
    torch.manual_seed(0)
    c, heads, grid = 48, 4, 3
    pool = AttentionPool2d(grid=grid, embed_dim=c, heads=heads, output_dim=output_dim).eval()
    with torch.no_grad():
        for lin in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            lin.bias.normal_()
    mha = nn.MultiheadAttention(c, heads).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([pool.q_proj.weight, pool.k_proj.weight, pool.v_proj.weight]))
        mha.in_proj_bias.copy_(torch.cat([pool.q_proj.bias, pool.k_proj.bias, pool.v_proj.bias]))
        if output_dim == c:
            mha.out_proj.weight.copy_(pool.c_proj.weight)
            mha.out_proj.bias.copy_(pool.c_proj.bias)
        else:  # MHA's out_proj is C -> C: make it the identity and apply c_proj after it
            mha.out_proj.weight.copy_(torch.eye(c))
            mha.out_proj.bias.zero_()

    def reference(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        tokens = x.flatten(2).permute(2, 0, 1)  # (HW, N, C)
        tokens = torch.cat([tokens.mean(dim=0, keepdim=True), tokens]) + pos[:, None]
        out = mha(tokens[:1], tokens, tokens, need_weights=False)[0][0]
        return out if output_dim == c else pool.c_proj(out)

    with torch.no_grad():
        x = torch.randn(5, c, grid, grid)
        torch.testing.assert_close(pool(x), reference(x, pool.positional_embedding), atol=1e-5, rtol=1e-5)
        # another grid: the spatial rows are bicubic-resized as a (grid x grid) image, the mean-token row kept
        x = torch.randn(2, c, 4, 2)
        spatial = pool.positional_embedding[1:].T.reshape(1, c, grid, grid)
        spatial = F.interpolate(spatial, size=(4, 2), mode="bicubic", align_corners=False).reshape(c, 8).T
        pos = torch.cat([pool.positional_embedding[:1], spatial])
        torch.testing.assert_close(pool(x, interpolate_pos_encoding=True), reference(x, pos), atol=1e-5, rtol=1e-5)
        assert pool.positions(4, 2).shape == (9, c)
        pool.positional_embedding[1:] = torch.arange(c, dtype=torch.float32)  # constant over space -> stays constant
        torch.testing.assert_close(pool.positions(5, 7)[1:], torch.arange(c, dtype=torch.float32).expand(35, c))
        assert torch.equal(pool.positions(5, 7)[0], pool.positional_embedding[0])


def test_bottleneck_matches_the_functional_definition_and_zero_init_is_the_shortcut(tiny):
    block = copy.deepcopy(tiny.vision_model.layer2[0]).eval()  # stride 2, 32 -> 64 channels
    assert block.stride == 2 and block.conv2.stride == (1, 1) and isinstance(block.downsample[0], nn.AvgPool2d)
    x = torch.randn(3, 32, 14, 14, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = block(x)
        assert out.shape == (3, 64, 7, 7)
        assert torch.equal(out, F.relu(block.downsample(x)))  # bn3.weight == 0 at init: the block is its shortcut
        _randomise_batchnorm(block, seed=1)

        def bn(t, m):
            return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

        h = F.relu(bn(F.conv2d(x, block.conv1.weight), block.bn1))
        h = F.relu(bn(F.conv2d(h, block.conv2.weight, padding=1), block.bn2))
        h = bn(F.conv2d(F.avg_pool2d(h, 2), block.conv3.weight), block.bn3)
        conv, norm = block.downsample._modules["0"], block.downsample._modules["1"]  # keys "-1", "0", "1" as OpenAI's
        shortcut = bn(F.conv2d(F.avg_pool2d(x, 2), conv.weight), norm)
        torch.testing.assert_close(block(x), F.relu(h + shortcut), atol=1e-5, rtol=1e-5)
    plain = Bottleneck(in_channels=64, planes=16)
    assert plain.downsample is None and isinstance(plain.avgpool, nn.Identity)


# ---------------------------------------------------------------------------------------------------- vision tower
def test_vision_forward_outputs_and_sizes(tiny):
    pixels = _pixels(2)
    with torch.no_grad():
        out = tiny.vision_model(pixels, output_hidden_states=True)
        assert out.pooler_output.shape == (2, 64) and out.last_hidden_state.shape == (2, 256, 7, 7)
        assert [tuple(h.shape[1:]) for h in out.hidden_states] == [(8, 56, 56), (32, 56, 56), (64, 28, 28), (128, 14, 14), (256, 7, 7)]
        assert tiny.vision_model(pixels).hidden_states is None
        as_tuple = tiny.vision_model(pixels, return_dict=False)
        assert len(as_tuple) == 2 and torch.equal(as_tuple[1], out.pooler_output)
        torch.testing.assert_close(tiny.get_image_features(pixels), out.pooler_output)


def test_non_native_input_sizes_interpolate_positions(tiny):
    with torch.no_grad():
        native = tiny.get_image_features(_pixels(2))
        assert torch.equal(tiny.get_image_features(_pixels(2), interpolate_pos_encoding=True), native)
        assert tiny.get_image_features(_pixels(2, 160), interpolate_pos_encoding=True).shape == (2, 64)
        assert tiny.get_image_features(_pixels(1, (224, 160)), interpolate_pos_encoding=True).shape == (1, 64)
        with pytest.raises(InputError, match="interpolate_pos_encoding=True"):
            tiny.get_image_features(_pixels(1, 160))


def test_gradient_checkpointing_gives_the_same_loss_gradients_and_batchnorm_statistics(tiny):
    """Train mode (BN on batch statistics): each Bottleneck is recomputed in backward, the result must not change,
    and the recomputation must not update BN's running statistics a second time."""
    plain = copy.deepcopy(tiny).train()
    _randomise_batchnorm(plain, seed=2)  # non-zero bn3: every branch gets gradients
    ckpt = copy.deepcopy(plain)
    ckpt.activation_checkpointing_enable()
    calls = {"n": 0}
    ckpt.vision_model.layer3[0].register_forward_pre_hook(lambda *_: calls.__setitem__("n", calls["n"] + 1))
    pixels = _pixels(2, 96, seed=5)
    losses = []
    for model in (plain, ckpt):
        loss = model.get_image_features(pixels, interpolate_pos_encoding=True).square().mean()
        loss.backward()
        losses.append(loss.detach())
    assert calls["n"] == 2  # forward + recomputation in backward: checkpointing really ran
    torch.testing.assert_close(losses[0], losses[1], atol=0, rtol=0)
    for (name, p), q in zip(plain.vision_model.named_parameters(), ckpt.vision_model.parameters()):
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name
        torch.testing.assert_close(p.grad, q.grad, atol=1e-6, rtol=1e-5, msg=name)
    for (name, a), b in zip(plain.vision_model.named_buffers(), ckpt.vision_model.buffers()):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=name)
    ckpt.eval()
    with torch.no_grad():  # and no recomputation (or effect) outside training
        again = ckpt.get_image_features(pixels, interpolate_pos_encoding=True)
        torch.testing.assert_close(again, plain.eval().get_image_features(pixels, interpolate_pos_encoding=True))


# ---------------------------------------------------------------------------------------------------- text tower
def test_text_features_equal_transformers_clip_model(tiny):
    from transformers import CLIPConfig, CLIPModel

    from openvocab.text.tokenizer import build_clip_tokenizer

    vision = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1, "num_attention_heads": 2, "patch_size": 32, "image_size": 224}
    torch.manual_seed(7)
    reference = CLIPModel(CLIPConfig(text_config=tiny.config.text_config.to_dict(), vision_config=vision, projection_dim=64)).eval()
    ours = copy.deepcopy(tiny)
    ours.text_model.load_state_dict(reference.text_model.state_dict(), strict=True)
    ours.text_projection.load_state_dict(reference.text_projection.state_dict(), strict=True)
    tokenizer = build_clip_tokenizer()
    inputs = tokenizer(["a photo of a cat", "a video of a person playing guitar.", "yoga"], padding=True, return_tensors="pt")
    assert int(inputs["attention_mask"].eq(0).sum()) > 0  # padding present
    mask = inputs["attention_mask"].clone()
    mask[1, 2] = 0  # a hole before the EOS token: only a mask that is really applied changes the result
    with torch.no_grad():
        for m in (inputs["attention_mask"], mask):
            theirs = reference.get_text_features(input_ids=inputs["input_ids"], attention_mask=m).pooler_output
            torch.testing.assert_close(ours.get_text_features(inputs["input_ids"], attention_mask=m), theirs, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(ours.get_text_features(inputs["input_ids"], mask)[1], ours.get_text_features(inputs["input_ids"])[1])


# ---------------------------------------------------------------------------------------------------- persistence
def test_save_and_load_round_trip(tiny, tmp_path):
    model = copy.deepcopy(tiny)
    _randomise_batchnorm(model, seed=3)  # buffers must travel too
    model.save_pretrained(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "model.safetensors"]
    loaded = ClipResNetModel.from_pretrained(tmp_path / "m")
    assert not loaded.training and loaded.config.to_dict() == model.config.to_dict()
    for (k, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), k
    ids = torch.tensor([[49406, 320, 1125, 539, 320, 2368, 49407]])
    with torch.no_grad():
        assert torch.equal(loaded.get_image_features(_pixels(2)), model.get_image_features(_pixels(2)))
        assert torch.equal(loaded.get_text_features(ids), model.get_text_features(ids))
    half = ClipResNetModel.from_pretrained(tmp_path / "m", dtype=torch.bfloat16)
    assert half.vision_model.conv1.weight.dtype == torch.bfloat16 and half.vision_model.bn1.num_batches_tracked.dtype == torch.int64


def _tamper_shape(d):
    state = load_file(str(d / "model.safetensors"))
    state["vision_model.attnpool.positional_embedding"] = torch.zeros(10, 256)
    save_file(state, str(d / "model.safetensors"))


def _drop_key(d):
    state = load_file(str(d / "model.safetensors"))
    del state["vision_model.layer2.0.downsample.1.running_var"]
    save_file(state, str(d / "model.safetensors"))


def _edit_config(change):
    def edit(d):
        data = json.loads((d / "config.json").read_text())
        change(data)
        (d / "config.json").write_text(json.dumps(data))

    return edit


@pytest.mark.parametrize(
    ("tamper", "message"),
    [
        (_tamper_shape, "'vision_model.attnpool.positional_embedding' has shape (10, 256), expected (50, 256)"),
        (_drop_key, "missing tensor(s), first 'vision_model.layer2.0.downsample.1.running_var'"),
        (lambda d: (d / "model.safetensors").write_bytes(b"\x00garbage"), "unreadable model.safetensors"),
        (lambda d: (d / "model.safetensors").unlink(), "no model.safetensors"),
        (lambda d: (d / "config.json").write_text("{not json"), "unreadable config.json"),
        (lambda d: (d / "config.json").unlink(), "no config.json"),
        (_edit_config(lambda c: c.update(model_type="clip")), "model_type 'clip'"),
        (_edit_config(lambda c: c["vision_config"].update(layers=[1, 1, 1])), "four positive block counts"),
        (_edit_config(lambda c: c["vision_config"].update(width=16)), "does not match config.json"),
        (_edit_config(lambda c: c.pop("text_config")), "lacks text_config"),
    ],
)
def test_bad_directories_give_one_line_model_load_errors(tiny, tmp_path, tamper, message):
    directory = tiny.save_pretrained(tmp_path / "bad")
    tamper(directory)
    with pytest.raises(ModelLoadError) as info:
        ClipResNetModel.from_pretrained(directory)
    text = str(info.value)
    assert "\n" not in text and text.startswith(str(directory)) and message in text, text
