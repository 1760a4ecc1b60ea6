"""`openvocab evaluate`: zero-shot CLIP and trained runs, protocols, plots; one-line errors."""

from __future__ import annotations

import json
import sys

import pytest

from openvocab.cli import main
from openvocab.data.synth import SynthSpec, generate
from openvocab.train.config import load_config
from openvocab.train.trainer import train


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue", "green"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=4,
        frames=4,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.5,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_eval"), seed=4)


def _run(monkeypatch, capsys, *args):
    monkeypatch.setattr(sys, "argv", ["openvocab", "evaluate", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return exc.value.code, out, err


def test_zero_shot_full_and_half_protocols_with_plots(monkeypatch, capsys, synth, tiny_model_dir, tmp_path):
    code, out, err = _run(
        monkeypatch, capsys, str(synth / "test.csv"), "--model", str(tiny_model_dir), "--frames", "4", "--plots", str(tmp_path / "plots"), "--workers", "0"
    )
    assert code == 0, err
    result = json.loads(out)
    assert result["protocol"] == "full" and result["videos"] == 12 and result["classes"] == 6
    assert 0.0 <= result["result"]["top1"] <= 1.0 and result["result"]["top5"] >= result["result"]["top1"]
    assert all((tmp_path / "plots" / name).stat().st_size > 0 for name in ("confusion_matrix.png", "class_correlation.png"))
    code, out, err = _run(
        monkeypatch,
        capsys,
        str(synth / "test.csv"),
        "--model",
        str(tiny_model_dir),
        "--frames",
        "4",
        "--protocol",
        "half",
        "--trials",
        "4",
        "--workers",
        "0",
        "-o",
        str(tmp_path / "half.json"),
    )
    assert code == 0, err
    half = json.loads((tmp_path / "half.json").read_text())["result"]
    assert len(half["trials"]) == 4 and all(len(t["classes"]) == 3 for t in half["trials"])


def test_a_trained_run_is_evaluated_on_its_classes_and_on_new_ones(monkeypatch, capsys, synth, tmp_path):
    recipe = load_config(
        None,
        [
            "model.model=random:tiny",
            "model.classifier=text",
            f"data.train={synth / 'train.csv'}",
            "data.val=null",
            f"run.out={tmp_path / 'run'}",
            "run.progress=false",
            "run.max_steps=2",
            "data.frames=4",
            "data.batch_size=4",
            "data.workers=0",
        ],
    )
    train(recipe)
    code, out, err = _run(monkeypatch, capsys, str(synth / "test.csv"), "--model", str(tmp_path / "run"), "--frames", "4", "--workers", "0")
    assert code == 0, err
    assert json.loads(out)["videos"] == 12
    novel = tmp_path / "novel.csv"  # the same clips under names the run never trained on: open-vocabulary scoring
    rows = (synth / "test.csv").read_text().splitlines()
    novel.write_text("\n".join([rows[0]] + [r.replace(",red ", ",crimson ").replace(",blue ", ",navy ") for r in rows[1:]]) + "\n")
    code, out, err = _run(monkeypatch, capsys, str(novel), "--model", str(tmp_path / "run"), "--frames", "4", "--workers", "0", "--root", str(synth))
    assert code == 0, err
    assert json.loads(out)["classes"] == 6


def test_closed_set_heads_cannot_score_new_names(monkeypatch, capsys, synth, tmp_path):
    recipe = load_config(
        None,
        [
            "model.model=random:tiny",
            "model.classifier=orthogonal",
            f"data.train={synth / 'train.csv'}",
            "data.val=null",
            f"run.out={tmp_path / 'run'}",
            "run.progress=false",
            "run.max_steps=1",
            "data.frames=4",
            "data.batch_size=4",
            "data.workers=0",
        ],
    )
    train(recipe)
    code, out, err = _run(monkeypatch, capsys, str(synth / "test.csv"), "--model", str(tmp_path / "run"), "--frames", "4", "--workers", "0")
    assert code == 0 and json.loads(out)["classes"] == 6, err  # its own classes: the frozen head itself
    novel = tmp_path / "novel.csv"
    novel.write_text("path,label\nvideos/red_circle/0000.mp4,crimson circle\n")
    code, _, err = _run(monkeypatch, capsys, str(novel), "--model", str(tmp_path / "run"), "--frames", "4", "--workers", "0", "--root", str(synth))
    assert code == 2 and "has no text encoder" in err and len(err.strip().splitlines()) == 1


def test_model_export_of_a_trained_run(monkeypatch, capsys, synth, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import CLIPModel

    import openvocab

    recipe = load_config(
        None,
        [
            "model.model=random:tiny",
            "model.classifier=text",
            f"data.train={synth / 'train.csv'}",
            "data.val=null",
            f"run.out={tmp_path / 'run'}",
            "run.progress=false",
            "run.max_steps=2",
            "data.frames=4",
            "data.batch_size=4",
            "data.workers=0",
        ],
    )
    train(recipe)
    monkeypatch.setattr(sys, "argv", ["openvocab", "model", "export", str(tmp_path / "run"), str(tmp_path / "exported")])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0, capsys.readouterr().err
    trained = load_file(str(tmp_path / "run" / (tmp_path / "run" / "latest").read_text().strip() / "model.safetensors"))
    exported = CLIPModel.from_pretrained(str(tmp_path / "exported")).state_dict()
    key = "vision_model.encoder.layers.0.mlp.fc1.weight"
    torch.testing.assert_close(exported[key], trained["streams.rgb.backbone.clip." + key])
    clf = openvocab.load(tmp_path / "exported", label_bank=False)
    assert not clf.backbone.random_weights
    result = clf.classify(synth / "videos" / "red_circle" / "0000.mp4", ["red circle", "blue square"])
    assert result.ok and len(result.labels) == 2


def test_evaluation_recipes(monkeypatch, capsys, synth, tiny_model_dir, tmp_path):
    from pathlib import Path

    from openvocab.eval.run import load_eval_recipe

    for path in sorted((Path(__file__).resolve().parents[1] / "configs").rglob("table4_*.yaml")):
        assert load_eval_recipe(path)["model"]  # every shipped Table 4 recipe is well-formed
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"evaluate:\n  data: {synth / 'test.csv'}\n  model: {tiny_model_dir}\n  frames: 4\n  workers: 0\n  protocol: half\n  trials: 2\n")
    code, out, err = _run(monkeypatch, capsys, "--recipe", str(recipe), "--trials", "3")
    assert code == 0, err
    result = json.loads(out)
    assert result["protocol"] == "half" and len(result["result"]["trials"]) == 3, "command-line options win over the recipe"
    recipe.write_text("evaluate:\n  dataa: x\n")
    code, _, err = _run(monkeypatch, capsys, "--recipe", str(recipe))
    assert code == 2 and "unknown key 'evaluate.dataa'" in err
