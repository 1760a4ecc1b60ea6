"""Prompt templates, label cleaning and reading, class-name normalisation, prompt ensembling."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest
import torch

from openvocab.errors import InputError
from openvocab.text.ensemble import ensemble_encoder, ensemble_text_embeddings
from openvocab.text.prompts import (
    DEFAULT_SINGLE_TEMPLATE,
    KINETICS_TEMPLATES,
    PromptSet,
    build_prompts,
    class_name_key,
    clean_labels,
    load_templates_file,
    normalise_class_name,
    parse_labels_arg,
    prompt_set,
    read_labels_file,
)


def _one_line(exc: BaseException) -> str:
    assert "\n" not in str(exc)
    return str(exc)


# ---------------------------------------------------------------------- templates
def test_kinetics_templates_exact() -> None:
    assert len(KINETICS_TEMPLATES) == 28 == len(set(KINETICS_TEMPLATES))
    assert KINETICS_TEMPLATES[:7] == (
        "a photo of {}.",
        "a photo of a person {}.",
        "a photo of a person using {}.",
        "a photo of a person doing {}.",
        "a photo of a person during {}.",
        "a photo of a person performing {}.",
        "a photo of a person practicing {}.",
    )
    assert KINETICS_TEMPLATES[7] == "a video of {}."
    assert KINETICS_TEMPLATES[14] == "a example of {}."  # CLIP's own wording, kept
    assert KINETICS_TEMPLATES[-1] == "a demonstration of a person practicing {}."
    assert DEFAULT_SINGLE_TEMPLATE in KINETICS_TEMPLATES
    assert all(t.count("{}") == 1 for t in KINETICS_TEMPLATES)


def test_prompt_set_modes_and_key() -> None:
    ensemble = prompt_set()
    assert ensemble.templates == KINETICS_TEMPLATES and len(ensemble) == 28
    digest = hashlib.sha256("\n".join(KINETICS_TEMPLATES).encode()).hexdigest()[:12]
    assert ensemble.key == f"kinetics28:{digest}"
    single = prompt_set("single")
    assert single.fill("playing guitar") == ["a video of a person playing guitar."]
    custom = prompt_set("single", template="footage of {} outdoors")
    assert custom.fill("yoga") == ["footage of yoga outdoors"] and custom.key != single.key
    assert prompt_set("classname").fill("yoga") == ["yoga"]
    assert ensemble.fill("x")[3] == "a photo of a person doing x."
    assert PromptSet("a", ("{}",)).key != PromptSet("b", ("{}",)).key


def test_fill_is_plain_substitution() -> None:
    assert prompt_set("single").fill("a {weird} {} label") == ["a video of a person a {weird} {} label."]


@pytest.mark.parametrize("template", ["no placeholder", "two {} and {}", ""])
def test_bad_templates(template: str) -> None:
    with pytest.raises(InputError, match="exactly one"):
        prompt_set("single", template=template)


def test_template_only_for_single_mode() -> None:
    with pytest.raises(InputError):
        prompt_set("ensemble", template="a {}")
    with pytest.raises(InputError):
        prompt_set("nonsense")  # type: ignore[arg-type]


def test_load_templates_file(tmp_path: Path) -> None:
    path = tmp_path / "mine.txt"
    path.write_text("# my templates\n\na clip of {}.\n  footage of someone {}  \n", encoding="utf-8")
    loaded = load_templates_file(path)
    assert loaded.name == "mine" and loaded.templates == ("a clip of {}.", "footage of someone {}")
    path.write_text("a clip of {}.\nbroken line\n", encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_templates_file(path)
    assert f"{path}:2" in _one_line(info.value)
    with pytest.raises(InputError, match="not found"):
        load_templates_file(tmp_path / "missing.txt")


def test_build_prompts_is_label_major() -> None:
    prompts = PromptSet("t", ("a {}", "b {}"))
    assert build_prompts(["x", "y"], prompts) == ["a x", "b x", "a y", "b y"]


# ---------------------------------------------------------------------- labels
def test_clean_labels() -> None:
    labels, warnings = clean_labels(["  playing   guitar ", "", "Yoga", "yoga", "dog\tbarking", "   ", "Café", "café"])
    assert labels == ["playing guitar", "Yoga", "dog barking", "Café"]
    assert warnings == ["duplicate label 'yoga' ignored", "duplicate label 'café' ignored"]


def test_clean_labels_empty_names_source() -> None:
    with pytest.raises(InputError) as info:
        clean_labels(["", "  "], source="labels.txt")
    assert _one_line(info.value) == "labels.txt: empty label list"


def test_parse_labels_arg() -> None:
    assert parse_labels_arg("playing guitar, yoga, dog barking") == ["playing guitar", "yoga", "dog barking"]
    assert parse_labels_arg(" a ,, b ,") == ["a", "b"]
    with pytest.raises(InputError):
        parse_labels_arg(" , ,")


def test_read_labels_txt(tmp_path: Path) -> None:
    path = tmp_path / "labels.txt"
    path.write_bytes("\ufeff# comment\nplaying guitar\n\n  yoga  \n# another\nC# programming\nnaïve café\n".encode())
    assert read_labels_file(path) == ["playing guitar", "yoga", "C# programming", "naïve café"]


def test_read_labels_csv_and_json(tmp_path: Path) -> None:
    csv_path = tmp_path / "kinetics.csv"
    csv_path.write_text('youtube_id,Label,split\nabc,"playing guitar, loudly",train\ndef,yoga,train\nghi,yoga,val\n', encoding="utf-8")
    assert read_labels_file(csv_path) == ["playing guitar, loudly", "yoga"]
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("a,b\n1,2\n", encoding="utf-8")
    with pytest.raises(InputError, match="no label/name/class column"):
        read_labels_file(bad_csv)
    json_path = tmp_path / "labels.json"
    json_path.write_text(json.dumps(["dog", "cat"]), encoding="utf-8")
    assert read_labels_file(json_path) == ["dog", "cat"]
    json_path.write_text(json.dumps({"labels": ["dog"]}), encoding="utf-8")
    assert read_labels_file(json_path) == ["dog"]
    json_path.write_text(json.dumps({"dog": 1}), encoding="utf-8")
    with pytest.raises(InputError, match="list of strings"):
        read_labels_file(json_path)
    json_path.write_text("[not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        read_labels_file(json_path)


def test_read_labels_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        read_labels_file(tmp_path / "nope.txt")
    assert str(tmp_path / "nope.txt") in _one_line(info.value)
    binary = tmp_path / "binary.txt"
    binary.write_bytes(b"\xff\xfe\x00garbage\x80")
    with pytest.raises(InputError, match="UTF-8") as info:
        read_labels_file(binary)
    assert str(binary) in _one_line(info.value)
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n\n", encoding="utf-8")
    with pytest.raises(InputError, match="empty label list"):
        read_labels_file(empty)
    with pytest.raises(InputError, match="directory"):
        read_labels_file(tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ApplyEyeMakeup", "apply eye makeup"),
        ("brush_hair", "brush hair"),
        ("YoYo", "yo yo"),
        ("playing guitar", "playing guitar"),
        ("  Playing   Guitar ", "Playing Guitar"),
        ("Skiing2", "skiing2"),
        ("3DPrinting", "3d printing"),
        ("Top10Songs", "top10 songs"),
        ("HTMLParser", "html parser"),
        ("Apply_Eye_Makeup", "apply eye makeup"),
        ("hula-hoop", "hula-hoop"),
        ("TaiChi", "tai chi"),
        ("yoga", "yoga"),
    ],
)
def test_normalise_class_name(raw: str, expected: str) -> None:
    assert normalise_class_name(raw) == expected


def test_class_name_key_matches_spellings_of_one_class() -> None:
    """One matching rule for the whole project (manifests, split files): normalise, then case-fold."""
    spellings = ["ApplyEyeMakeup", "apply eye makeup", "Apply_Eye_Makeup", "  Apply  Eye Makeup ", "APPLY EYE MAKEUP"]
    assert {class_name_key(s) for s in spellings} == {"apply eye makeup"}
    assert class_name_key("Playing Guitar") == "playing guitar" and normalise_class_name("Playing Guitar") == "Playing Guitar"
    assert class_name_key(42) == "42" and class_name_key("   ") == ""
    assert class_name_key("Straße") == "strasse"


# ---------------------------------------------------------------------- ensembling
def test_ensemble_against_hand_computation() -> None:
    # Label 0: prompts (3, 4) and (0, 2); label 1: prompts (1, 0) and (0, -1).
    per_prompt = torch.tensor([[3.0, 4.0], [0.0, 2.0], [1.0, 0.0], [0.0, -1.0]])
    out = ensemble_text_embeddings(per_prompt, num_labels=2, num_prompts=2)
    # normalised: (0.6, 0.8), (0, 1) -> mean (0.3, 0.9) -> / sqrt(0.9)
    norm0 = math.sqrt(0.3**2 + 0.9**2)
    # normalised: (1, 0), (0, -1) -> mean (0.5, -0.5) -> (1/sqrt2, -1/sqrt2)
    expected = torch.tensor([[0.3 / norm0, 0.9 / norm0], [1 / math.sqrt(2), -1 / math.sqrt(2)]])
    torch.testing.assert_close(out, expected)
    with pytest.raises(ValueError):
        ensemble_text_embeddings(per_prompt, num_labels=3, num_prompts=2)


def test_ensemble_single_prompt_is_normalisation() -> None:
    x = torch.randn(5, 8, dtype=torch.float64)
    torch.testing.assert_close(ensemble_text_embeddings(x, 5, 1), x / x.norm(dim=-1, keepdim=True))


def test_ensemble_encoder_batches_whole_labels() -> None:
    prompts = PromptSet("t", ("a {}", "b {}", "c {}"))
    seen: list[list[str]] = []
    table = {f"{p} {label}": torch.randn(4) for label in "wxyz" for p in "abc"}

    def encode_texts(texts: list[str]) -> torch.Tensor:
        seen.append(texts)
        return torch.stack([table[t] for t in texts])

    encode = ensemble_encoder(prompts, encode_texts, batch_size=7)  # 2 labels (6 prompts) per call
    out = encode(["w", "x", "y", "z"])
    assert [len(batch) for batch in seen] == [6, 6]
    expected = ensemble_text_embeddings(torch.stack([table[t] for t in build_prompts("wxyz", prompts)]), 4, 3)
    torch.testing.assert_close(out, expected)


def test_label_that_is_not_utf8_is_one_input_error():
    """Bytes that are not UTF-8 on a command line (``$'c\\233d'``) arrive as lone surrogates: refused with one line."""
    from openvocab.errors import InputError
    from openvocab.text.prompts import clean_labels

    with pytest.raises(InputError, match="not valid UTF-8"):
        clean_labels(["dog", "c\udc9bd"])
    assert clean_labels(["café", "dog"])[0] == ["café", "dog"]
