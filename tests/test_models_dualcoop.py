"""DualCoOp* (open-vocabulary multi-label §4.2, J.3) written in openvocab's one scoring path: the head's
``σ(scale · cos)`` equals DualCoOp's softmax over the positive/negative prompt pair computed directly from two CoOp
context learners; only the two contexts learn; the multi-label objective (Eq. 2) trains it; the label bank caches
its (2D-wide) rows and ``classify --multi-label`` scores any label with them."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from openvocab.models.backbone import ClipBackbone
from openvocab.models.coop import CoopLabelEncoder
from openvocab.models.dualcoop import DualCoopClassifier
from openvocab.models.factory import create_recognizer
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.train.losses import multilabel_bce
from openvocab.train.samplers import batch_classes

pytestmark = pytest.mark.usefixtures("one_torch_thread")
LABELS = ["jumping", "playing guitar", "dog barking", "red circle", "swimming", "x"]


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    return ClipBackbone.from_pretrained("random:tiny")


def _model(backbone, *, logit_scale: float = 1 / 0.07):
    spec = RecognizerSpec(
        streams={"rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=2)},
        head=HeadSpec(classifier="dualcoop", num_classes=len(LABELS), context_tokens=4, logit_scale=logit_scale),
    )
    return create_recognizer(spec, class_names=LABELS, backbones={"rgb": backbone})


def test_score_is_the_softmax_over_the_positive_and_negative_prompt(backbone):
    tau = 0.07
    model = _model(backbone, logit_scale=1 / tau)
    head = model.head
    assert isinstance(head, DualCoopClassifier) and head.logit_scale == pytest.approx(2 / tau)
    video = torch.randn(3, backbone.embed_dim, generator=torch.Generator().manual_seed(0))
    pos: CoopLabelEncoder = head.label_encoder.positive
    neg: CoopLabelEncoder = head.label_encoder.negative
    with torch.no_grad():
        s_pos = F.normalize(video, dim=-1) @ pos(LABELS).T
        s_neg = F.normalize(video, dim=-1) @ neg(LABELS).T
        expected = torch.softmax(torch.stack([s_pos, s_neg], dim=-1) / tau, dim=-1)[..., 0]
        got = torch.sigmoid(head(video))
    assert torch.allclose(got, expected, atol=1e-5)
    rows = head.label_encoder.encode(LABELS)
    assert rows.shape == (len(LABELS), 2 * backbone.embed_dim)
    assert torch.allclose(rows.norm(dim=-1), torch.ones(len(LABELS)), atol=1e-5)
    assert not torch.allclose(pos.context, neg.context)  # two different prompts from the start


def test_only_the_two_contexts_learn_and_the_bce_goes_down(backbone):
    torch.manual_seed(0)
    model = _model(backbone)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(trainable) == ["head.label_encoder.negative.context", "head.label_encoder.positive.context"]
    assert not any(k.startswith("head.label_encoder") and "clip" in k for k in model.state_dict())
    head = model.head
    # a fixed multi-label problem on fixed video embeddings: labels 0-2 present in video 0, labels 3-5 in video 1
    video = torch.randn(2, backbone.embed_dim, generator=torch.Generator().manual_seed(1))
    positives = [[0, 1, 2], [3, 4, 5]]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-1, weight_decay=0.0)
    losses = []
    for step in range(60):
        classes, targets = batch_classes(positives, num_classes=len(LABELS), rng=np.random.default_rng(step), per_video=4)
        rows = head.class_embeddings(torch.as_tensor(classes))
        loss = multilabel_bce(head.embed(video), rows, torch.as_tensor(targets), tau=1 / head.logit_scale, negative_weight=1.0)
        opt.zero_grad()
        loss.backward()
        for p in backbone.clip.parameters():
            assert p.grad is None
        assert head.label_encoder.positive.context.grad.abs().sum() > 0 and head.label_encoder.negative.context.grad.abs().sum() > 0
        opt.step()
        losses.append(float(loss.detach()))
    # a shared context through a random tiny text tower separates labels only slowly: the loss must still fall
    assert losses[-1] < 0.85 * losses[0]


def test_classify_multi_label_with_a_dualcoop_recogniser(backbone, make_video, tmp_path):
    from openvocab.classifier import VideoClassifier
    from openvocab.text.label_bank import LabelBank

    model = _model(backbone)
    bank = LabelBank(tmp_path / "bank.sqlite")
    clf = VideoClassifier(recognizer=model, label_bank=bank)
    video = make_video("clip.mp4", num_frames=12)
    result = clf.classify(str(video), ["unseen label", "jumping"], frames=2, multi_label=True)
    assert {s.label for s in result.labels} == {"unseen label", "jumping"}
    assert all(0.0 <= s.score <= 1.0 for s in result.labels)
    assert bank.count() == 2  # cached under the DualCoOp encoder's fingerprint, 2D-wide rows
    emb = bank.get(fingerprint=model.head.label_encoder.fingerprint, prompt_set=model.head.label_encoder.prompt_key, labels=["jumping"])
    assert emb["jumping"].shape == (2 * backbone.embed_dim,)
