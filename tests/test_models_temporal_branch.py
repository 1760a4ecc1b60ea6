"""The regularised temporal branch (open-vocabulary multi-label §3.2, Fig. 4), its serial variant (Table 11) and the
stochastic weight regularisation of its CLIP-initialised spatial layers (models/temporal_branch.py).

Evidence, on the tiny random CLIP (2 blocks, so ``branch_blocks=2``):
* step 0 IS zero-shot CLIP: the branch's video embedding equals TAP of CLIP's frame embeddings, through the branch,
  the recogniser's forward and the classifier's ``pool`` on ``(crops, views, T, F)``;
* gradients reach every branch parameter (zero-initialised outputs open up step by step) and never the tower;
* the mixed weights are ``α·θ_ft + (1 − α)·θ_frozen`` with ``θ_frozen`` the frozen tower's own blocks; training mode
  with ``λ > 0`` draws α and records the matching term, ``λ = 0`` and eval mode are the plain deterministic forward;
* the branch uses frame order (TAP does not), segments are the branch over each segment's frames;
* a run trains, saves without the frozen tower, loads and classifies through ``openvocab classify``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from safetensors import safe_open
from torch.func import functional_call

from openvocab.classifier import VideoClassifier as Classifier
from openvocab.errors import InputError
from openvocab.io.encode import write_video
from openvocab.io.sampling import SamplerSpec
from openvocab.models.factory import create_recognizer, load_recognizer
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.models.temporal_branch import TemporalBranch
from openvocab.scoring import label_probabilities, similarity_logits
from openvocab.train.head_training import stream_caches

pytestmark = pytest.mark.usefixtures("one_torch_thread")

FRAMES = 4
CLASSES = ["red circle", "blue square", "green line"]


def _spec(kind: str = "parallel", *, weight_reg: float = 0.5, classifier: str = "orthogonal", **stream) -> RecognizerSpec:
    s = {"model": "random:tiny", "temporal": kind, "branch_blocks": 2, "train_backbone": False, "frames": FRAMES, "weight_reg": weight_reg, **stream}
    return RecognizerSpec(streams={"rgb": StreamSpec(**s)}, head=HeadSpec(classifier=classifier, num_classes=len(CLASSES)))


@pytest.fixture(scope="module")
def built() -> dict:
    """One recogniser per kind (tests work on deep copies); the branch's random initialisation seeded."""
    torch.manual_seed(0)
    return {kind: create_recognizer(_spec(kind), class_names=CLASSES).eval() for kind in ("parallel", "serial")}


@pytest.fixture(scope="module")
def pixels() -> torch.Tensor:
    return torch.randn(2, FRAMES, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def _tap(rec, pixels: torch.Tensor) -> torch.Tensor:
    b, t = pixels.shape[:2]
    with torch.no_grad():
        return rec.backbone.encode_frames(pixels.reshape(b * t, *pixels.shape[2:])).reshape(b, t, -1).mean(dim=1)


def _train(rec, frames: torch.Tensor, targets: torch.Tensor, steps: int, *, lr: float = 1e-2) -> list[dict[str, torch.Tensor]]:
    """``steps`` AdamW steps of CE on the recogniser's logits from ``frames``; the gradients seen at every step."""
    groups = rec.parameter_groups()
    params = [p for _, p in groups["head"] + groups["head_clip_init"]]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    names = {id(p): n for n, p in rec.named_parameters()}
    seen = []
    rec.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(rec.logits_from_frame_features(frames), targets) + rec.auxiliary_loss()
        loss.backward()
        seen.append({names[id(p)]: p.grad.detach().clone() for p in params if p.grad is not None})
        opt.step()
    return seen


@pytest.fixture(scope="module")
def trained(built, pixels) -> dict:
    """The parallel recogniser after 4 steps (λ = 0.5), with its frame features and the tower before training."""
    rec = copy.deepcopy(built["parallel"])
    tower = {k: v.clone() for k, v in rec.backbone.clip.vision_model.state_dict().items()}
    frames = rec.primary_stream.frame_features(pixels)
    grads = _train(rec, frames, torch.tensor([0, 1]), steps=4)
    return {"rec": rec.eval(), "frames": frames, "grads": grads, "tower": tower}


# ---------------------------------------------------------------------------------------------------------------- step 0
@pytest.mark.parametrize("kind", ["parallel", "serial"])
def test_step0_branch_video_embedding_is_clip_tap(built, pixels, kind):
    rec = copy.deepcopy(built[kind])
    stream = rec.primary_stream
    branch = stream.temporal
    assert isinstance(branch, TemporalBranch) and branch.kind == kind
    frames = stream.frame_features(pixels)
    d = rec.backbone.embed_dim
    assert stream.dim == d and frames.shape == (2, FRAMES, stream.frame_dim) and stream.frame_dim > d
    # what the frozen tower gives per frame: its CLIP embedding, then CLS + patch tokens at the taps
    flat = pixels.reshape(-1, *pixels.shape[2:])
    with torch.no_grad():
        assert torch.allclose(frames[..., :d].reshape(-1, d), rec.backbone.encode_frames(flat), atol=1e-5)
        tokens = rec.backbone.vision_tokens(flat, layers=list(branch.taps))
    assert torch.allclose(branch.split(frames)[1].reshape(tokens.shape), tokens, atol=1e-5)
    assert branch.taps == ((2,) if kind == "serial" else (0, 1))  # serial: the tower's output; parallel: inputs of its last 2 blocks
    tap = _tap(rec, pixels)
    with torch.no_grad():
        assert torch.allclose(stream.pool(frames), tap, atol=1e-6)
        assert torch.allclose(rec(pixels, embed=True), rec.head.embed(tap), atol=1e-6)
        rec.train()  # λ = 0.5: at step 0 θ_ft = θ_frozen, so the mixed forward is CLIP too
        assert torch.allclose(rec(pixels, embed=True), rec.head.embed(tap), atol=1e-6)
        assert 0.0 <= branch.last_alpha < 0.5 and float(rec.auxiliary_loss()) == 0.0
    # the classifier's pool on (crops, views, T, F) frame features
    clf = Classifier(recognizer=rec, label_bank=None)
    views = torch.cat([frames, frames.flip(1)]).reshape(2, 2, FRAMES, -1)
    pooled = clf.pool(views)
    assert pooled.shape == (2, 2, d)
    assert torch.allclose(pooled, rec.head.embed(views[..., :d].mean(dim=-2)), atol=1e-6)


def test_branch_refuses_what_it_cannot_serve(built):
    with pytest.raises(InputError, match="FROZEN vision tower"):
        create_recognizer(_spec(train_backbone=True), class_names=CLASSES, backbones={"rgb": copy.deepcopy(built["parallel"].backbone)})
    with pytest.raises(InputError, match="branch_blocks must be between 1 and 2"):
        create_recognizer(_spec(branch_blocks=3), class_names=CLASSES, backbones={"rgb": copy.deepcopy(built["parallel"].backbone)})
    with pytest.raises(InputError, match="token_t1d"):
        create_recognizer(_spec(token_t1d_blocks=(0,)), class_names=CLASSES, backbones={"rgb": copy.deepcopy(built["parallel"].backbone)})
    rec = built["parallel"]
    with pytest.raises(InputError, match="values per frame"):  # D-wide embeddings (a feature cache) are not its input
        rec.primary_stream.pool(torch.zeros(1, FRAMES, rec.backbone.embed_dim))
    with pytest.raises(InputError, match="must be 224x224"):
        rec.primary_stream.frame_features(torch.zeros(1, 2, 3, 160, 160))
    with pytest.raises(InputError, match="reads the vision tower's tokens"):  # features train-head: a cache holds embeddings only
        stream_caches(rec, {"rgb": SimpleNamespace(modality="rgb", frames=torch.zeros(1, 1, FRAMES, rec.backbone.embed_dim), directory=Path("cache"))})
    mov = RecognizerSpec(
        streams={"rgb": _spec().streams["rgb"], "flow": StreamSpec(model="random:tiny", input="flow", train_backbone=False)},
        head=HeadSpec(classifier="text"),
        fusion="mov",
    )
    with pytest.raises(InputError, match="use tap"):
        create_recognizer(mov)


# ------------------------------------------------------------------------------------------------------------- gradients
def test_gradients_reach_every_branch_parameter_and_never_the_tower(trained):
    rec, grads = trained["rec"], trained["grads"]
    branch = rec.primary_stream.temporal
    prefix = "streams.rgb.temporal."
    nonzero = [{n for n, g in step.items() if g.abs().sum() > 0} for step in grads]
    # step 0: the zero-initialised read-out is the only way out of the branch (TAP exactly), so it alone has a gradient
    assert nonzero[0] == {prefix + "readout.weight"}
    # after one step the read-out is open: projections, temporal attention outputs, CLIP-copied spatial layers, positions
    for name in ("proj.0.weight", "proj.1.weight", "temporal.0.attn.out_proj.weight", "temporal.1.attn.out_proj.weight", "spatial_position"):
        assert prefix + name in nonzero[1], name
    assert {prefix + "spatial." + n for n, _ in branch.spatial.named_parameters()} <= nonzero[1]
    # ... and after two, the temporal attention's (random) input projections behind the zero-initialised outputs
    branch_names = {prefix + n for n, _ in branch.named_parameters()}
    assert branch_names <= nonzero[2]
    assert not any(".backbone." in n for step in grads for n in step)
    for n, p in rec.backbone.clip.named_parameters():
        assert not p.requires_grad and p.grad is None, n
    for k, v in rec.backbone.clip.vision_model.state_dict().items():
        assert torch.equal(v, trained["tower"][k]), k
    groups = rec.parameter_groups()
    assert {n for n, _ in groups["head_clip_init"]} == {prefix + "spatial." + n for n, _ in branch.spatial.named_parameters()}
    assert not groups["backbone"] and branch_names == {n for n, _ in groups["head"] + groups["head_clip_init"]}


# ------------------------------------------------------------------------------------------------- weight regularisation
def test_mixed_weights_are_alpha_finetuned_plus_one_minus_alpha_frozen(trained):
    branch = trained["rec"].primary_stream.temporal
    alpha = 0.3
    for b in range(branch.blocks):
        frozen_layer = branch.frozen_layer(b)
        assert frozen_layer is trained["rec"].backbone.clip.vision_model.encoder.layers[branch.layers[b]]
        mixed = branch.mixed_parameters(b, alpha)
        frozen = dict(frozen_layer.named_parameters())
        finetuned = dict(branch.spatial[b].named_parameters())
        assert set(mixed) == set(finetuned) == set(frozen)
        assert any(not torch.equal(finetuned[n], frozen[n]) for n in finetuned)  # training moved θ_ft away from CLIP
        for n, p in mixed.items():
            assert torch.allclose(p, alpha * finetuned[n] + (1 - alpha) * frozen[n], atol=1e-7), n
        # the functional forward equals a copy of the layer holding those weights
        x = torch.randn(3, branch.tokens + 1, branch.width)
        layer = copy.deepcopy(branch.spatial[b])
        with torch.no_grad():
            for n, p in layer.named_parameters():
                p.copy_(alpha * finetuned[n] + (1 - alpha) * frozen[n])
            assert torch.allclose(functional_call(branch.spatial[b], mixed, (x, None)), layer(x, None), atol=1e-5)
    assert not any(k.startswith("streams.rgb.temporal.") and "frozen" in k for k in trained["rec"].state_dict())


def test_weight_regularisation_in_training_mode(trained):
    rec = copy.deepcopy(trained["rec"])
    frames = trained["frames"]
    stream = rec.primary_stream
    branch = stream.temporal
    rec.train()
    torch.manual_seed(1)
    first = stream.pool(frames)
    alpha_1 = branch.last_alpha
    term = rec.auxiliary_loss()
    torch.manual_seed(2)
    second = stream.pool(frames)
    alpha_2 = branch.last_alpha
    assert 0.0 <= alpha_1 < 0.5 and 0.0 <= alpha_2 < 0.5 and alpha_1 != alpha_2
    assert not torch.allclose(first, second, atol=1e-5)  # different α, different outputs
    assert torch.allclose(second, branch.video_embedding(frames, alpha=alpha_2), atol=1e-6)  # the task output is θ_mix's
    finetuned = branch.video_embedding(frames)
    assert term.requires_grad and float(term.detach()) > 0
    assert torch.allclose(rec.auxiliary_loss(), torch.nn.functional.mse_loss(finetuned, second), atol=1e-7)
    assert float(rec.auxiliary_loss()) == 0.0  # collected: nothing pending
    # the matching term trains the CLIP-initialised layers
    stream.pool(frames)
    rec.auxiliary_loss().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in branch.spatial.parameters())
    # eval: θ_ft only, deterministic, nothing recorded
    rec.eval()
    with torch.no_grad():
        a, b = stream.pool(frames), stream.pool(frames)
    assert torch.equal(a, b) and torch.allclose(a, finetuned, atol=1e-6)
    assert float(rec.auxiliary_loss()) == 0.0
    # λ = 0: the plain forward in training mode as well
    branch.weight_reg = 0.0
    rec.train()
    c, d = stream.pool(frames), stream.pool(frames)
    assert torch.equal(c, d) and torch.allclose(c, a, atol=1e-6)
    assert float(rec.auxiliary_loss()) == 0.0


# ------------------------------------------------------------------------------------------- temporal order, segments
@pytest.mark.parametrize("kind", ["parallel", "serial"])
def test_branch_learns_frame_order_where_tap_cannot(built, pixels, kind):
    """A video and the same frames reversed, with different labels: identical for TAP, separated by the branch."""
    rec = copy.deepcopy(built[kind])
    d = rec.backbone.embed_dim
    forward = rec.primary_stream.frame_features(pixels[:1])
    frames = torch.cat([forward, forward.flip(1)])
    assert torch.allclose(frames[0, :, :d].mean(0), frames[1, :, :d].mean(0), atol=1e-6)  # TAP: the same video twice
    torch.manual_seed(0)
    # the zero-initialised paths (read-out, temporal attention outputs) open first: measured, both kinds separate
    # the two orders after ~190 steps at this rate, for every one of 5 initialisation seeds
    _train(rec, frames, torch.tensor([0, 1]), steps=240, lr=3e-3)
    rec.eval()
    with torch.no_grad():
        logits = rec.logits_from_frame_features(frames)
    assert logits.argmax(-1).tolist() == [0, 1], logits
    assert (logits[0] - logits[1]).abs().max() > 1.0


def test_classifier_clip_and_segment_scores_are_the_branch(trained):
    rec = copy.deepcopy(trained["rec"])
    with torch.no_grad():  # open the read-out wide, so the branch's share is far from TAP's
        branch = rec.primary_stream.temporal
        branch.readout.weight.copy_(0.5 * torch.eye(branch.embed_dim))
    clf = Classifier(recognizer=rec, label_bank=None)
    video = np.random.default_rng(0).integers(0, 255, size=(16, 64, 64, 3), dtype=np.uint8)
    result = clf.classify(video, CLASSES, frames=FRAMES, top_k=len(CLASSES), segments=2)
    emb = clf.embed_video(video, sampler=SamplerSpec(frames=FRAMES))
    assert emb.frames.shape == (1, 1, FRAMES, rec.primary_stream.frame_dim)
    d = rec.backbone.embed_dim
    labels = clf.label_embeddings(CLASSES)

    def probs(frames: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            video_embedding = rec.embed_frames(frames)
        return label_probabilities(similarity_logits(video_embedding, labels, logit_scale=clf.logit_scale), multi_label=False)

    clip = {ls.label: ls.score for ls in result.labels}
    assert torch.allclose(torch.tensor([clip[c] for c in CLASSES]), probs(emb.frames[0, 0]), atol=1e-5)
    assert len(result.segments) == 2  # 4 uniform frames over 16: two per half, pooled by the branch in time order
    for k, seg in enumerate(result.segments):
        got = {ls.label: ls.score for ls in seg.labels}
        segment = emb.frames[0, 0, 2 * k : 2 * k + 2]
        assert torch.allclose(torch.tensor([got[c] for c in CLASSES]), probs(segment), atol=1e-5)
        tap = label_probabilities(similarity_logits(rec.head.embed(segment[:, :d].mean(0)), labels, logit_scale=clf.logit_scale), multi_label=False)
        assert (torch.tensor([got[c] for c in CLASSES]) - tap).abs().max() > 1e-3  # not TAP of the segment


# ----------------------------------------------------------------------------------------- checkpoints, run, classify
@pytest.fixture(scope="module")
def parallel_run(tmp_path_factory) -> Path:
    from openvocab.data.synth import SynthSpec, generate
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train

    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left",),
        label_factors=("colour",),
        clips_per_class=2,
        frames=4,
        size=48,
        novel_fraction=0.0,
    )
    data = generate(spec, tmp_path_factory.mktemp("synth_branch"), seed=1)
    out = tmp_path_factory.mktemp("runs") / "parallel"
    overrides = {
        "data.train": str(data / "train.csv"),
        "data.val": "null",
        "run.out": str(out),
        "run.progress": "false",
        "model.model": "random:tiny",
        "model.classifier": "orthogonal",
        "model.temporal": "parallel",
        "model.branch_blocks": "2",
        "model.train_backbone": "false",
        "data.frames": str(FRAMES),
        "data.batch_size": "2",
        "data.workers": "0",
        "optim.epochs": "1",
        "optim.warmup_epochs": "0",
        "optim.lr": "1e-2",
        "run.max_steps": "2",
        "run.keep_last": "1",
    }
    recipe = Path(__file__).resolve().parents[1] / "configs" / "text4vis" / "synth_tiny.yaml"
    train(load_config(recipe, [f"{k}={v}" for k, v in overrides.items()]))
    return out


def test_run_saves_only_the_branch_loads_and_classifies(parallel_run, cli, tmp_path):
    step = parallel_run / (parallel_run / "latest").read_text().strip()
    with safe_open(str(step / "model.safetensors"), "pt") as f:
        stored = set(f.keys())
        omitted = set(json.loads(f.metadata()["omitted"]))
    assert any(k.startswith("streams.rgb.temporal.spatial.") for k in stored)
    assert {"streams.rgb.temporal.readout.weight", "streams.rgb.temporal.temporal_position"} <= stored
    assert not any(k.startswith("streams.rgb.backbone.clip.vision_model.") for k in stored)  # the frozen tower: digests only
    assert any(k.startswith("streams.rgb.backbone.clip.vision_model.encoder.") for k in omitted)
    model = load_recognizer(parallel_run)
    branch = model.primary_stream.temporal
    assert isinstance(branch, TemporalBranch) and not model.training and bool(branch.readout.weight.detach().abs().sum() != 0.0)  # the trained state
    with safe_open(str(step / "model.safetensors"), "pt") as f:
        for k in ("streams.rgb.temporal.readout.weight", "streams.rgb.temporal.proj.1.weight", "streams.rgb.temporal.spatial.0.mlp.fc1.weight"):
            assert torch.equal(model.state_dict()[k], f.get_tensor(k)), k
    video = np.random.default_rng(1).integers(0, 255, size=(12, 48, 48, 3), dtype=np.uint8)
    path = write_video(tmp_path / "clip.mp4", video, fps=12)
    code, out, err = cli(
        "classify",
        str(path),
        "--labels",
        "red object, blue object",
        "--model",
        str(parallel_run),
        "--frames",
        str(FRAMES),
        "--format",
        "json",
        "--no-label-bank",
    )
    assert code == 0, err
    rows = json.loads(out)
    rows = rows if isinstance(rows, list) else [rows]
    assert {ls["label"] for ls in rows[0]["labels"]} == {"red object", "blue object"} and rows[0]["segments"]


def test_manual_checkpoint_round_trip(trained, tmp_path):
    from openvocab.models.checkpoint import load_checkpoint, save_checkpoint

    rec = trained["rec"]
    save_checkpoint(tmp_path, step=1, epoch=0, model=rec, arch=rec.spec.arch(), omit=rec.frozen_pretrained_keys())
    fresh = create_recognizer(rec.spec, class_names=CLASSES, from_checkpoint=True)
    load_checkpoint(tmp_path, model=fresh, arch=rec.spec.arch(), restore_rng=False)
    fresh.eval()
    with torch.no_grad():
        assert torch.allclose(fresh.primary_stream.pool(trained["frames"]), rec.primary_stream.pool(trained["frames"]), atol=1e-6)
