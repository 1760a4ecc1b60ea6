"""End-to-end learnable LLM prompting (open-vocabulary multi-label §3.1 / Fig. 3, Tables 4 and 10).

Proved here: the CLIP side of the encoder IS CLIP (soft prompts equal to real words' embeddings give
``get_text_features`` of the sentence); the recurrent decoding fed by its own arg-max IS greedy ``generate`` and the
cached step-by-step decoder equals one uncached pass over the fed-back inputs; a loss on label embeddings reaches the
prefixes and the prompt transformer and nothing frozen (LLM, CLIP); LoRA / mlp / linear variants train; the
fingerprint follows the weights; checkpoints hold neither LLM nor CLIP weights but the LLM's identity, refuse another
LLM, and a run's new labels (vocabulary expansion, Fig. 2b) are classified from the label bank without ever loading
the LLM.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

import openvocab
from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.checkpoint import save_checkpoint
from openvocab.models.factory import create_recognizer, load_recognizer
from openvocab.models.heads import FrozenClassifier
from openvocab.models.llm_heads import LlmPromptClassifier
from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
from openvocab.text import llm_attributes
from openvocab.text.label_bank import LabelBank
from openvocab.text.label_encoders import LabelEncoder
from openvocab.text.llm_prompting import LlmPromptEncoder, decode_continuous

CLASSES = ["zebra", "playing guitar", "red car"]
NEW = ["juggling", "a purple bicycle"]


@pytest.fixture(autouse=True, scope="module")
def _threads(one_torch_thread):
    yield


@pytest.fixture(scope="module")
def backbone() -> ClipBackbone:
    return ClipBackbone.from_pretrained("random:tiny")


def _spec(tiny_t5_dir, **head) -> RecognizerSpec:
    settings = dict(classifier="llm-prompt", num_classes=len(CLASSES), llm=str(tiny_t5_dir), llm_prefixes=2, llm_attributes=2, llm_attribute_tokens=3)
    return RecognizerSpec(streams={"rgb": StreamSpec(model="random:tiny", train_backbone=False, frames=2)}, head=HeadSpec(**{**settings, **head}))


def test_the_clip_side_is_clip_on_real_token_embeddings(backbone, tiny_t5_dir):
    enc = LlmPromptEncoder(backbone, tiny_t5_dir, prefixes=1, attributes=1, attribute_tokens=4)
    words = backbone.tokenizer(["a photo of a"])["input_ids"][0][1:-1]
    assert len(words) == 4
    soft = backbone.clip.text_model.embeddings.token_embedding(torch.tensor(words))  # the embeddings of "a photo of a"
    labels = ["zebra", "playing guitar", "a dog barking loudly"]
    with torch.no_grad():
        ours = enc.clip_features(soft[None, None].expand(len(labels), 2, -1, -1), labels)
    assert ours.shape == (3, 2, backbone.embed_dim) and torch.equal(ours[:, 0], ours[:, 1])
    batch = backbone.tokenizer([f"a photo of a {label}." for label in labels], padding="max_length", max_length=77, return_tensors="pt")
    with torch.no_grad():
        out = backbone.clip.get_text_features(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])  # transformers' own forward
    reference = out.pooler_output if hasattr(out, "pooler_output") else out
    torch.testing.assert_close(ours[:, 0], reference, atol=1e-5, rtol=1e-4)


def test_recurrent_decoding_is_greedy_generation_at_temperature_zero(tiny_t5_dir):
    llm = llm_attributes.load_llm(tiny_t5_dir)
    model, tok = llm.model, llm.tokenizer
    batch = tok([llm_attributes.LLM_PROMPT_TEMPLATE.replace("{label}", x) for x in ("zebra", "a red car parked")], return_tensors="pt", padding=True)
    steps = 6
    with torch.no_grad():
        states = model.encoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        hard = decode_continuous(model, states, batch["attention_mask"], steps, temperature=0)
        tokens = model.lm_head(hard * model.config.d_model**-0.5 if model.config.scale_decoder_outputs else hard).argmax(-1)
        greedy = model.generate(**batch, max_new_tokens=steps, do_sample=False, num_beams=1)[:, 1:]
    for ours, theirs in zip(tokens.tolist(), greedy.tolist()):
        n = theirs.index(1) + 1 if 1 in theirs else steps  # generate stops at </s>
        assert ours[:n] == theirs[:n]
    # the soft feedback: the cached step-by-step loop equals one causal pass over the inputs it fed itself
    with torch.no_grad():
        soft = decode_continuous(model, states, batch["attention_mask"], steps)
        table = model.get_input_embeddings().weight
        logits = model.lm_head(soft * model.config.d_model**-0.5 if model.config.scale_decoder_outputs else soft)
        fed = torch.cat([table[0].expand(2, 1, -1), torch.softmax(logits[:, :-1], dim=-1) @ table], dim=1)
        full = model.decoder(inputs_embeds=fed, encoder_hidden_states=states, encoder_attention_mask=batch["attention_mask"]).last_hidden_state
    torch.testing.assert_close(soft, full, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(soft, hard)  # continuous feedback is not the arg-max token


def test_gradients_reach_prefixes_and_prompt_transformer_and_nothing_frozen(backbone, tiny_t5_dir):
    model = create_recognizer(_spec(tiny_t5_dir), class_names=CLASSES, backbones={"rgb": backbone})
    head = model.head
    assert isinstance(head, LlmPromptClassifier) and isinstance(head.label_encoder, LabelEncoder)
    enc = head.label_encoder
    rows = head.class_embeddings(torch.tensor([2, 0]))
    assert rows.shape == (2, backbone.embed_dim) and torch.allclose(rows.norm(dim=-1), torch.ones(2))
    F.cross_entropy(rows @ rows.T * 10, torch.arange(2)).backward()
    assert enc.prefixes.grad is not None and enc.prefixes.grad.abs().sum() > 0
    connector = dict(enc.connector.named_parameters())
    assert all(p.grad is not None for p in connector.values())
    assert connector["inp.weight"].grad.abs().sum() > 0 and connector["out.weight"].grad.abs().sum() > 0
    llm = enc.llm()
    assert enc.llm_loaded
    for frozen in (llm.model, backbone.clip.text_model, backbone.clip.text_projection):
        assert all(p.grad is None and not p.requires_grad for p in frozen.parameters())
    # the trainer's groups: only the encoder's own parameters, under head.label_encoder.*
    names = [n for n, _ in model.parameter_groups()["label_encoder"]]
    assert names and all(n.startswith("head.label_encoder.prefixes") or n.startswith("head.label_encoder.connector.") for n in names)
    # nothing of the LLM or CLIP in the head's state: W̃, the trainable weights and the LLM's 24-byte identity
    keys = [k for k in model.state_dict() if k.startswith("head.")]
    assert set(keys) == {"head.weight", "head.label_encoder._extra_state", *names}
    assert bytes(model.state_dict()["head.label_encoder._extra_state"].tolist()).decode() == llm.fingerprint
    # a frozen classifier's class rows are W̃'s
    frozen_head = FrozenClassifier(torch.randn(4, 8), logit_scale=10.0)
    torch.testing.assert_close(frozen_head.class_embeddings(torch.tensor([3, 1])), frozen_head.weight[[3, 1]])


@pytest.mark.parametrize("connector, adaptation", [("mlp", "prefix"), ("linear", "prefix"), ("transformer", "lora")])
def test_lora_and_other_connectors_build_and_train(backbone, tiny_t5_dir, connector, adaptation):
    enc = LlmPromptEncoder(backbone, tiny_t5_dir, prefixes=2, attributes=2, attribute_tokens=2, connector=connector, adaptation=adaptation, lora_rank=2)
    opt = torch.optim.SGD(enc.parameters(), lr=1.0)
    for step in range(2):
        opt.zero_grad()
        rows = enc(["zebra", "red car", "yoga"])
        assert rows.shape == (3, backbone.embed_dim) and torch.allclose(rows.norm(dim=-1), torch.ones(3), atol=1e-5)
        (rows[0] @ rows[1]).backward()
        if adaptation == "lora":
            assert enc.prefixes is None and enc.num_prefixes == 1
            up = [p.grad.abs().sum() for p in enc.lora.up.values()]
            assert len(up) == 2 * 2 + 2 * 2 * 2 and all(g > 0 for g in up)  # q, v of 2 encoder + 2x2 decoder attentions
            down = [p.grad.abs().sum() for p in enc.lora.down.values()]
            assert all(g == 0 for g in down) if step == 0 else all(g > 0 for g in down)  # B = 0 at the start
        else:
            assert enc.prefixes.grad.abs().sum() > 0
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for n, p in enc.connector.named_parameters() if n.endswith("weight"))
        opt.step()
    assert all(not p.requires_grad for p in enc.llm().model.parameters())
    with torch.no_grad():
        plain = enc.llm().model.encoder(input_ids=torch.tensor([[5, 6, 1]])).last_hidden_state
    assert plain.shape[-1] == 32  # the LoRA hooks are gone outside the encoder's forward


def test_fingerprint_follows_the_weights_and_refresh_keeps_w_current(backbone, tiny_t5_dir):
    model = create_recognizer(_spec(tiny_t5_dir), class_names=CLASSES, backbones={"rgb": backbone})
    head, enc = model.head, model.head.label_encoder
    fp = enc.fingerprint
    assert fp == enc.fingerprint and len(fp) == 24 and enc.prompt_key == "llm-prompt:N2-K2-L3-transformer-prefix"
    built = head.weight.clone()
    torch.testing.assert_close(built, enc.encode(CLASSES))
    opt = torch.optim.AdamW(enc.parameters(), lr=1e-2)
    head.class_embeddings(torch.tensor([0, 1])).sum().backward()
    opt.step()
    assert enc.fingerprint != fp and head.stale
    # an evaluation forward refreshes the stale W̃ before scoring
    model.eval()
    video = torch.randn(2, 2, backbone.embed_dim)
    logits = model.logits_from_frame_features(video)
    assert not head.stale and not torch.allclose(head.weight, built)
    torch.testing.assert_close(head.weight, enc.encode(CLASSES))
    expected = head.logit_scale * F.normalize(video.mean(1), dim=-1) @ head.weight.T
    torch.testing.assert_close(logits, expected, atol=1e-4, rtol=1e-4)
    # the training forward recomputes the rows with gradients
    model.train()
    model.logits_from_frame_features(video).sum().backward()
    assert enc.prefixes.grad is not None
    # state_dict() after a step stores current rows
    opt.step()
    saved = model.state_dict()["head.weight"]
    torch.testing.assert_close(saved, enc.encode(CLASSES))


@pytest.fixture(scope="module")
def run(tiny_t5_dir, tmp_path_factory):
    """A 'trained' llm-prompt run directory: a few optimiser steps, then a checkpoint as the trainer writes it."""
    spec = _spec(tiny_t5_dir)
    model = create_recognizer(spec, class_names=CLASSES)
    opt = torch.optim.AdamW([p for _, p in model.parameter_groups()["label_encoder"]], lr=1e-2)
    for _ in range(2):
        opt.zero_grad()
        logits = model.head.class_embeddings(torch.arange(3)) @ model.head.class_embeddings(torch.arange(3)).T
        F.cross_entropy(logits * 10, torch.arange(3)).backward()
        opt.step()
    out = tmp_path_factory.mktemp("runs") / "llm_prompt"
    save_checkpoint(
        out,
        model=model,
        optimizer=opt,
        step=2,
        epoch=0,
        arch=spec.arch(),
        omit=model.frozen_pretrained_keys(),
        extra={"class_names": CLASSES, "spec": spec.to_dict()},
        rng=False,
    )
    (out / "config.yaml").write_text("model: {}\n", encoding="utf-8")
    return out, model


def test_a_run_reloads_with_the_same_rows_without_loading_the_llm(run, monkeypatch):
    out, trained = run
    monkeypatch.setattr(llm_attributes, "load_llm", lambda *a, **k: pytest.fail("the LLM was loaded"))
    model = load_recognizer(out)
    enc = model.head.label_encoder
    assert not enc.llm_loaded and enc.fingerprint == trained.head.label_encoder.fingerprint
    model.to(torch.float64).to(torch.float32)  # moving / casting keeps the version counters: W̃ stays fresh
    assert not model.head.stale
    torch.testing.assert_close(model.head.weight, trained.head.weight)
    video = torch.randn(2, 2, model.backbone.embed_dim)
    torch.testing.assert_close(model.logits_from_frame_features(video), trained.eval().logits_from_frame_features(video), atol=1e-5, rtol=1e-5)
    assert not enc.llm_loaded


def test_vocabulary_expansion_then_bank_only_classification(run, cli, tmp_path, monkeypatch, make_video):
    out, trained = run
    bank = tmp_path / "bank.sqlite"
    code, stdout, err = cli("labels", "add", "--model", str(out), "--labels", ", ".join(NEW), "--label-bank", str(bank))
    assert code == 0 and "2 newly encoded" in stdout, (stdout, err)
    assert "--prompts" not in err  # no spurious prompt-set warning for a run
    stored = LabelBank(bank).get(fingerprint=trained.head.label_encoder.fingerprint, prompt_set=trained.head.label_encoder.prompt_key, labels=NEW)
    torch.testing.assert_close(torch.stack([stored[x] for x in NEW]), trained.head.label_encoder.encode(NEW), atol=1e-6, rtol=0)
    # inference on stored labels: the LLM must not load (its weights are not even needed)
    monkeypatch.setattr(llm_attributes, "load_llm", lambda *a, **k: (_ for _ in ()).throw(AssertionError("the LLM was loaded")))
    video = make_video("clip.mp4", num_frames=8)
    code, stdout, err = cli(
        "classify", str(video), "--model", str(out), "--labels", ", ".join(NEW), "--label-bank", str(bank), "--frames", "2", "--format", "json"
    )
    assert code == 0, err
    assert {s["label"] for s in json.loads(stdout)[0]["labels"]} == set(NEW)
    clf = openvocab.load(out, label_bank=bank)
    got = clf.encode_labels(NEW)
    assert got.encoded == 0 and not clf.label_encoder.llm_loaded
    # a label not in the bank needs the LLM: the patched loader is reached
    with pytest.raises(AssertionError, match="the LLM was loaded"):
        clf.encode_labels(["kayaking"])


def test_a_run_refuses_another_llm(run, tmp_path):
    from openvocab.models.create import create_model_dir

    out, _ = run
    other = create_model_dir("t5-tiny", tmp_path / "other_t5", seed=1)
    clf = openvocab.load(out, llm=str(other), label_bank=False)
    assert clf.label_encoder.llm_source == str(other)
    with pytest.raises(InputError, match="not the one this label encoder was trained with"):
        clf.encode_labels(["kayaking"])


def test_spec_errors_are_one_line(backbone, tiny_t5_dir):
    for head, problem in (
        (dict(llm=None), "needs model.llm"),
        (dict(llm_connector="rnn"), "llm_connector"),
        (dict(llm_adaptation="adapter"), "llm_adaptation"),
    ):
        with pytest.raises(InputError, match=problem):
            create_recognizer(_spec(tiny_t5_dir, **head), class_names=CLASSES, backbones={"rgb": backbone})
