"""Training a CLIP-ResNet recogniser end to end (Text4Vis Table 8, ResNet rows) on the synthetic benchmark: it learns,
T1D's convolutions train and checkpoint, and a run resumes onto the same architecture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openvocab.data.synth import SynthSpec, generate
from openvocab.train.config import load_config
from openvocab.train.trainer import train

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "text4vis" / "synth_tiny.yaml"


@pytest.fixture(scope="module")
def colours(tmp_path_factory) -> Path:
    """4 colour classes (shape and motion vary inside a class), 16 clips each."""
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue", "green", "yellow"),
        motions=("left", "right"),
        label_factors=("colour",),
        clips_per_class=16,
        frames=4,
        size=48,
        novel_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_colours"), seed=2)


def _cfg(data: Path, out: Path, **extra):
    overrides = {
        "model.model": "random:tiny-rn",
        "model.classifier": "orthogonal",
        "data.train": str(data / "train.csv"),
        "data.val": str(data / "val.csv"),
        "data.frames": 4,
        "data.size": 64,
        "data.batch_size": 8,
        "data.workers": 0,
        "optim.epochs": 10,
        "optim.warmup_epochs": 1,
        "optim.lr": 3e-3,
        "run.out": str(out),
        "run.progress": "false",
        "run.eval_every_epochs": 100,
    }
    overrides.update(extra)
    return load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()])


def _checkpoint(out: Path) -> dict:
    return load_file(str(out / (out / "latest").read_text().strip() / "model.safetensors"))


def test_clip_resnet_recogniser_learns_colour_classes(colours, tmp_path):
    """From random weights (seeds 1, 2, 3 gave 0.75 / 1.0 / 0.92 on the 12 held-out clips; chance 0.25)."""
    metrics = train(_cfg(colours, tmp_path / "tap", **{"run.seed": 1}))
    assert metrics["val_videos"] == 12
    assert metrics["val_top1"] >= 0.6, f"held-out top-1 {metrics['val_top1']:.3f} (chance 0.25)"


def test_t1d_trains_checkpoints_and_resumes(colours, tmp_path):
    out = tmp_path / "t1d"
    train(_cfg(colours, out, **{"model.t1d_stages": "[4, 5]", "optim.epochs": 1}))
    first = _checkpoint(out)
    assert not any(k.startswith("streams.rgb.backbone.clip.text_model.") for k in first), "the frozen text tower is not stored"
    assert any(k.startswith("streams.rgb.backbone.clip.vision_model.") for k in first)
    convs = sorted(k for k in first if k.startswith("streams.rgb.t1d.convs."))
    assert {k.split(".")[4].split("_")[0] for k in convs} == {"res4", "res5"}
    kernel = first["streams.rgb.t1d.convs.res4_0.weight"]  # (C, 1, 3), initialised as a temporal shift
    fold = kernel.shape[0] // 8
    start = torch.zeros_like(kernel)
    start[:fold, 0, 2] = 1
    start[fold : 2 * fold, 0, 0] = 1
    start[2 * fold :, 0, 1] = 1
    assert not torch.equal(kernel, start), "the T1D kernel was trained"
    assert (kernel - start).abs().max() < 0.5, "and started from the shift"

    train(_cfg(colours, out, **{"model.t1d_stages": "[4, 5]", "optim.epochs": 2}))  # resumes at epoch 1
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == list(range(1, len(steps) + 1))
    assert not torch.equal(_checkpoint(out)["streams.rgb.t1d.convs.res4_0.weight"], kernel)

    with pytest.raises(Exception, match="t1d_stages"):  # same run directory, other architecture: refused
        train(_cfg(colours, out, **{"model.t1d_stages": "[5]", "optim.epochs": 3}))
