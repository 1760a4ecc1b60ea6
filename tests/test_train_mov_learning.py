"""MOV learns what only the other modality carries -- through the real CLI (`openvocab train`, `openvocab evaluate`).

Known-answer synthetic benchmarks (``openvocab data synth``'s generator):

* **motion**: left / right / up / down translations. Left and right (up and down) are time reverses with the same
  frame distribution, so an RGB model that pools its frames (TAP) stays near chance, while the flow images carry
  the direction in every frame: MOV with flow must be well above chance, and cross-attention fusion must not be
  worse than score fusion (Table 5). The dataset is split with seed 19, which holds out "growing" / "shrinking" as
  novel classes, so the same run reports base / novel / harmonic mean (Tables 1-2) through ``evaluate``.
* **tone**: the label is a sine tone in the sound track; every class draws its frames from the same distribution,
  so the RGB model is at chance and MOV with audio must be well above it.

The recipes are ``configs/mov/synth_*.yaml``, run as a user runs them (only paths and ``workers`` overridden).
Validation sets are small (12 clips), so the thresholds leave room for noise: chance is 0.25.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from openvocab.cli import app
from openvocab.data.synth import SynthSpec, generate

RECIPES = Path(__file__).resolve().parents[1] / "configs" / "mov"
CHANCE = 0.25


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> Path:
    spec = SynthSpec(
        motions=("left", "right", "up", "down", "grow", "shrink"),
        label_factors=("motion",),
        size=128,
        frames=8,
        clips_per_class=15,
        novel_fraction=1 / 3,
    )
    root = generate(spec, tmp_path_factory.mktemp("mov_motion") / "synth", seed=19)
    assert (root / "novel_classes.txt").read_text().split("\n")[:2] == ["growing", "shrinking"], "seed 19 holds out the scaling motions"
    return root


@pytest.fixture(scope="module")
def tone(tmp_path_factory) -> Path:
    spec = SynthSpec(tones=("low", "middle", "high", "very high"), label_factors=("tone",), size=64, frames=16, clips_per_class=15, novel_fraction=0.0)
    return generate(spec, tmp_path_factory.mktemp("mov_tone") / "synth", seed=0)


def _invoke(args: list[str]) -> str:
    result = CliRunner().invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def _train(recipe: str, data: Path, out: Path, *overrides: str) -> float:
    """Train a recipe on ``data`` into ``out``; its validation top-1 after the last epoch (validated only then)."""
    _invoke(
        [
            "train",
            str(RECIPES / recipe),
            f"data.train={data / 'train.csv'}",
            f"data.val={data / 'val.csv'}",
            f"run.out={out}",
            "run.progress=false",
            "data.workers=0",
            "run.eval_every_epochs=100",  # validate once, after the last epoch
            *overrides,
        ]
    )
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if "val_top1" in r][-1]["val_top1"]


@pytest.fixture(scope="module")
def motion_runs(motion, tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("mov_motion_runs")
    runs = {
        "rgb": _train("synth_rgb_only.yaml", motion, out / "rgb"),
        "mov": _train("synth_flow.yaml", motion, out / "mov"),
        "score": _train("synth_flow.yaml", motion, out / "score", "model.fusion=score"),
    }
    print(f"motion, val top-1: RGB only {runs['rgb']:.3f}, MOV flow {runs['mov']:.3f}, score fusion {runs['score']:.3f} (chance {CHANCE})")
    return {**runs, "dir": out}


def test_flow_sees_the_motion_that_rgb_cannot(motion_runs):
    assert motion_runs["rgb"] <= CHANCE + 0.2, "RGB frames pooled over time carry no direction"
    assert motion_runs["mov"] >= 0.7 and motion_runs["mov"] >= motion_runs["rgb"] + 0.35


def test_cross_attention_is_not_worse_than_score_fusion(motion_runs):
    assert motion_runs["score"] >= CHANCE + 0.25, "score fusion learns the motion from its flow stream too"
    assert motion_runs["mov"] >= motion_runs["score"] - 0.1


def test_base_novel_and_harmonic_mean_through_evaluate(motion_runs, motion):
    out = _invoke(
        [
            "evaluate",
            str(motion / "test.csv"),
            "--classes",
            str(motion / "base_classes.txt"),
            "--novel-data",
            str(motion / "novel_test.csv"),
            "--protocol",
            "base-novel",
            "--model",
            str(motion_runs["dir"] / "mov"),
            "--workers",
            "0",
        ]
    )
    result = json.loads(out)
    r = result["result"]
    print(f"base {r['base_top1']:.3f}, novel {r['novel_top1']:.3f}, harmonic mean {r['harmonic_mean']:.3f}")
    assert result["scoring"] == "base" and r["base"]["num_classes"] == 4 and r["novel"]["num_classes"] == 2
    assert r["base_top1"] >= 0.6, "Eq. 10 on the base classes"
    assert r["harmonic_mean"] == pytest.approx(2 * r["base_top1"] * r["novel_top1"] / (r["base_top1"] + r["novel_top1"]))


def test_audio_hears_the_tone_that_rgb_cannot(tone, tmp_path):
    rgb = _train("synth_rgb_only.yaml", tone, tmp_path / "rgb", "optim.epochs=3")
    mov = _train("synth_audio.yaml", tone, tmp_path / "mov")
    print(f"tone, val top-1: RGB only {rgb:.3f}, MOV audio {mov:.3f} (chance {CHANCE})")
    assert rgb <= CHANCE + 0.2, "the frames carry no tone"
    assert mov >= 0.6 and mov >= rgb + 0.3
