"""The CLIP tokenizer built from the bundled BPE vocabulary: exact ids, save/reload, truncation, load errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from openvocab.errors import ModelLoadError
from openvocab.text import tokenizer as tokmod
from openvocab.text.tokenizer import (
    BOS_ID,
    EOS_ID,
    VOCAB_SIZE,
    build_clip_tokenizer,
    clip_vocab_and_merges,
    encode_prompts,
    load_tokenizer,
    pad_token_ids,
    save_clip_tokenizer,
    tokenize_prompts,
)

TEXTS = [
    "a photo of a cat",
    "a video of a person playing guitar.",
    "Ümläut, emoji 🎸, tabs\tand  spaces, numbers 1234 and don't",
    "",
]


@pytest.fixture(scope="module")
def tokenizer():
    return build_clip_tokenizer()


@pytest.fixture(scope="module")
def saved_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_clip_tokenizer(tmp_path_factory.mktemp("tok") / "clip")


def test_reference_ids_and_size(tokenizer) -> None:
    assert tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert len(tokenizer) == VOCAB_SIZE == 49408
    assert tokenizer.bos_token_id == BOS_ID == 49406
    assert tokenizer.eos_token_id == EOS_ID == 49407
    assert tokenizer.pad_token_id == EOS_ID
    assert tokenizer.model_max_length == 77


def test_vocabulary_layout() -> None:
    vocab, merges = clip_vocab_and_merges()
    assert len(merges) == 48894
    assert vocab["!"] == 0 and vocab["!</w>"] == 256  # byte chars, then the same with </w>
    assert vocab["".join(merges[0])] == 512  # merges follow the 512 byte tokens
    assert vocab["<|startoftext|>"] == 49406 and vocab["<|endoftext|>"] == 49407
    assert sorted(vocab.values()) == list(range(49408))


def test_build_is_cached() -> None:
    clip_vocab_and_merges()
    hits = clip_vocab_and_merges.cache_info().hits
    first, second = build_clip_tokenizer(), build_clip_tokenizer(model_max_length=32)
    assert clip_vocab_and_merges.cache_info().hits >= hits + 2
    assert first is not second and second.model_max_length == 32


def test_save_reload_identical(tokenizer, saved_dir: Path) -> None:
    from transformers import AutoTokenizer, CLIPTokenizer

    assert (saved_dir / "tokenizer.json").is_file() and (saved_dir / "tokenizer_config.json").is_file()
    assert len(json.loads((saved_dir / "vocab.json").read_text(encoding="utf-8"))) == VOCAB_SIZE
    assert (saved_dir / "merges.txt").read_text(encoding="utf-8").count("\n") == 48894 + 1
    expected = tokenizer(TEXTS)["input_ids"]
    for reloaded in (
        CLIPTokenizer.from_pretrained(str(saved_dir), local_files_only=True),
        AutoTokenizer.from_pretrained(str(saved_dir), local_files_only=True),
        load_tokenizer(saved_dir),
    ):
        assert len(reloaded) == VOCAB_SIZE
        assert reloaded(TEXTS)["input_ids"] == expected


def test_clip_processor_loads_saved_dir(tmp_path: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPProcessor

    directory = save_clip_tokenizer(tmp_path / "model")
    CLIPImageProcessor().save_pretrained(str(directory))  # another module writes this in real model dirs
    processor = CLIPProcessor.from_pretrained(str(directory), local_files_only=True)
    assert len(processor.tokenizer) == VOCAB_SIZE
    assert processor.tokenizer("a photo of a cat")["input_ids"] == [49406, 320, 1125, 539, 320, 2368, 49407]


def test_encode_prompts_pads_and_reports_truncation(tokenizer) -> None:
    long_text = "a person " + "juggling many bright orange balls " * 60  # ~2,000 characters
    assert len(long_text) >= 2000
    inputs, truncated = encode_prompts(tokenizer, ["a photo of a cat", long_text, "dog"], context_length=77)
    ids, mask = inputs["input_ids"], inputs["attention_mask"]
    assert ids.shape == (3, 77) and ids.dtype == torch.long
    assert truncated == [1]
    assert ids[1, 0].item() == BOS_ID and ids[1, -1].item() == EOS_ID and mask[1].all()
    assert ids[0, :7].tolist() == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert (ids[0, 7:] == EOS_ID).all() and mask[0].tolist() == [1] * 7 + [0] * 70


def test_encode_prompts_pads_to_longest_without_truncation(tokenizer) -> None:
    inputs, truncated = encode_prompts(tokenizer, ["a photo of a cat", "dog"])
    assert truncated == []
    assert inputs["input_ids"].tolist() == [
        [49406, 320, 1125, 539, 320, 2368, 49407],
        [49406, 1929, 49407, 49407, 49407, 49407, 49407],
    ]
    assert inputs["attention_mask"][1].tolist() == [1, 1, 1, 0, 0, 0, 0]


def test_tokenize_prompts_unpadded_and_truncated_like_encode_prompts(tokenizer) -> None:
    long_text = "a person " + "juggling many bright orange balls " * 60
    texts = ["a photo of a cat", long_text, "dog", ""]
    ids, truncated = tokenize_prompts(tokenizer, texts, context_length=77)
    assert truncated == [1]
    assert ids[0] == [49406, 320, 1125, 539, 320, 2368, 49407] and ids[2] == [49406, 1929, 49407] and ids[3] == [BOS_ID, EOS_ID]
    assert len(ids[1]) == 77 and ids[1][0] == BOS_ID and ids[1][-1] == EOS_ID
    padded = pad_token_ids(ids, pad_id=EOS_ID)
    reference, _ = encode_prompts(tokenizer, texts, context_length=77)
    assert torch.equal(padded["input_ids"], reference["input_ids"])
    assert torch.equal(padded["attention_mask"], reference["attention_mask"])
    with pytest.raises(TypeError):
        tokenize_prompts(tokenizer, "a single string")
    with pytest.raises(Exception, match="no prompts"):
        tokenize_prompts(tokenizer, [])


def test_encode_prompts_rejects_bad_input(tokenizer) -> None:
    with pytest.raises(TypeError):
        encode_prompts(tokenizer, "a single string")
    with pytest.raises(Exception, match="no prompts"):
        encode_prompts(tokenizer, [])


def _one_line(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text
    return text


def test_empty_tokenizer_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    from transformers import AutoTokenizer, CLIPTokenizer

    calls: list[str] = []

    def tiny(name, **kwargs):  # what transformers hands back offline: a 3-token shell
        calls.append(str(name))
        return CLIPTokenizer()

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", tiny)
    with pytest.raises(ModelLoadError) as info:
        load_tokenizer("openai/clip-vit-base-patch32")
    message = _one_line(info.value)
    assert "openai/clip-vit-base-patch32" in message and "openvocab model create" in message
    assert "empty tokenizer" in message and calls


def test_exception_from_transformers_becomes_model_load_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    def broken(name, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'\nsecond line")

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", broken)
    with pytest.raises(ModelLoadError, match="could not load a CLIP tokenizer") as info:
        load_tokenizer("someone/some-model")
    assert "hf download someone/some-model --local-dir DIR" in _one_line(info.value)
    (tmp_path / "tokenizer.json").write_text("{}", encoding="utf-8")  # a local dir whose files transformers rejects
    with pytest.raises(ModelLoadError):
        load_tokenizer(tmp_path)


def test_missing_local_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not found") as info:
        load_tokenizer(tmp_path / "does-not-exist")
    assert _one_line(info.value).startswith(str(tmp_path / "does-not-exist"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_tokenizer(empty)
    (empty / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelLoadError, match="is a file"):
        load_tokenizer(empty / "weights.bin")


def test_real_offline_hub_id_fails_cleanly(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # an empty cache, whatever the machine has
    with pytest.raises(ModelLoadError, match="could not load a CLIP tokenizer"):
        load_tokenizer("openvocab-test/not-a-real-model", local_files_only=True)


def test_weights_without_tokenizer_falls_back(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "clip"}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger=tokmod.__name__):
        tok = load_tokenizer(tmp_path)
    assert len(tok) == VOCAB_SIZE
    assert any("no tokenizer files" in record.getMessage() for record in caplog.records)


def test_non_clip_weights_without_tokenizer_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="no tokenizer files"):
        load_tokenizer(tmp_path)
