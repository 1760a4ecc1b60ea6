"""The CUDA paths of the trainer: bf16 / fp16 autocast (fp16 with a GradScaler whose state is checkpointed) and
gradient checkpointing. Skipped, with the reason shown, on machines without a CUDA device (CI); run them where one
is lent: `python -m pytest -q tests/test_train_gpu.py`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from openvocab.data.synth import SynthSpec, generate
from openvocab.train.config import load_config
from openvocab.train.trainer import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none on this machine)")

RECIPE = Path(__file__).resolve().parents[1] / "configs" / "text4vis" / "synth_tiny.yaml"


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=6,
        frames=4,
        size=48,
        novel_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_gpu"), seed=1)


def _run(data: Path, out: Path, model: str = "random:tiny", **extra) -> dict:
    overrides = {
        "model.model": model,
        "model.classifier": "orthogonal",
        "data.train": str(data / "train.csv"),
        "data.val": str(data / "val.csv"),
        "data.frames": 4,
        "data.batch_size": 4,
        "data.workers": 0,
        "optim.epochs": 2,
        "run.out": str(out),
        "run.progress": "false",
        "run.device": "cuda",
    }
    overrides.update(extra)
    cfg = load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()])
    return train(cfg)


def _losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


@pytest.mark.parametrize("precision", ["bf16", "fp16", "fp32"])
@pytest.mark.parametrize("model", ["random:tiny", "random:tiny-rn"])
def test_mixed_precision_training_runs_and_learns_weights(synth, tmp_path, precision, model):
    out = tmp_path / precision
    metrics = _run(synth, out, model=model, **{"optim.precision": precision})
    losses = _losses(out)
    assert losses and all(math.isfinite(v) for v in losses)
    assert math.isfinite(metrics["val_top1"])
    state = json.loads((out / (out / "latest").read_text().strip() / "trainer_state.json").read_text())
    assert ("grad_scaler" in state.get("extra", {})) == (precision == "fp16"), "only fp16 needs (and checkpoints) loss scaling"
    weights = load_file(str(out / (out / "latest").read_text().strip() / "model.safetensors"))
    assert all(torch.isfinite(t.float()).all() for t in weights.values())


def test_gradient_checkpointing_matches_on_cuda(synth, tmp_path):
    a = _run(synth, tmp_path / "plain", **{"optim.precision": "fp32", "optim.epochs": 1})
    b = _run(synth, tmp_path / "ckpt", **{"optim.precision": "fp32", "optim.epochs": 1, "model.gradient_checkpointing": "true"})
    la, lb = _losses(tmp_path / "plain"), _losses(tmp_path / "ckpt")
    assert len(la) == len(lb)
    assert max(abs(x - y) for x, y in zip(la, lb)) < 1e-3
    assert abs(a["val_top1"] - b["val_top1"]) <= 0.25
