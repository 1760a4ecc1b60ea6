"""Text4Vis Table 2 as one recipe: a Kinetics-style run's video side initialises fine-tuning on ActivityNet's trimmed
training segments (``model.init_from``), validated on the UNTRIMMED validation videos with top-1 and mAP
(``data.val_mode: videos``, multi-label when a video has several activities).

A tiny ActivityNet database over synthetic coloured-shape clips: each "untrimmed" video is 1-2 one-second clips
back to back, each clip one annotated segment of its colour's activity. The "Kinetics" source run trains on another
synthetic vocabulary (other classes, so another head size). Everything runs the tiny random-weight CLIP on CPU.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from openvocab.cli import main
from openvocab.data.synth import SynthSpec, generate, render_clip
from openvocab.errors import InputError
from openvocab.io.encode import write_video
from openvocab.train.config import load_config
from openvocab.train.data_setup import read_split
from openvocab.train.trainer import build_model, init_from_run, train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "table2_anet_vitl14_f16.yaml"
COLOUR_OF = {"Painting red": "red", "Painting blue": "blue", "Painting green": "green"}
FPS = 8


def _write_untrimmed(path: Path, activities: list[str], seed: int) -> dict:
    """One video of one-second clips, one per activity; its ActivityNet entry (segments in seconds)."""
    spec = SynthSpec(shapes=("circle",), colours=tuple(COLOUR_OF.values()), motions=("left",), label_factors=("colour",), frames=FPS, fps=FPS, size=48)
    rng = np.random.default_rng(seed)
    clips = [render_clip(spec, {"colour": COLOUR_OF[a], "shape": "circle", "motion": "left"}, rng=rng)[0] for a in activities]
    write_video(path, np.concatenate(clips), fps=FPS)
    return {
        "subset": path.parent.name,
        "duration": float(len(activities)),
        "url": "",
        "resolution": "48x48",
        "annotations": [{"segment": [float(i), float(i + 1)], "label": a} for i, a in enumerate(activities)],
    }


@pytest.fixture(scope="module")
def anet(tmp_path_factory) -> Path:
    """``activity_net.json`` + ``videos/{training,validation}/v_<id>.mp4``: 6 training videos (12 segments); 3
    validation videos, 5 segments: one single-clip video, one with two segments of one activity, one with two
    activities (a two-label video)."""
    root = tmp_path_factory.mktemp("anet")
    names = list(COLOUR_OF)
    plan = {
        **{f"tr{i}": ("training", [names[i % 3], names[(i + 1) % 3]]) for i in range(6)},
        "va0": ("validation", [names[0]]),
        "va1": ("validation", [names[1], names[1]]),
        "va2": ("validation", [names[0], names[2]]),
    }
    database = {}
    for seed, (vid, (subset, acts)) in enumerate(plan.items()):
        (root / "videos" / subset).mkdir(parents=True, exist_ok=True)
        database[vid] = _write_untrimmed(root / "videos" / subset / f"v_{vid}.mp4", acts, seed)
    (root / "activity_net.json").write_text(json.dumps({"version": "VERSION 1.3", "database": database}))
    return root


@pytest.fixture(scope="module")
def kinetics_run(tmp_path_factory) -> Path:
    """The "Kinetics-400" source: a T-Trans (1 layer) + TokenT1D run on 2 synthetic shape classes, 2 steps."""
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red",),
        motions=("left",),
        label_factors=("shape",),
        clips_per_class=4,
        frames=4,
        size=48,
        novel_fraction=0.0,
        val_fraction=0.0,
        test_fraction=0.0,
    )
    data = generate(spec, tmp_path_factory.mktemp("k400_synth"), seed=3)
    out = tmp_path_factory.mktemp("runs") / "k400"
    train(
        load_config(
            None,
            [
                "model.model=random:tiny",
                "model.classifier=text",
                "model.temporal=ttrans",
                "model.temporal_layers=1",
                "model.token_t1d_blocks=[1]",
                f"data.train={data / 'train.csv'}",
                "data.val=null",
                "data.frames=4",
                "data.batch_size=4",
                "data.workers=0",
                "optim.lr=1e-3",
                "run.max_steps=2",
                f"run.out={out}",
                "run.progress=false",
            ],
        )
    )
    return out


def _table2(anet: Path, out: Path, source: Path, **extra) -> list[str]:
    """The shipped Table 2 recipe, shrunk to the tiny CLIP and the synthetic database."""
    o = {
        "model.model": "random:tiny",
        "model.gradient_checkpointing": "false",
        "model.temporal": "ttrans",
        "model.temporal_layers": 1,
        "model.token_t1d_blocks": "[1]",
        "model.init_from": str(source),
        "data.train": str(anet / "activity_net.json"),
        "data.val": str(anet / "activity_net.json"),
        "data.root": str(anet / "videos"),
        "data.frames": 4,
        "data.batch_size": 4,
        "data.workers": 0,
        "data.size": 0,
        "optim.warmup_epochs": 0,
        "optim.lr": 1e-4,
        "optim.min_lr": 1e-6,
        "run.max_steps": 2,
        "run.out": str(out),
        "run.progress": "false",
    }
    o.update(extra)
    return [f"{k}={v}" for k, v in o.items()]


def test_untrimmed_validation_reports_map_on_whole_videos(anet, kinetics_run, tmp_path, caplog, monkeypatch, capsys):
    caplog.set_level(logging.INFO, logger="openvocab")
    cfg = load_config(RECIPE, _table2(anet, tmp_path / "anet_run", kinetics_run))
    assert (cfg.data.format, cfg.data.val_mode, cfg.optim.accumulation) == ("activitynet", "videos", 2)
    videos = read_split(cfg.data, "val")
    assert len(videos.records) == 3 and sorted(len(r.labels) for r in videos.records) == [1, 1, 2]
    cfg.data.val_mode = "segments"
    assert len(read_split(cfg.data, "val").records) == 5
    cfg.data.val_mode = "videos"

    result = train(cfg)
    assert f"initialised from {kinetics_run}" in caplog.text and "kept as built: head" in caplog.text
    assert result["step"] == 2, "init_from is not a resume: the new run counts its own steps from 0"
    assert result["val_videos"] == 3, "evaluated on the 3 untrimmed validation videos, not their 5 segments"
    assert 0.0 <= result["val_map"] <= 1.0 and 0.0 <= result["val_top1"] <= result["val_top5"] <= 1.0
    assert "val_mean_class" not in result, "mean-class accuracy is single-label only (one video has two labels)"
    rows = [json.loads(line) for line in (tmp_path / "anet_run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["val_map"] == result["val_map"] and [r["step"] for r in rows if "loss" in r] == [1, 2]

    # a second run of the same command resumes its own checkpoint (init_from no longer applies) and goes on
    again = train(load_config(RECIPE, _table2(anet, tmp_path / "anet_run", kinetics_run, **{"run.max_steps": 3})))
    assert again["step"] == 3 and again["val_videos"] == 3

    assert "not applied: resuming" in caplog.text

    # `openvocab evaluate` of the fine-tuned run on the untrimmed videos reports mAP too (segments: single-label)
    def evaluate(*extra: str):
        args = [
            str(anet / "activity_net.json"),
            "--format",
            "activitynet",
            "--root",
            str(anet / "videos"),
            "--model",
            str(tmp_path / "anet_run"),
            "--frames",
            "4",
            "--workers",
            "0",
            *extra,
        ]
        monkeypatch.setattr(sys, "argv", ["openvocab", "evaluate", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        return exc.value.code, out, err

    code, out, err = evaluate("--val-mode", "videos")
    ev = json.loads(out)
    assert code == 0 and ev["videos"] == 3 and ev["multi_label"] and "mean_class_accuracy" not in ev["result"], err
    assert 0.0 <= ev["result"]["map"] <= 1.0 and 0.0 <= ev["result"]["top1"] <= ev["result"]["top5"] <= 1.0
    code, out, err = evaluate()
    ev = json.loads(out)
    assert code == 0 and ev["videos"] == 5 and "multi_label" not in ev and {"map", "mean_class_accuracy"} <= set(ev["result"]), err
    code, out, err = evaluate("--val-mode", "videos", "--protocol", "half", "--trials", "1")
    assert code == 2 and "needs single-label videos" in err and len(err.strip().splitlines()) == 1


def test_init_from_loads_the_video_side_and_keeps_the_new_head(anet, kinetics_run):
    cfg = load_config(RECIPE, _table2(anet, Path("unused"), kinetics_run))
    names = ["painting red", "painting blue", "painting green"]
    fresh = build_model(cfg, names, device="cpu")
    model = build_model(cfg, names, device="cpu")
    result = init_from_run(model, kinetics_run)
    source = load_file(str(kinetics_run / (kinetics_run / "latest").read_text().strip() / "model.safetensors"))
    state, initial = model.state_dict(), fresh.state_dict()
    video_side = [
        k
        for k in state
        if k.startswith(
            ("streams.rgb.backbone.clip.vision_model.", "streams.rgb.backbone.clip.visual_projection", "streams.rgb.temporal.", "streams.rgb.token_t1d.")
        )
    ]
    assert any(k.startswith("streams.rgb.temporal.encoder.") for k in video_side) and any(k.startswith("streams.rgb.token_t1d.") for k in video_side)
    assert sorted(result["loaded"]) == sorted(video_side)
    for key in video_side:
        torch.testing.assert_close(state[key], source[key], rtol=0, atol=0, msg=key)
    moved = [k for k in video_side if not torch.equal(source[k], initial[k])]
    assert any(k.startswith("streams.rgb.temporal.") for k in moved) and any(k.startswith("streams.rgb.backbone.clip.vision_model.") for k in moved), (
        "the source run trained these"
    )
    # the head is this run's: 3 classes (the source has 2), exactly what a fresh build gives; the text side too
    assert source["head.weight"].shape[0] == 2 and state["head.weight"].shape[0] == 3
    assert all(torch.equal(state[k], initial[k]) for k in state if k.startswith(("head.", "streams.rgb.backbone.clip.text_model.")))
    assert "head.weight" in result["skipped"] and "head.weight" in result["unused"]


@pytest.mark.parametrize(
    "override, fragment",
    [
        ({"model.temporal": "tap"}, "model.temporal='ttrans', this recipe has model.temporal='tap'"),
        ({"model.token_t1d_blocks": "[0, 1]"}, "model.token_t1d_blocks=[1], this recipe has model.token_t1d_blocks=[0, 1]"),
        ({"model.model": "random:vit-b-32"}, "model.model='random:tiny', this recipe has model.model='random:vit-b-32'"),
        ({"model.init_from": "/nonexistent/run"}, "model.init_from: /nonexistent/run: no such checkpoint directory"),
    ],
)
def test_incompatible_or_missing_init_from_is_refused_in_one_line(anet, kinetics_run, tmp_path, override, fragment):
    cfg = load_config(RECIPE, _table2(anet, tmp_path / "run", kinetics_run, **override))
    with pytest.raises(InputError) as err:
        train(cfg)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert not (tmp_path / "run").exists(), "nothing is written for a run that cannot start"
