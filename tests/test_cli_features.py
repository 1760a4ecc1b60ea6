"""`openvocab features train-head`: --out writes the head (safetensors + JSON, atomically), --prompts FILE is used,
--epochs is honoured, and a head with nothing to train says why."""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from openvocab.cli import main
from openvocab.data.synth import SynthSpec, generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    spec = SynthSpec(
        shapes=("circle",),
        colours=("red", "blue", "green"),
        motions=("left",),
        label_factors=("colour",),
        clips_per_class=3,
        frames=4,
        size=32,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("head_synth"), seed=1)


@pytest.fixture
def run(monkeypatch, capsys):
    def call(*args):
        monkeypatch.setattr(sys, "argv", ["openvocab", "features", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err
        return exc.value.code, out, err

    return call


@pytest.fixture
def cache(run, synth, tiny_model_dir, tmp_path):
    code, out, err = run(
        "extract", str(synth / "train.csv"), "--out", str(tmp_path / "cache"), "--model", str(tiny_model_dir), "--frames", "4", "--workers", "0"
    )
    assert code == 0, err
    return tmp_path / "cache"


def _head_weight(directory):
    tensors = load_file(str(directory / "head.safetensors"))
    return tensors, next(v for k, v in tensors.items() if k.endswith("head.weight"))


def test_prompts_file_is_used_and_the_frozen_head_is_saved_with_the_reason(run, cache, tiny_model_dir, tmp_path):
    from openvocab.features.cache import FeatureCache
    from openvocab.models.backbone import ClipBackbone
    from openvocab.text.prompts import load_templates_file, normalise_class_name, prompt_set

    templates = tmp_path / "my_templates.txt"
    templates.write_text("# mine\na clip of something {}.\n{}, filmed.\n")
    code, out, err = run("train-head", str(cache), "--classifier", "text", "--prompts", str(templates), "--out", str(tmp_path / "head"))
    assert code == 0, err
    result = json.loads(out)
    assert result["trained"] is False and "nothing to train" in result["reason"] and result["saved"] == str(tmp_path / "head")
    assert "wrote the head to" in err
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["head.json", "head.safetensors"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".head")]  # no temporary folder left behind

    doc = json.loads((tmp_path / "head" / "head.json").read_text())
    assert doc["format"] == "openvocab-head" and doc["spec"]["head"]["classifier"] == "text"
    assert doc["prompts"]["templates"] == ["a clip of something {}.", "{}, filmed."]
    assert doc["training"]["trained"] is False and doc["training"]["reason"] == result["reason"]
    names = [normalise_class_name(c) for c in FeatureCache(cache).info.classes]
    assert doc["class_names"] == names

    backbone = ClipBackbone.from_pretrained(str(tiny_model_dir))
    expected = backbone.encode_labels(names, load_templates_file(templates))
    _, weight = _head_weight(tmp_path / "head")
    torch.testing.assert_close(weight, expected.float(), atol=1e-5, rtol=1e-5)
    single = backbone.encode_labels(names, prompt_set("single"))
    assert not torch.allclose(weight, single.float(), atol=1e-3)  # not the silent single-template fallback


def test_trained_head_epochs_and_overwrite(run, cache, tmp_path):
    out_dir = tmp_path / "linear"
    code, out, err = run("train-head", str(cache), "--classifier", "linear", "--epochs", "3", "--lr", "0.01", "--batch-size", "4", "--out", str(out_dir))
    assert code == 0, err
    result = json.loads(out)
    assert result["trained"] is True and "reason" not in result and len(result["train_loss"]) == 3  # --epochs honoured
    doc = json.loads((out_dir / "head.json").read_text())
    assert doc["spec"]["head"]["classifier"] == "linear" and doc["training"]["epochs"] == 3 and doc["prompts"] is None
    first = load_file(str(out_dir / "head.safetensors"))
    assert any(k.startswith("head.") for k in first)
    code, _, err = run("train-head", str(cache), "--classifier", "linear", "--epochs", "1", "--out", str(out_dir))
    assert code == 2 and "already exists" in err and "--overwrite" in err
    code, out, err = run("train-head", str(cache), "--classifier", "linear", "--epochs", "1", "--seed", "5", "--out", str(out_dir), "--overwrite")
    assert code == 0, err
    assert len(json.loads(out)["train_loss"]) == 1 and json.loads((out_dir / "head.json").read_text())["training"]["epochs"] == 1
    second = load_file(str(out_dir / "head.safetensors"))
    assert first.keys() == second.keys() and any(not torch.equal(first[k], second[k]) for k in first)


def test_bad_prompts_is_one_line_before_any_work(run, tmp_path):
    code, _, err = run("train-head", str(tmp_path / "no_cache"), "--prompts", str(tmp_path / "missing_templates.txt"))
    assert code == 2 and len([ln for ln in err.splitlines() if ln.startswith("error:")]) == 1 and "missing_templates.txt" in err
