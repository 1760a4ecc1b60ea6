"""One scoring path (issue 7, part 4): for a trained synthetic run, ``classify`` on the clips of a manifest and
``evaluate`` on that manifest give the same top-1 per clip at 1x1 and at 2x3 views, and the trainer's logged
validation top-1 equals ``evaluate``'s. Before the refactor these used three different multi-view rules."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

import openvocab
from openvocab.data.manifests import read_manifest
from openvocab.data.synth import SynthSpec, generate
from openvocab.eval.run import evaluate
from openvocab.io.sampling import SamplerSpec
from openvocab.train.config import load_config
from openvocab.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"
FRAMES = 4


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> tuple[Path, Path]:
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue", "green"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=5,
        frames=FRAMES,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.4,
    )
    data = generate(spec, tmp_path_factory.mktemp("synth_agree"), seed=11)
    out = tmp_path_factory.mktemp("runs") / "agree"
    overrides = {
        "data.train": str(data / "train.csv"),
        "data.val": str(data / "val.csv"),
        "data.classes": str(data / "classes.txt"),
        "data.views": "2x3",
        "run.out": str(out),
        "run.progress": "false",
        "model.classifier": "text",
        "model.temporal": "ttrans",
        "model.temporal_layers": "1",
        "model.token_t1d_blocks": "[0]",
        "data.frames": str(FRAMES),
        "data.batch_size": "4",
        "data.workers": "0",
        "optim.epochs": "2",
        "optim.lr": "3e-3",
    }
    train(load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()]))
    return data, out


def _classify_top1(run_dir: Path, manifest, views: str) -> dict[str, str]:
    clf = openvocab.load(run_dir, label_bank=False)
    names = manifest.class_names(normalised=True)
    results = clf.classify([r.path for r in manifest.records], names, frames=FRAMES, views=views, segments=0)
    return {r.path: r.top.label for r in results}


def _evaluate_top1(run_dir: Path, manifest, views: str, tmp_path: Path) -> tuple[dict[str, str], dict]:
    t, c = (int(x) for x in views.split("x"))
    out = tmp_path / f"pred_{views}.csv"
    result = evaluate(
        model_source=str(run_dir), manifest=manifest, sampler=SamplerSpec(frames=FRAMES, temporal_views=t, spatial_crops=c), workers=0, predictions=out
    )
    return {row["path"]: row["predicted"] for row in csv.DictReader(open(out))}, result


@pytest.mark.parametrize("views", ["1x1", "2x3"])
def test_classify_and_evaluate_agree_per_clip(run, views, tmp_path):
    data, run_dir = run
    manifest = read_manifest(data / "val.csv", classes=data / "classes.txt")
    assert len(manifest.records) >= 6
    by_classify = _classify_top1(run_dir, manifest, views)
    by_evaluate, result = _evaluate_top1(run_dir, manifest, views, tmp_path)
    assert by_classify == by_evaluate
    assert result["result"]["top1"] == pytest.approx(
        sum(by_classify[r.path] == manifest.classes[r.labels[0]] for r in manifest.records) / len(manifest.records)
    )


def test_trainer_validation_equals_evaluate(run, tmp_path):
    data, run_dir = run
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    val = [r for r in rows if "val_top1" in r][-1]
    manifest = read_manifest(data / "val.csv", classes=data / "classes.txt")
    _, result = _evaluate_top1(run_dir, manifest, "2x3", tmp_path)
    assert val["val_videos"] == result["videos"]
    assert val["val_top1"] == pytest.approx(result["result"]["top1"]) and val["val_map"] == pytest.approx(result["result"]["map"], abs=1e-5)


def test_the_cli_commands_agree_at_2x3(run, tmp_path, monkeypatch, capsys):
    """The same agreement through ``openvocab classify --format json`` and ``openvocab evaluate --predictions``."""
    import sys

    from openvocab.cli import main

    data, run_dir = run

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["openvocab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert exc.value.code == 0, err
        return out

    manifest = read_manifest(data / "val.csv", classes=data / "classes.txt")
    names = ", ".join(manifest.class_names(normalised=True))
    common = ["--model", str(run_dir), "--frames", str(FRAMES), "--views", "2x3"]
    out = call("classify", *[r.path for r in manifest.records], "--labels", names, "--format", "json", "--no-label-bank", "--segments", "0", "-q", *common)
    by_classify = {r["path"]: r["labels"][0]["label"] for r in json.loads(out)}
    call("evaluate", str(data / "val.csv"), "--classes", str(data / "classes.txt"), "--workers", "0", "--predictions", str(tmp_path / "p.csv"), *common)
    by_evaluate = {row["path"]: row["predicted"] for row in csv.DictReader(open(tmp_path / "p.csv"))}
    assert by_classify == by_evaluate and len(by_classify) == len(manifest.records)
