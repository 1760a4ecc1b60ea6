"""MOV wired into the recogniser (MOV §3.1-3.4): the forward pass against references computed by hand from the module's
own parts (Eq. 2-8 fusion, Eq. 10 base logits, Table 5 score fusion), the per-modality towers (copies of the RGB
tower at build, frozen / trainable as the spec says, the last-k-blocks option of Table 6), the factory's refusals,
the packed ``(..., 3, D)`` embeddings the classifier and the evaluator score, and a save / load round trip of a
tiny MOV run through the real trainer."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open

from openvocab.errors import InputError
from openvocab.models.factory import create_recognizer, load_recognizer
from openvocab.models.mov import MovOutputs
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.scoring import MOV_TAU, mov_base_probabilities, mov_probabilities

REPO = Path(__file__).resolve().parents[1]
FLOW_RECIPE = REPO / "configs" / "mov" / "synth_flow.yaml"
CLASSES = ["moving left", "moving right", "growing"]
T = 4

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _mov_spec(other: str = "flow", *, fusion: str = "mov", classes: int = len(CLASSES), logit_scale: float | None = None, **other_stream) -> RecognizerSpec:
    return RecognizerSpec(
        streams={
            "rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=T),
            other: StreamSpec(model="random:tiny", input=other, frames=T, **other_stream),
        },
        head=HeadSpec(classifier="text", num_classes=classes, logit_scale=logit_scale),
        fusion=fusion,
    )


def _randomise(module: torch.nn.Module, seed: int) -> None:
    """Every parameter random (LayerNorm gains around 1, positions non-zero): no term hides behind a zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            gain = name.endswith("weight") and p.ndim == 1
            p.copy_(torch.randn(p.shape, generator=g) * 0.2 + (1.0 if gain else 0.0))


def _prepared(spec: RecognizerSpec, seed: int):
    """A built recogniser whose fusion is random, whose second tower differs from the RGB one (at build they are
    equal, which would hide a swapped tower) and whose class rows are far apart (a random tiny text tower gives
    nearly parallel rows, which would hide a wrong embedding behind a uniform softmax)."""
    model = create_recognizer(spec, class_names=CLASSES).eval()
    _randomise(model.fusion, seed)
    g = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        other = model.streams[list(model.streams)[1]].backbone.clip
        for p in other.vision_model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.05)
        other.visual_projection.weight.add_(torch.randn(other.visual_projection.weight.shape, generator=g) * 0.3)
        model.head.weight.copy_(F.normalize(torch.randn(model.head.weight.shape, generator=g), dim=-1))
    return model


@pytest.fixture(scope="module")
def flow_model():
    return _prepared(_mov_spec("flow"), seed=0)


@pytest.fixture(scope="module")
def score_model():
    return _prepared(_mov_spec("flow", fusion="score", logit_scale=10.0), seed=1)  # softmaxes far from one-hot


@pytest.fixture(scope="module")
def audio_model():
    return _prepared(_mov_spec("audio", audio_seconds=1.0), seed=2)


@pytest.fixture(scope="module")
def flow_inputs():
    g = torch.Generator().manual_seed(7)
    return {"rgb": torch.randn(2, T, 3, 224, 224, generator=g), "flow": torch.randn(2, T, 3, 224, 224, generator=g)}


def _tower(clip, pixels: torch.Tensor) -> torch.Tensor:
    """``(B, T, 3, H, W) -> (B, T, D)`` through transformers' CLIP vision tower + projection (no openvocab code)."""
    b, t = pixels.shape[:2]
    out = clip.vision_model(pixel_values=pixels.reshape(b * t, *pixels.shape[2:])).pooler_output
    return clip.visual_projection(out).reshape(b, t, -1)


def _frames_by_hand(model, inputs) -> tuple[torch.Tensor, torch.Tensor]:
    return _tower(model.streams["rgb"].backbone.clip, inputs["rgb"]), _tower(model.streams["flow"].backbone.clip, inputs["flow"])


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert text and "\n" not in text, f"not a one-line error: {text!r}"
    return text


# --------------------------------------------------------------------------------------------------- 1. forward
@torch.no_grad()
def test_mov_forward_is_eq10_on_the_cross_attention_fused_video_feature(flow_model, flow_inputs):
    model = flow_model
    assert model.fused_outputs and model.fusion.base_rule == "video"
    assert model.logit_scale == pytest.approx(1.0 / MOV_TAU), "MOV's head scale is 1/τ with τ = 0.01 (Eq. 9-10)"
    v, f = _frames_by_hand(model, flow_inputs)
    assert not torch.allclose(v, f, atol=1e-3), "the two streams must see different inputs through different towers"
    mov = model.fusion.mov
    v_t, f_t = mov.video_temporal(v), mov.other_temporal(f)  # Eq. 2-4
    v_m = mov.video_fusion(v_t, f_t)  # Eq. 5-6: the video branch queries the flow's temporal features
    f_m = mov.other_fusion(f_t, v)  # Eq. 7-8: the flow branch queries the BACKBONE video features
    tau = 1.0 / model.head.logit_scale

    def cosines(x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=-1) @ model.head.weight.T

    logits = model(flow_inputs)
    torch.testing.assert_close(logits, cosines(v_m) / tau, atol=1e-4, rtol=1e-5)  # sim(v_m, B_j) / τ
    torch.testing.assert_close(logits.softmax(-1), mov_base_probabilities(v_m, model.head.weight, tau=tau), atol=1e-5, rtol=1e-4)  # Eq. 10
    # the check discriminates: the other embeddings (and a fusion fed the wrong stream) score differently
    for wrong in (f_m, v.mean(1), mov.video_fusion(v_t, mov.other_temporal(v)), mov.video_fusion(mov.other_temporal(f), v_t)):
        assert (cosines(wrong) - cosines(v_m)).abs().max() > 1e-2

    out = model(flow_inputs, embed=True)
    assert isinstance(out, MovOutputs)
    torch.testing.assert_close(out.video, v_m, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.other, f_m, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(out.frozen_video, v.mean(dim=1), atol=1e-5, rtol=1e-4)  # TAP of the RGB tower's frames
    assert not torch.allclose(out.frozen_video, f.mean(dim=1), atol=1e-3)
    with pytest.raises(ValueError, match="Eq. 9"):
        model(flow_inputs, embed=True, text={"input_ids": torch.zeros(1, 3, dtype=torch.long)})


@torch.no_grad()
def test_score_fusion_averages_the_two_streams_probabilities_table5(score_model, flow_inputs):
    model = score_model
    assert model.fusion.base_rule == "mean" and not hasattr(model.fusion, "mov")
    v, f = _frames_by_hand(model, flow_inputs)
    v_p = model.fusion.video_temporal(v).mean(dim=1)  # no cross-attention: each stream's temporal head, pooled
    f_p = model.fusion.other_temporal(f).mean(dim=1)
    scale = model.head.logit_scale
    p_v = (scale * F.normalize(v_p, dim=-1) @ model.head.weight.T).softmax(-1)
    p_f = (scale * F.normalize(f_p, dim=-1) @ model.head.weight.T).softmax(-1)
    assert (p_v - p_f).abs().max() > 1e-2, "the streams must disagree for the mean to be visible"
    got = model(flow_inputs).softmax(-1)
    torch.testing.assert_close(got, 0.5 * (p_v + p_f), atol=1e-5, rtol=1e-4)
    out = model(flow_inputs, embed=True)
    torch.testing.assert_close(out.frozen_video, v.mean(dim=1), atol=1e-5, rtol=1e-4)
    packed = mov_probabilities(out.stack(), model.head.weight, rule="base-mean", tau=1.0 / scale)
    torch.testing.assert_close(got, packed, atol=1e-5, rtol=1e-4)


def test_mov_head_scale_is_one_over_tau_unless_the_recipe_sets_it():
    from openvocab.models.factory import _mov_spec as as_built

    assert as_built(_mov_spec()).head.logit_scale == pytest.approx(100.0)
    assert as_built(_mov_spec().with_head(logit_scale=20.0)).head.logit_scale == 20.0


# --------------------------------------------------------------------------------------------------- 2. towers
def test_flow_tower_is_a_trainable_copy_of_the_frozen_rgb_tower():
    model = create_recognizer(_mov_spec("flow"), class_names=CLASSES)
    rgb, flow = model.streams["rgb"].backbone.clip, model.streams["flow"].backbone.clip
    assert rgb is not flow
    rgb_state, flow_state = rgb.state_dict(), flow.state_dict()
    assert rgb_state.keys() == flow_state.keys()
    for key in rgb_state:
        assert torch.equal(rgb_state[key], flow_state[key]), f"{key}: the flow tower starts from the RGB tower's weights (MOV §3.1)"
        if rgb_state[key].numel():
            assert rgb_state[key].data_ptr() != flow_state[key].data_ptr(), f"{key}: the towers share storage"

    vision = lambda clip: [*clip.vision_model.parameters(), *clip.visual_projection.parameters()]  # noqa: E731
    assert not any(p.requires_grad for p in vision(rgb)), "train_backbone: false freezes the RGB tower"
    assert all(p.requires_grad for p in vision(flow)), "the flow tower trains"
    for clip in (rgb, flow):
        text = [*clip.text_model.parameters(), *clip.text_projection.parameters(), clip.logit_scale]
        assert not any(p.requires_grad for p in text), "every stream's text tower stays frozen"

    before = {k: v.clone() for k, v in rgb.state_dict().items()}
    flow_before = flow.visual_projection.weight.detach().clone()
    opt = torch.optim.SGD([p for _, p in model.trainable_named_parameters()], lr=1.0)
    g = torch.Generator().manual_seed(3)
    inputs = {"rgb": torch.randn(2, T, 3, 224, 224, generator=g), "flow": torch.randn(2, T, 3, 224, 224, generator=g)}
    out = model(inputs, embed=True)
    (out.video.square().sum() + out.other.square().sum()).backward()
    assert all(p.grad is None for p in vision(rgb))
    opt.step()
    assert not torch.equal(flow.visual_projection.weight, flow_before), "the flow tower moved"
    for key, value in rgb.state_dict().items():
        assert torch.equal(value, before[key]), f"{key}: training the flow tower changed the RGB tower"


def test_checkpoints_leave_out_the_frozen_rgb_tower_and_every_text_tower():
    model = create_recognizer(_mov_spec("flow"), class_names=CLASSES)
    frozen = model.frozen_pretrained_keys()
    state = model.state_dict()
    for stream in ("rgb", "flow"):
        clip = model.streams[stream].backbone.clip
        text = {f"streams.{stream}.backbone.clip.text_model.{n}" for n, _ in clip.text_model.named_parameters()}
        text |= {f"streams.{stream}.backbone.clip.text_projection.weight", f"streams.{stream}.backbone.clip.logit_scale"}
        assert text <= frozen, f"{stream}: text tower not left out: {sorted(text - frozen)[:3]}"
    rgb_vision = {k for k in state if k.startswith(("streams.rgb.backbone.clip.vision_model.", "streams.rgb.backbone.clip.visual_projection."))}
    rgb_vision = {k for k in rgb_vision if k in dict(model.named_parameters())}
    assert rgb_vision and rgb_vision <= frozen
    flow_vision = [k for k in frozen if k.startswith(("streams.flow.backbone.clip.vision_model.", "streams.flow.backbone.clip.visual_projection."))]
    assert flow_vision == [], f"trained flow weights would be lost: {flow_vision[:3]}"
    assert not any(k.startswith(("fusion.", "head.")) for k in frozen)


@torch.no_grad()
def test_the_flow_copy_does_not_inherit_the_rgb_streams_in_tower_temporal_hooks():
    spec = _mov_spec("flow")
    spec = RecognizerSpec(
        streams={"rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=T, token_t1d_blocks=(0,)), "flow": spec.streams["flow"]},
        head=spec.head,
        fusion="mov",
    )
    model = create_recognizer(spec, class_names=CLASSES).eval()
    for conv in model.streams["rgb"].token_t1d.convs.values():
        conv.weight.normal_()
    assert model.streams["flow"].token_t1d is None
    pixels = torch.randn(1, T, 3, 224, 224, generator=torch.Generator().manual_seed(4))
    clean = copy.deepcopy(model.streams["flow"].backbone.clip)
    for layer in clean.vision_model.encoder.layers:
        layer._forward_pre_hooks.clear()
    got = model.frame_features({"rgb": pixels, "flow": pixels})["flow"]
    torch.testing.assert_close(got, _tower(clean, pixels), atol=1e-5, rtol=1e-4)


# --------------------------------------------------------------------------------------------------- 3. last k blocks
@pytest.mark.parametrize("k", [1, 2])
def test_train_last_blocks_trains_exactly_the_last_k_blocks_the_final_norm_and_the_projection(k):
    model = create_recognizer(_mov_spec("flow", train_last_blocks=k), class_names=CLASSES)
    flow = model.streams["flow"].backbone.clip
    layers = len(flow.vision_model.encoder.layers)
    assert layers == 2
    expected = {f"vision_model.encoder.layers.{i}.{n}" for i in range(layers - k, layers) for n, _ in flow.vision_model.encoder.layers[i].named_parameters()}
    expected |= {"vision_model.post_layernorm.weight", "vision_model.post_layernorm.bias", "visual_projection.weight"}
    trainable = {n for n, p in flow.named_parameters() if p.requires_grad}
    assert trainable == expected
    assert not any(p.requires_grad for p in model.streams["rgb"].backbone.clip.parameters()), "the frozen RGB tower stays frozen"
    frozen = model.frozen_pretrained_keys()
    assert "streams.flow.backbone.clip.vision_model.embeddings.patch_embedding.weight" in frozen
    assert not any(f"streams.flow.backbone.clip.{n}" in frozen for n in expected)


@pytest.mark.parametrize("k", [3, -1])
def test_train_last_blocks_out_of_range_is_refused(k):
    with pytest.raises(InputError, match="between 1 and 2") as info:
        create_recognizer(_mov_spec("flow", train_last_blocks=k), class_names=CLASSES)
    _one_line(info.value)


# --------------------------------------------------------------------------------------------------- 4. refusals
def _refused(spec: RecognizerSpec, error: type[Exception], words: str) -> None:
    with pytest.raises(error) as info:
        create_recognizer(spec, class_names=CLASSES)
    assert words in _one_line(info.value)


@pytest.mark.parametrize("fusion", ["mov", "score"])
def test_mov_fusions_refuse_what_they_cannot_fuse(fusion):
    rgb = StreamSpec(model="random:tiny", train_backbone=False, frames=T)
    flow = StreamSpec(model="random:tiny", input="flow", frames=T)
    audio = StreamSpec(model="random:tiny", input="audio", frames=T)
    head = HeadSpec(classifier="text", num_classes=len(CLASSES))
    _refused(RecognizerSpec(streams={"rgb": rgb, "flow": flow, "audio": audio}, head=head, fusion=fusion), InputError, "exactly two streams")
    _refused(RecognizerSpec(streams={"flow": flow, "rgb": rgb}, head=head, fusion=fusion), InputError, "first stream to read rgb")
    _refused(RecognizerSpec(streams={"rgb": rgb, "rgb2": rgb}, head=head, fusion=fusion), InputError, "second flow or audio")
    ttrans = StreamSpec(model="random:tiny", input="flow", frames=T, temporal="ttrans")
    _refused(RecognizerSpec(streams={"rgb": rgb, "flow": ttrans}, head=head, fusion=fusion), InputError, "model.flow.temporal=ttrans")
    for classifier in ("linear", "orthogonal"):
        spec = RecognizerSpec(streams={"rgb": rgb, "flow": flow}, head=HeadSpec(classifier=classifier, num_classes=len(CLASSES)), fusion=fusion)
        _refused(spec, InputError, "use model.classifier text or sentence")


# --------------------------------------------------------------------------------------------------- 5. packed outputs
@torch.no_grad()
def test_embed_frames_packs_per_view_outputs_as_c_v_3_d(flow_model):
    model = flow_model
    c, v = 2, 3
    g = torch.Generator().manual_seed(11)
    inputs = {"rgb": torch.randn(c * v, T, 3, 224, 224, generator=g), "flow": torch.randn(c * v, T, 3, 224, 224, generator=g)}
    frames = model.frame_features(inputs)  # {stream: (C*V, T, D)}
    packed = model.embed_frames({name: x.reshape(c, v, T, -1) for name, x in frames.items()})
    d = model.head.weight.shape[1]
    assert packed.shape == (c, v, 3, d)
    per_view = model(inputs, embed=True).stack().reshape(c, v, 3, d)
    torch.testing.assert_close(packed, per_view, atol=1e-5, rtol=1e-4)
    one = model.embed_frames({name: x[4] for name, x in frames.items()})  # a single view: (T, D) -> (3, D)
    torch.testing.assert_close(one, packed[1, 1], atol=1e-5, rtol=1e-4)
    assert not torch.allclose(packed[:, :, 0], packed[:, :, 2], atol=1e-3), "v_m and the frozen v are different rows"


@torch.no_grad()
def test_audio_repeated_over_t_fuses_exactly_like_the_single_audio_token(audio_model):
    """The classifier repeats the one spectrogram embedding over the view's T frames; the fusion's outputs must not
    change (the audio branch is an MLP per token, Eq. 4, and attention over identical tokens is attention over one).
    The fusion is random (non-zero everything), so a temporal transformer with positions on audio would fail."""
    model = audio_model
    assert model.spec.input_settings().modalities == ("rgb", "audio")
    g = torch.Generator().manual_seed(12)
    v = torch.randn(3, T, model.streams["rgb"].dim, generator=g)
    a = torch.randn(3, 1, model.streams["audio"].dim, generator=g)
    single = model.embed_frames({"rgb": v, "audio": a})
    repeated = model.embed_frames({"rgb": v, "audio": a.expand(-1, T, -1)})
    torch.testing.assert_close(repeated, single, atol=1e-5, rtol=1e-5)
    assert not torch.allclose(model.embed_frames({"rgb": v, "audio": a.flip(0)}), single, atol=1e-3), "the audio is used"
    # through the towers: a (B, 1, 3, 128, F) spectrogram "clip" of one image per video
    spec = torch.randn(2, 1, 3, 128, 100, generator=g)
    rgb = torch.randn(2, T, 3, 224, 224, generator=g)
    out = model({"rgb": rgb, "audio": spec}, embed=True)
    frames = model.frame_features({"rgb": rgb, "audio": spec})
    assert frames["audio"].shape == (2, 1, model.streams["audio"].dim)
    torch.testing.assert_close(out.stack(), model.embed_frames({"rgb": frames["rgb"], "audio": frames["audio"].expand(-1, T, -1)}), atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------------- 6. a real run
@pytest.fixture(scope="module")
def motion_data(tmp_path_factory) -> Path:
    from openvocab.data.synth import SynthSpec, generate

    spec = SynthSpec(
        shapes=("circle",),
        colours=("red",),
        motions=("left", "right"),
        label_factors=("motion",),
        clips_per_class=2,
        frames=6,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("motion"), seed=3)


def _run_overrides(data: Path, out: Path, **extra: str) -> list[str]:
    overrides = {
        "data.train": str(data / "train.csv"),
        "data.val": "null",
        "run.out": str(out),
        "run.progress": "false",
        "data.workers": "0",
        "data.frames": str(T),
        "data.batch_size": "2",
        "data.size": "64",
        "run.max_steps": "2",
        "optim.warmup_epochs": "0",
        **extra,
    }
    return [f"{k}={v}" for k, v in overrides.items()]


@pytest.fixture(scope="module")
def mov_run(motion_data, tmp_path_factory):
    """configs/mov/synth_flow.yaml for two steps on a tiny motion benchmark; also returns the trainer's own model."""
    from openvocab.train import trainer
    from openvocab.train.config import load_config

    run = tmp_path_factory.mktemp("mov_run") / "run"
    cfg = load_config(FLOW_RECIPE, _run_overrides(motion_data, run))
    assert cfg.model.streams["flow"].flow_method == "farneback"
    built = []
    with pytest.MonkeyPatch.context() as mp:
        original = trainer.build_model
        mp.setattr(trainer, "build_model", lambda *a, **k: built.append(original(*a, **k)) or built[-1])
        result = trainer.train(cfg)
    assert result["step"] == 2 and len(built) == 1
    return run, built[0].eval()


@torch.no_grad()
def test_a_trained_mov_run_loads_with_equal_outputs_and_without_the_frozen_rgb_tower(mov_run):
    run, trained = mov_run
    loaded = load_recognizer(run)
    assert loaded.spec == trained.spec and loaded.spec.fusion == "mov" and loaded.fused_outputs
    assert loaded.class_names == trained.class_names == ["moving left", "moving right"]
    g = torch.Generator().manual_seed(5)
    inputs = {"rgb": torch.randn(2, T, 3, 64, 64, generator=g), "flow": torch.randn(2, T, 3, 64, 64, generator=g)}
    torch.testing.assert_close(loaded(inputs), trained(inputs), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loaded(inputs, embed=True).stack(), trained(inputs, embed=True).stack(), atol=1e-5, rtol=1e-5)
    fresh = create_recognizer(trained.spec, class_names=trained.class_names)
    key = "streams.flow.backbone.clip.visual_projection.weight"
    assert not torch.equal(fresh.state_dict()[key], trained.state_dict()[key]), "two steps moved the flow tower"

    step = run / (run / "latest").read_text().strip()
    with safe_open(str(step / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
        omitted = set(json.loads(f.metadata()["omitted"]))
    rgb_vision = ("streams.rgb.backbone.clip.vision_model.", "streams.rgb.backbone.clip.visual_projection.")
    assert not any(k.startswith(rgb_vision) for k in stored), "the frozen RGB tower is stored"
    assert any(k.startswith(rgb_vision) for k in omitted)
    assert any(k.startswith("streams.flow.backbone.clip.vision_model.") for k in stored)
    assert any(k.startswith("fusion.mov.other_fusion.") for k in stored) and "head.projection.weight" in stored
    assert not any(".text_model." in k for k in stored)


@pytest.mark.parametrize(
    "overrides", [["model.flow.train_last_blocks=5"], ["model.audio.model=random:tiny", "model.audio.input=audio"]], ids=["last-blocks", "three-streams"]
)
def test_openvocab_train_refuses_an_impossible_mov_recipe_in_one_line(overrides, motion_data, tmp_path, cli):
    code, out, err = cli("train", str(FLOW_RECIPE), *_run_overrides(motion_data, tmp_path / "run"), *overrides)
    assert code == 2 and "Traceback" not in out
    assert [line for line in err.splitlines() if line.startswith("error:")], err
