"""`openvocab features train-head`: --out writes the head (safetensors + JSON, atomically), --prompts FILE is used,
--epochs is honoured, and a head with nothing to train says why; `extract --modality audio` + `train-head` of an rgb
and an audio cache trains a MOV head, and bad combinations are one line each."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

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
def run(cli):
    return lambda *args: cli("features", *args)


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


@pytest.fixture(scope="module")
def tone_synth(tmp_path_factory):
    """Three tone classes: the label lives only in the sound."""
    spec = SynthSpec(
        label_factors=("tone",),
        tones=("low", "high", "very high"),
        clips_per_class=6,
        frames=8,
        fps=4.0,
        size=32,
        novel_fraction=0.0,
        val_fraction=0.34,
        test_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("tone_synth"), seed=3)


@pytest.fixture
def one_thread():
    """Tiny models: two OpenMP threads on a shared, busy machine spin far longer than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_mov_head_from_an_rgb_and_an_audio_cache(run, tone_synth, tiny_model_dir, tmp_path, one_thread):
    dirs = {}
    for split in ("train", "val"):
        for modality in ("rgb", "audio"):
            dirs[split, modality] = tmp_path / f"{split}_{modality}"
            code, out, err = run(
                "extract",
                str(tone_synth / f"{split}.csv"),
                "--out",
                str(dirs[split, modality]),
                "--model",
                str(tiny_model_dir),
                "--classes",
                str(tone_synth / "classes.txt"),
                "--frames",
                "4",
                "--views",
                "2x1",
                "--modality",
                modality,
                "--audio-seconds",
                "2",
                "--workers",
                "0",
            )
            assert code == 0, err
    assert "cached audio features" in out and "x 2 views x 1 spectrogram of 2 s" in out
    index = json.loads((dirs["val", "audio"] / "index.json").read_text())
    assert index["modality"] == "audio" and index["inputs"] == {"audio_seconds": 2.0}

    head = tmp_path / "head"
    code, out, err = run(
        "train-head",
        str(dirs["train", "audio"]),  # any order: the rgb cache becomes the first (video) stream
        str(dirs["train", "rgb"]),
        "--val",
        str(dirs["val", "rgb"]),
        "--val",
        str(dirs["val", "audio"]),
        "--fusion",
        "mov",
        "--classifier",
        "sentence",
        "--logit-scale",
        "20",
        "--epochs",
        "30",
        "--lr",
        "0.003",
        "--batch-size",
        "8",
        "--out",
        str(head),
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["trained"] and result["train_loss"][-1] < 0.5 * result["train_loss"][0]
    assert result["val"]["videos"] == 6 and result["val"]["top1"] >= 2 / 3, result  # chance: 1/3
    doc = json.loads((head / "head.json").read_text())
    assert doc["spec"]["fusion"] == "mov" and list(doc["spec"]["streams"]) == ["rgb", "audio"]
    assert doc["spec"]["streams"]["audio"]["input"] == "audio" and doc["spec"]["streams"]["audio"]["audio_seconds"] == 2.0
    assert doc["spec"]["head"]["logit_scale"] == 20.0 and doc["training"]["mov_alpha"] == 0.5
    assert doc["caches"] == {"rgb": str(dirs["train", "rgb"].resolve()), "audio": str(dirs["train", "audio"].resolve())}
    tensors = load_file(str(head / "head.safetensors"))
    assert any(k.startswith("fusion.") for k in tensors) and not any(".backbone." in k for k in tensors)

    refusals = [
        (("train-head", str(dirs["train", "rgb"]), str(dirs["train", "audio"]), "--temporal", "ttrans"), "leave --temporal at tap"),
        (("train-head", str(dirs["train", "rgb"]), str(dirs["val", "audio"]), "--classifier", "sentence"), "same videos in the same order"),
        (("train-head", str(dirs["train", "rgb"]), str(dirs["val", "rgb"])), "two caches of rgb features"),
        (("train-head", str(dirs["train", "rgb"]), str(dirs["train", "audio"]), "--classifier", "linear"), "use --classifier text or sentence"),
        (
            ("extract", str(tone_synth / "train.csv"), "--out", str(dirs["train", "audio"]), "--model", str(tiny_model_dir), "--frames", "4", "--views", "2x1"),
            "choose another directory",
        ),
        (("extract", str(tone_synth / "train.csv"), "--out", str(tmp_path / "x"), "--flow-cache", str(tmp_path)), "--flow-cache is read for --modality flow"),
    ]
    for args, words in refusals:
        code, _, err = run(*args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, (args, err)
