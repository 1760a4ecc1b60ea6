"""The trained baselines of MOV Tables 1-2 as classifier heads: CoOp (learned prompt context) and CLIP-Adapter.

Proved here: CoOp initialised with the words "a video of a" IS CLIP on the template "a video of a {}." (same tower,
same tokens, so the learned-context path is the text path); only the context vectors receive gradients (never the
frozen text tower, which is not even part of the head's state); CLIP-Adapter with ratio 0 IS the frozen text head;
and a few steps of the real trainer lower the training loss, reload through ``load_recognizer`` with the same
logits, change the label-bank fingerprint, and score unseen labels with the learned context / adapters in
``openvocab.load(run).classify`` and ``openvocab classify --model RUN``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import openvocab
from openvocab.data.dataset import VideoClipDataset
from openvocab.data.manifests import VideoRecord
from openvocab.data.synth import SynthSpec, generate
from openvocab.io.sampling import SamplerSpec
from openvocab.models.backbone import ClipBackbone
from openvocab.models.clip_adapter import AdapterClassifier
from openvocab.models.coop import CoopClassifier, CoopLabelEncoder
from openvocab.models.factory import create_recognizer, load_recognizer
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.text.label_bank import LabelBank
from openvocab.text.label_encoders import ClipTextEncoder
from openvocab.text.prompts import prompt_set

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"
FRAMES = 2
LABELS = ["jumping", "playing guitar", "a dog barking loudly in a park at night", "x"]
UNSEEN = ["purple triangle spinning", "juggling"]


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    return ClipBackbone.from_pretrained("random:tiny")


def _spec(classifier: str, classes: int, **head) -> RecognizerSpec:
    return RecognizerSpec(
        streams={"rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=FRAMES)}, head=HeadSpec(classifier=classifier, num_classes=classes, **head)
    )


def test_coop_with_template_words_is_clip_on_that_template(backbone):
    reference = ClipTextEncoder(backbone, prompt_set("single", template="a video of a {}.")).encode(LABELS)
    coop = CoopLabelEncoder(backbone, init_words="a video of a")
    assert coop.context_tokens == 4
    assert torch.allclose(coop.encode(LABELS), reference, atol=1e-5)
    # the builder takes the same initialisation from the recipe's template (CoOp's "ctx_init")
    model = create_recognizer(_spec("coop", 4, template="a video of a {}."), class_names=LABELS, backbones={"rgb": backbone})
    assert torch.allclose(model.head.label_encoder.encode(LABELS), reference, atol=1e-5)
    # the paper's default: 16 vectors ~ N(0, 0.02^2), which is another prompt altogether
    generic = CoopLabelEncoder(backbone, context_tokens=16, seed=0)
    assert generic.context.shape == (16, backbone.clip.config.text_config.hidden_size)
    assert 0.015 < float(generic.context.detach().std()) < 0.025
    assert (generic.encode(LABELS) - reference).abs().max() > 1e-2


def test_coop_trains_only_its_context(backbone):
    names = LABELS[:3]
    model = create_recognizer(_spec("coop", 3, context_tokens=8), class_names=names, backbones={"rgb": backbone})
    head = model.head
    assert isinstance(head, CoopClassifier)
    state = model.state_dict()
    assert [k for k in state if k.startswith("head.")] == ["head.label_encoder.context"], "the CLIP model must not be a submodule of the head"
    assert [n for n, _ in model.parameter_groups()["label_encoder"]] == ["head.label_encoder.context"]
    assert all(k in model.frozen_pretrained_keys() for k in state if ".text_model." in k)
    before = head.label_encoder.fingerprint
    logits = model.logits_from_frame_features(torch.randn(3, FRAMES, backbone.embed_dim))
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert head.label_encoder.context.grad is not None and head.label_encoder.context.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in backbone.clip.text_model.parameters())
    assert backbone.clip.text_projection.weight.grad is None
    torch.optim.SGD([head.label_encoder.context], lr=0.1).step()
    assert head.label_encoder.fingerprint != before, "new weights, new label-bank key"


def test_adapter_with_ratio_zero_is_the_frozen_text_head(backbone):
    names = LABELS[:3]
    frames = torch.randn(5, FRAMES, backbone.embed_dim)
    text = create_recognizer(_spec("text", 3), class_names=names, backbones={"rgb": backbone})
    off = create_recognizer(_spec("adapter", 3, adapter_ratio=0.0), class_names=names, backbones={"rgb": backbone})
    on = create_recognizer(_spec("adapter", 3), class_names=names, backbones={"rgb": backbone})
    assert isinstance(on.head, AdapterClassifier)
    with torch.no_grad():
        assert torch.allclose(off.logits_from_frame_features(frames), text.logits_from_frame_features(frames), atol=1e-5)
        assert (on.logits_from_frame_features(frames) - text.logits_from_frame_features(frames)).abs().max() > 1e-3
        assert torch.allclose(off.head.label_encoder.encode(UNSEEN), text.head.label_encoder.encode(UNSEEN), atol=1e-6)
    mlp = on.head.visual_adapter.mlp  # Linear(d, d/4) -> ReLU -> Linear(d/4, d) -> ReLU, no biases
    assert [tuple(m.weight.shape) for m in (mlp[0], mlp[2])] == [(16, 64), (64, 16)] and mlp[0].bias is None
    assert on.head.visual_adapter.ratio == pytest.approx(0.2)
    F.cross_entropy(on.logits_from_frame_features(frames), torch.tensor([0, 1, 2, 0, 1])).backward()
    groups = on.parameter_groups()
    assert sorted(n for n, _ in groups["label_encoder"]) == ["head.label_encoder.adapter.mlp.0.weight", "head.label_encoder.adapter.mlp.2.weight"]
    assert all(p.grad is not None for _, p in groups["label_encoder"] + groups["head"])
    assert all(p.grad is None for p in backbone.clip.text_model.parameters())


# ---------------------------------------------------------------------------------------------------------------------
# a few steps of the real trainer
# ---------------------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    spec = SynthSpec(
        shapes=("circle", "square"), colours=("red", "blue"), motions=("left",), label_factors=("colour", "shape"), clips_per_class=4, frames=4, size=48
    )
    return generate(spec, tmp_path_factory.mktemp("synth_coop"), seed=5)


@pytest.fixture(scope="module", params=["coop", "adapter"])
def run(request, synth, tmp_path_factory) -> dict:
    """Train 3 steps (frozen vision tower: only the head learns); keep the in-memory model and the initial one."""
    from openvocab.train import trainer
    from openvocab.train.config import load_config
    from openvocab.train.data_setup import load_splits

    out = tmp_path_factory.mktemp("runs") / request.param
    overrides = {
        "data.train": str(synth / "train.csv"),
        "data.val": "null",
        "run.out": str(out),
        "run.progress": "false",
        "run.keep_last": "1",
        "model.classifier": request.param,
        "model.train_backbone": "false",
        "model.context_tokens": "4",
        "model.prompts": "single",
        "model.logit_scale": "100",
        "data.frames": str(FRAMES),
        "data.batch_size": "6",  # the whole training split: one deterministic step per epoch
        "data.workers": "0",
        "data.augment": "false",
        "optim.epochs": "3",
        "optim.warmup_epochs": "0",
        "optim.lr": "1e-2",
    }
    cfg = load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()])
    built: list = []

    def spy(*args, **kwargs):
        model = real(*args, **kwargs)
        built.append((model, {k: v.clone() for k, v in model.head.state_dict().items()}))
        return model

    real = trainer.build_model
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer, "build_model", spy)
        trainer.train(cfg)
    manifest, _ = load_splits(cfg.data, log_problems=False)
    names = manifest.class_names(normalised=True)
    initial = real(cfg, names, device="cpu")
    (model, at_step_0), *_ = built
    assert at_step_0.keys() == initial.head.state_dict().keys()
    assert all(torch.equal(v, initial.head.state_dict()[k]) for k, v in at_step_0.items()), "the head's initialisation is seeded"
    ds = VideoClipDataset(manifest.records, sampler=SamplerSpec(frames=FRAMES), clip=initial.backbone.image_spec, train=False)
    pixels = torch.stack([ds[i]["inputs"]["rgb"][0, 0] for i in range(len(ds))])
    with torch.no_grad():
        frames = initial.eval().frame_features(pixels)
    targets = torch.tensor([r.labels[0] for r in manifest.records])
    return {"out": out, "trained": model.eval(), "initial": initial, "frames": frames, "targets": targets, "names": names}


def test_training_lowers_the_loss_and_reloads_with_equal_logits(run):
    trained, initial, frames, targets = run["trained"], run["initial"], run["frames"], run["targets"]
    loaded = load_recognizer(run["out"])
    with torch.no_grad():
        loss_before = F.cross_entropy(initial.logits_from_frame_features(frames), targets).item()
        logits = trained.logits_from_frame_features(frames)
        loss_after = F.cross_entropy(logits, targets).item()
        assert loss_after < loss_before - 0.05, (loss_before, loss_after)
        assert torch.allclose(loaded.logits_from_frame_features(frames), logits, atol=1e-5)
        # the open-vocabulary path (label_encoder.encode, what classify and the label bank use) scores the training
        # classes exactly as the training forward does
        pooled = loaded.fusion({"rgb": loaded.primary_stream.pool(frames["rgb"])})
        assert torch.allclose(loaded.head(pooled, label_embeddings=loaded.label_encoder.encode(run["names"])), logits, atol=1e-4)
        assert torch.equal(loaded.frame_features({"rgb": torch.zeros(1, 1, 3, 224, 224)})["rgb"], trained.frame_features(torch.zeros(1, 1, 3, 224, 224))["rgb"])
    assert loaded.label_encoder.fingerprint == trained.label_encoder.fingerprint != initial.label_encoder.fingerprint


def test_classify_scores_unseen_labels_with_the_learned_head(run, synth, tmp_path):
    trained, initial = run["trained"], run["initial"]
    labels = [*UNSEEN, run["names"][0]]
    bank_path = tmp_path / "bank.sqlite"
    with LabelBank(bank_path) as bank:  # rows of the untrained head, cached first, must not be served to the trained one
        stale, _ = bank.embeddings(initial.label_encoder, labels)
    clf = openvocab.load(run["out"], label_bank=bank_path)
    rows = clf.label_embeddings(labels)
    expected_rows = trained.label_encoder.encode(labels)
    assert torch.allclose(rows, expected_rows, atol=1e-5) and (rows - stale).abs().max() > 1e-4
    video = synth / next(csv.DictReader((synth / "val.csv").open()))["path"]
    ds = VideoClipDataset([VideoRecord(path=str(video), labels=(0,))], sampler=SamplerSpec(frames=FRAMES), clip=trained.backbone.image_spec, train=False)
    with torch.no_grad():
        logits = trained.head(trained.encode_video(ds[0]["inputs"]["rgb"][0]), label_embeddings=expected_rows)
    result = clf.classify(video, labels, frames=FRAMES, views="1x1", top_k=len(labels), segments=0)
    got = {ls.label: ls.score for ls in result.labels}
    assert torch.allclose(torch.tensor([got[n] for n in labels]), logits.softmax(-1)[0], atol=1e-4), (got, logits.softmax(-1))


def test_cli_classify_with_a_trained_baseline_run(run, synth, cli):
    video = synth / next(csv.DictReader((synth / "val.csv").open()))["path"]
    args = ["classify", str(video), "--labels", ", ".join([*UNSEEN, *run["names"]]), "--model", str(run["out"]), "--frames", str(FRAMES), "--no-label-bank"]
    code, out, err = cli(*args)
    assert code == 0, err
    assert "juggling" in out
