"""Fixed LLM prompting (open-vocabulary multi-label §3.1, §4.3, appendix J.1): the LLM's list answer is parsed and
cleaned exactly, labels without usable attributes fall back to the plain prompt with a warning, the rows equal CLIP's
own ``get_text_features`` on the built prompts (mean of normalised embeddings, normalised), the LLM runs once per
label (attributes live in the label bank, whose schema grows without breaking old files), and the random-weight T5
that ``openvocab model create --arch t5-tiny`` writes is a real T5 directory for transformers and for the CLI.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3

import numpy as np
import pytest
import torch

import openvocab
from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.text.label_bank import LabelBank
from openvocab.text.label_encoders import LabelEncoder
from openvocab.text.llm_attributes import (
    ATTRIBUTE_PROMPT_KEY,
    LLM_PROMPT_TEMPLATE,
    LlmAttributeEncoder,
    LlmAttributes,
    attribute_prompts,
    filter_attributes,
    llm_config,
    llm_fingerprint,
    load_llm,
    parse_attribute_list,
)


@pytest.fixture(autouse=True, scope="module")
def _threads(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def backbone(tiny_model_dir) -> ClipBackbone:
    return ClipBackbone.from_pretrained(tiny_model_dir)


# ---------------------------------------------------------------------------------------------------------------------
# parsing and cleaning
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer, expected",
    [
        # the answer to the §4.3 prompt continues after "1. " and goes on "2. ..." in one line
        ("black and white stripes 2. a horse-like body 3. a short mane", ["black and white stripes", "a horse-like body", "a short mane"]),
        ("1. four legs\n2) a long tail\n(3) fur.", ["four legs", "a long tail", "fur"]),
        ("- a red body\n* two wheels\n• handlebars", ["a red body", "two wheels", "handlebars"]),
        ("four legs, a long tail, and fur", ["four legs", "a long tail", "fur"]),  # not a list: split at commas
        ("1. long, curved neck 2. spots", ["long, curved neck", "spots"]),  # a list: commas stay inside items
        ("stripes; hooves; a mane", ["stripes", "hooves", "a mane"]),
        ("stripes 2. Stripes. 3.  STRIPES  4. hooves 5. stripes", ["stripes", "hooves"]),  # a repetition loop
        ("<extra_id_0> a beak 2. feathers <extra_id_1> 1. wings", ["a beak", "feathers", "wings"]),
        ("... !!! 2. 1234 3. ??", []),  # garbage
        ("h h h h h h h h h h h h", []),  # a word-repetition loop (what a random T5 says)
        ("a long neck 2. neck neck neck neck 3. spots on spots on fur", ["a long neck", "spots on spots on fur"]),
        ("", []),
        ("   \n\n  ", []),
        ("a 3.5 inch blade 2. a handle", ["a 3.5 inch blade", "a handle"]),  # a decimal is not a list number
    ],
)
def test_parse_attribute_list(answer, expected):
    assert parse_attribute_list(answer) == expected


def test_filter_attributes_drops_label_repeats_question_echoes_and_non_visual_items():
    items = [
        "Zebra",
        "a zebra",
        "zebras",
        "black and white stripes",
        "the sound of its hooves",
        "its price",
        "there are several useful visual features",
        "a zebra in a photo",
        "Black and  White stripes",
        "a short mane",
        "a loud bray",
    ]
    assert filter_attributes(items, "zebra") == ["black and white stripes", "a short mane"]
    assert filter_attributes(["playing guitar", "a person playing guitar", "strings"], "Playing  Guitar") == ["a person playing guitar", "strings"]


def test_attribute_prompts_and_the_plain_fallback():
    assert attribute_prompts("zebra", ["stripes", "a mane"]) == ["a photo of a zebra, which has stripes.", "a photo of a zebra, which has a mane."]
    assert attribute_prompts("zebra", []) == ["a photo of a zebra."]
    assert "{label}" in LLM_PROMPT_TEMPLATE and LLM_PROMPT_TEMPLATE.endswith("1. <extra_id_0>")


# ---------------------------------------------------------------------------------------------------------------------
# the T5 directory and the loader
# ---------------------------------------------------------------------------------------------------------------------
def test_model_create_writes_a_t5_that_transformers_loads(tiny_t5_dir):
    from transformers import AutoTokenizer, T5ForConditionalGeneration

    from openvocab.models.create import RANDOM_WEIGHTS_MARKER
    from openvocab.text import llm_attributes

    assert llm_attributes._RANDOM_WEIGHTS_MARKER == RANDOM_WEIGHTS_MARKER and (tiny_t5_dir / RANDOM_WEIGHTS_MARKER).is_file()
    model = T5ForConditionalGeneration.from_pretrained(tiny_t5_dir)
    tok = AutoTokenizer.from_pretrained(tiny_t5_dir)
    assert model.config.d_model == 32 and model.config.num_layers == model.config.num_decoder_layers == 2 and model.config.num_heads == 2
    assert 500 <= len(tok) - 100 <= 2000 and model.config.vocab_size == len(tok)
    assert (tok.pad_token_id, tok.eos_token_id, tok.unk_token_id) == (0, 1, 2)
    assert tok.convert_tokens_to_ids("<extra_id_0>") == len(tok) - 1 and tok.convert_tokens_to_ids("<extra_id_99>") == len(tok) - 100
    ids = tok(LLM_PROMPT_TEMPLATE.replace("{label}", "zebra")).input_ids
    assert ids[-2:] == [len(tok) - 1, 1] and tok.unk_token_id not in ids  # "... 1. <extra_id_0> </s>", every word covered
    llm = load_llm(tiny_t5_dir)
    assert llm.random_weights and llm.d_model == 32 and not any(p.requires_grad for p in llm.model.parameters())
    # the sentinel answer of T5: the first span's text
    sentinel = [0, tok.convert_tokens_to_ids("<extra_id_0>"), *tok("a beak").input_ids[:-1], tok.convert_tokens_to_ids("<extra_id_1>"), *tok("junk").input_ids]
    assert llm.answer_text(sentinel) == "a beak"
    answers = llm.generate(["a", "b", "c"], max_new_tokens=3, batch_size=2)
    assert len(answers) == 3 and all(isinstance(a, str) for a in answers)


def test_the_fingerprint_reads_files_and_changes_with_the_weights(tiny_t5_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(tiny_t5_dir, copy)
    assert llm_fingerprint(copy) == llm_fingerprint(tiny_t5_dir) == load_llm(tiny_t5_dir).fingerprint
    from openvocab.models.create import create_model_dir

    other = create_model_dir("t5-tiny", tmp_path / "other", seed=1)
    assert llm_fingerprint(other) != llm_fingerprint(tiny_t5_dir)


def test_loader_errors_are_one_line_and_name_the_source(tiny_t5_dir, tiny_model_dir, tmp_path):
    no_tokenizer = tmp_path / "no_tokenizer"
    no_tokenizer.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(tiny_t5_dir / name, no_tokenizer / name)
    no_weights = tmp_path / "no_weights"
    shutil.copytree(tiny_t5_dir, no_weights)
    (no_weights / "model.safetensors").unlink()
    cases = [
        (tmp_path / "missing", "not exist"),
        (tmp_path, "no config.json"),
        (no_tokenizer, "tokenizer is empty"),
        (no_weights, "no model weights"),
        (tiny_model_dir, "'clip' model"),
    ]
    for source, problem in cases:
        with pytest.raises(InputError) as err:
            load_llm(source)
        message = str(err.value)
        assert problem in message and str(source.name) in message and "\n" not in message, message
    # a hub id offline (the test session sets HF_HUB_OFFLINE): one line, with what to do instead
    for call in (load_llm, llm_config, llm_fingerprint):
        with pytest.raises(InputError, match="google/flan-t5-xl' is not in the local Hugging Face cache and the hub is offline.*hf download"):
            call("google/flan-t5-xl")


# ---------------------------------------------------------------------------------------------------------------------
# the encoder
# ---------------------------------------------------------------------------------------------------------------------
class FakeLlm:
    """An LLM stand-in answering from a dict (by the label in the prompt), counting generate calls."""

    def __init__(self, answers: dict[str, str]) -> None:
        self.answers = answers
        self.calls: list[list[str]] = []
        self.device = torch.device("cpu")
        self.fingerprint = None

    def generate(self, prompts, *, progress=None):
        labels = [p.split("distinguishing a ", 1)[1].split(" in a photo?", 1)[0] for p in prompts]
        self.calls.append(labels)
        return [self.answers[label] for label in labels]


ANSWERS = {
    "zebra": "black and white stripes 2. a horse-like body 3. zebra 4. the sound of hooves",
    "playing guitar": "a guitar, strings, and a person",
    "glorp": "... !!!",
}


def _reference(tiny_model_dir, prompts_by_label: list[list[str]]) -> torch.Tensor:
    """Mean of CLIPModel.get_text_features of each label's prompts (normalised), normalised: the definition."""
    from transformers import CLIPModel

    from openvocab.text.tokenizer import build_clip_tokenizer

    clip = CLIPModel.from_pretrained(tiny_model_dir).eval()
    tok = build_clip_tokenizer()
    rows = []
    with torch.no_grad():
        for prompts in prompts_by_label:
            batch = tok(prompts, padding="max_length", max_length=77, return_tensors="pt")
            out = clip.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
            feats = out.pooler_output if hasattr(out, "pooler_output") else out
            rows.append(torch.nn.functional.normalize(torch.nn.functional.normalize(feats, dim=-1).mean(0), dim=-1))
    return torch.stack(rows)


def test_rows_are_clips_mean_of_attribute_prompts_and_the_llm_runs_once_per_label(backbone, tiny_model_dir, tiny_t5_dir, tmp_path, caplog):
    fake = FakeLlm(ANSWERS)
    bank = LabelBank(tmp_path / "bank.sqlite")
    attrs = LlmAttributes(tiny_t5_dir, label_bank=bank, loader=lambda source, device: fake)
    enc = LlmAttributeEncoder(backbone, attrs)
    assert isinstance(enc, LabelEncoder) and enc.open_vocabulary and enc.fingerprint == backbone.fingerprint
    assert llm_fingerprint(tiny_t5_dir)[:16] in enc.prompt_key
    labels = ["zebra", "playing guitar", "glorp"]
    with caplog.at_level(logging.WARNING, logger="openvocab.text.llm_attributes"):
        rows = enc.encode(labels)
    assert fake.calls == [labels]
    fallback = [r.getMessage() for r in caplog.records if "no usable attributes" in r.getMessage()]
    assert len(fallback) == 1 and "'glorp'" in fallback[0] and "a photo of a glorp." in fallback[0]
    expected_prompts = [
        ["a photo of a zebra, which has black and white stripes.", "a photo of a zebra, which has a horse-like body."],
        [
            "a photo of a playing guitar, which has a guitar.",
            "a photo of a playing guitar, which has strings.",
            "a photo of a playing guitar, which has a person.",
        ],
        ["a photo of a glorp."],
    ]
    assert [enc.prompts([label])[label] for label in labels] == expected_prompts
    torch.testing.assert_close(rows, _reference(tiny_model_dir, expected_prompts), atol=2e-5, rtol=0)
    # attributes are in the bank (glorp's as an empty list, so the LLM is not asked again)
    stored = bank.get_attributes(fingerprint=llm_fingerprint(tiny_t5_dir), prompt_key=ATTRIBUTE_PROMPT_KEY, labels=labels + ["unknown"])
    assert stored == {"zebra": ["black and white stripes", "a horse-like body"], "playing guitar": ["a guitar", "strings", "a person"], "glorp": []}
    raw = bank.attribute_records(fingerprint=llm_fingerprint(tiny_t5_dir), prompt_key=ATTRIBUTE_PROMPT_KEY, labels=["glorp"])["glorp"].raw
    assert raw == "... !!!"
    # a new encoder on the same bank (a new process) never calls the LLM for these labels; a new label calls it once
    fake2 = FakeLlm({**ANSWERS, "horse": "1. a mane 2. hooves"})
    enc2 = LlmAttributeEncoder(backbone, LlmAttributes(tiny_t5_dir, label_bank=bank, loader=lambda source, device: fake2))
    torch.testing.assert_close(enc2.encode(labels), rows)
    assert fake2.calls == []
    enc2.encode(["zebra", "horse"])
    enc2.encode(["horse"])
    assert fake2.calls == [["horse"]]


def test_label_bank_embeddings_and_zero_shot_load_never_rerun_the_llm(tiny_model_dir, tiny_t5_dir, tmp_path, monkeypatch):
    from openvocab.text import llm_attributes

    bank = tmp_path / "bank.sqlite"
    clf = openvocab.load(tiny_model_dir, llm=tiny_t5_dir, label_bank=bank)
    assert clf.recognizer.spec.classifier == "llm-attributes" and isinstance(clf.label_encoder, LlmAttributeEncoder)
    assert clf.label_encoder.attributes.label_bank is clf.label_bank  # attached by the classifier
    first = clf.encode_labels(["zebra", "dog"])
    assert first.encoded == 2 and torch.allclose(first.embeddings.norm(dim=-1), torch.ones(2))
    monkeypatch.setattr(llm_attributes, "load_llm", lambda *a, **k: pytest.fail("the LLM was loaded for cached labels"))
    again = openvocab.load(tiny_model_dir, llm=tiny_t5_dir, label_bank=bank)
    second = again.encode_labels(["dog", "zebra"])
    assert second.encoded == 0 and torch.equal(second.embeddings, first.embeddings[[1, 0]])
    result = again.classify(np.zeros((4, 32, 32, 3), np.uint8), ["zebra", "dog"], frames=2)
    assert {s.label for s in result.labels} == {"zebra", "dog"}
    # embeddings lost, attributes kept: the rows are recomputed from stored attributes without the LLM
    LabelBank(bank).clear()
    third = openvocab.load(tiny_model_dir, llm=tiny_t5_dir, label_bank=bank).encode_labels(["zebra"])
    assert third.encoded == 1 and torch.allclose(third.embeddings, first.embeddings[:1], atol=1e-6)


def test_bank_files_without_the_attributes_table_keep_working(tmp_path):
    path = tmp_path / "old.sqlite"
    conn = sqlite3.connect(path)  # the version-1 layout, as written before the attributes table existed
    conn.executescript(
        "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);"
        "INSERT INTO meta VALUES ('schema_version', '1');"
        "CREATE TABLE embeddings (fingerprint TEXT NOT NULL, prompt_key TEXT NOT NULL, label TEXT NOT NULL, dim INTEGER NOT NULL,"
        " embedding BLOB NOT NULL, created_at REAL NOT NULL, PRIMARY KEY (fingerprint, prompt_key, label)) WITHOUT ROWID;"
    )
    conn.execute("INSERT INTO embeddings VALUES ('fp', 'p', 'yoga', 2, ?, 0)", (np.array([0.6, 0.8], "<f4").tobytes(),))
    conn.commit()
    conn.close()
    bank = LabelBank(path)
    assert bank.get_attributes(fingerprint="llm", prompt_key="k", labels=["yoga"]) == {}
    bank.put_attributes(fingerprint="llm", prompt_key="k", attributes={"yoga": ["a mat", "stretching"], "x": []}, raw={"yoga": "a mat, stretching"})
    bank.close()
    bank = LabelBank(path)
    assert bank.get_attributes(fingerprint="llm", prompt_key="k", labels=["yoga", "x", "y"]) == {"yoga": ["a mat", "stretching"], "x": []}
    assert bank.get_attributes(fingerprint="other", prompt_key="k", labels=["yoga"]) == {}
    torch.testing.assert_close(bank.get(fingerprint="fp", prompt_set="p", labels=["yoga"])["yoga"], torch.tensor([0.6, 0.8]))


def test_cli_attributes_and_classify_with_llm(cli, tiny_model_dir, tiny_t5_dir, tmp_path, make_video):
    bank = tmp_path / "bank.sqlite"
    code, out, err = cli("labels", "attributes", "zebra", "dog", "--llm", str(tiny_t5_dir), "--label-bank", str(bank), "--format", "json", "--raw")
    assert code == 0, err
    rows = json.loads(out)
    assert [r["label"] for r in rows] == ["zebra", "dog"] and all(r["source"] == "generated" and "raw" in r for r in rows)
    assert "2 generated now" in err
    code, out, err = cli("labels", "attributes", "zebra", "--llm", str(tiny_t5_dir), "--label-bank", str(bank))
    assert code == 0 and out.startswith("zebra (label bank):") and "0 generated now" in err
    video = make_video("clip.mp4", num_frames=8)
    args = ("--labels", "zebra, dog", "--model", str(tiny_model_dir), "--llm", str(tiny_t5_dir), "--label-bank", str(bank), "--frames", "2")
    code, out, err = cli("classify", str(video), *args, "--format", "json")
    assert code == 0, err
    assert {s["label"] for s in json.loads(out)[0]["labels"]} == {"zebra", "dog"}
    code, out, err = cli("labels", "add", "--labels", "zebra, horse", "--model", str(tiny_model_dir), "--llm", str(tiny_t5_dir), "--label-bank", str(bank))
    assert code == 0 and "1 newly encoded" in out, (out, err)
    code, _, err = cli("labels", "attributes", "zebra", "--llm", str(tmp_path / "nope"), "--label-bank", str(bank))
    assert code != 0 and "nope" in err and "does not exist" in err
