"""A training run directory as ``--model``: ``openvocab.load(RUN_DIR)`` uses the run's temporal modules (T-Trans,
TokenT1D), its classifier space and scale -- and equals the run's own evaluation forward."""

from __future__ import annotations

import csv
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

import openvocab
from openvocab.data.dataset import VideoClipDataset
from openvocab.data.manifests import VideoRecord
from openvocab.data.synth import SynthSpec, generate
from openvocab.errors import InputError
from openvocab.eval.run import load_run
from openvocab.io.sampling import SamplerSpec
from openvocab.scoring import score_views
from openvocab.train.config import load_config
from openvocab.train.trainer import train

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"
FRAMES = 4


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=5,
        frames=FRAMES,
        size=48,
        novel_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_run"), seed=3)


def _train(data: Path, out: Path, classifier: str, **extra) -> Path:
    overrides = {
        "data.train": str(data / "train.csv"),
        "data.val": "null",
        "run.out": str(out),
        "run.progress": "false",
        "model.classifier": classifier,
        "model.temporal": "ttrans",
        "model.temporal_layers": "1",
        "model.token_t1d_blocks": "[0]",
        "model.prompts": "single",
        "data.frames": str(FRAMES),
        "data.batch_size": "4",
        "data.workers": "0",
        "optim.epochs": "2",
        "optim.warmup_epochs": "0",
        "optim.lr": "3e-3",
    }
    overrides.update(extra)
    train(load_config(RECIPE, [f"{k}={v}" for k, v in overrides.items()]))
    assert (out / "latest").is_file()
    return out


@pytest.fixture(scope="module")
def ortho_run(synth, tmp_path_factory) -> Path:
    return _train(synth, tmp_path_factory.mktemp("runs") / "ortho", "orthogonal")


@pytest.fixture(scope="module")
def text_run(synth, tmp_path_factory) -> Path:
    return _train(synth, tmp_path_factory.mktemp("runs") / "text", "text")


def _held_out(data: Path) -> Path:
    rows = list(csv.DictReader((data / "val.csv").open()))
    path = Path(rows[0]["path"])
    return path if path.is_absolute() else data / path


def _eval_probs(run: Path, video: Path) -> tuple[torch.Tensor, list[str]]:
    """softmax(model(pixels)) with pixels from the run's evaluation pipeline (VideoClipDataset, train=False)."""
    model = load_run(run)
    names = model.class_names
    ds = VideoClipDataset([VideoRecord(path=str(video), labels=(0,))], sampler=SamplerSpec(frames=FRAMES), clip=model.backbone.image_spec, train=False)
    pixels = ds[0]["inputs"]["rgb"]  # (C=1, V=1, T, 3, S, S)
    with torch.inference_mode():
        logits = model(pixels.reshape(-1, *pixels.shape[2:]))
    return logits.softmax(-1)[0], names


@pytest.mark.parametrize("which", ["ortho_run", "text_run"])
def test_run_dir_scores_equal_the_runs_own_forward(which, request, synth, tmp_path):
    run = request.getfixturevalue(which)
    video = _held_out(synth)
    expected, names = _eval_probs(run, video)
    clf = openvocab.load(run, label_bank=tmp_path / "bank.sqlite")
    assert clf.recognizer.token_t1d is not None
    assert type(clf.recognizer.temporal).__name__ == "TemporalTransformer"
    result = clf.classify(video, names, frames=FRAMES, views="1x1", top_k=len(names))
    got = {ls.label: ls.score for ls in result.labels}
    assert torch.allclose(torch.tensor([got[n] for n in names]), expected, atol=1e-4), (got, expected)
    assert result.segments, "the timeline is pooled by the run's temporal module too"
    clf.pool = lambda frames, streams=None: frames.mean(dim=-2)  # TAP instead of the run's T-Trans: the scores move well beyond the tolerance above
    tap = {ls.label: ls.score for ls in clf.classify(video, names, frames=FRAMES, top_k=len(names), segments=0).labels}
    assert (torch.tensor([tap[n] for n in names]) - expected).abs().max() > 1e-2


def test_run_dir_differs_from_the_exported_tap_clip(ortho_run, synth, tmp_path):
    """Same fine-tuned CLIP, same classifier rows and scale: only T-Trans + TokenT1D differ -- and they matter."""
    from openvocab.models.create import save_model_dir

    video = _held_out(synth)
    clf = openvocab.load(ortho_run, label_bank=False)
    names = clf.class_names
    run_probs = torch.tensor([{ls.label: ls.score for ls in clf.classify(video, names, frames=FRAMES, top_k=len(names), segments=0).labels}[n] for n in names])
    exported = openvocab.load(save_model_dir(clf.backbone, tmp_path / "exported"), label_bank=False)
    tap_frames = exported.embed_video(video, sampler=SamplerSpec(frames=FRAMES)).frames
    tap_probs = score_views(tap_frames, clf.label_embeddings(names), logit_scale=clf.logit_scale)
    assert not torch.allclose(run_probs, tap_probs, atol=1e-3), (run_probs, tap_probs)
    # and the difference is the run's temporal side: with TAP and no TokenT1D the run reduces to the export
    clf.recognizer.token_t1d.detach()
    frames = clf.embed_video(video, sampler=SamplerSpec(frames=FRAMES)).frames
    assert torch.allclose(frames, tap_frames, atol=1e-4)
    assert torch.allclose(score_views(frames, clf.label_embeddings(names), logit_scale=clf.logit_scale), tap_probs, atol=1e-5)


def test_multi_view_and_timeline_through_the_temporal_module(ortho_run, synth):
    clf = openvocab.load(ortho_run, label_bank=False)
    r = clf.classify(_held_out(synth), clf.class_names, frames=FRAMES, views="2x3", segments=3, top_k=2)
    assert r.frames_sampled == 2 * FRAMES and 1 <= len(r.segments) <= 3
    full = clf.classify(_held_out(synth), clf.class_names, frames=FRAMES, views="2x3", top_k=4)
    assert sum(ls.score for ls in full.labels) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="at most 64 frames"):
        clf.classify(_held_out(synth), clf.class_names, frames=40, views="2x1", segments=1)


def test_closed_set_and_linear_runs_are_refused_in_one_line(ortho_run, synth, tmp_path):
    clf = openvocab.load(ortho_run, label_bank=False)
    with pytest.raises(InputError) as exc:
        clf.classify(_held_out(synth), clf.class_names + ["juggling"], frames=FRAMES)
    assert "juggling" in str(exc.value) and "orthogonal" in str(exc.value) and "\n" not in str(exc.value)
    linear = tmp_path / "linear_run"
    shutil.copytree(ortho_run, linear)
    state_file = linear / (linear / "latest").read_text().strip() / "trainer_state.json"
    state = json.loads(state_file.read_text())  # make it a linear-probe run (same checkpoint otherwise)
    state["extra"]["spec"]["head"]["classifier"] = state["arch"]["head"]["classifier"] = "linear"
    state_file.write_text(json.dumps(state))
    with pytest.raises(InputError) as exc:
        openvocab.load(linear)
    assert "linear" in str(exc.value) and "\n" not in str(exc.value)


def test_cli_classify_with_a_run_dir(ortho_run, synth, tmp_path, monkeypatch, capsys):
    from openvocab.cli import main

    def call(*args):
        monkeypatch.setattr(sys, "argv", ["openvocab", *args])
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "Traceback" not in out
        return exc.value.code, out, err

    names = load_run(ortho_run).class_names
    code, out, err = call(
        "classify", str(_held_out(synth)), "--labels", ", ".join(names), "--model", str(ortho_run), "--frames", str(FRAMES), "--no-label-bank"
    )
    assert code == 0, err
    assert all(n in out for n in names[:2]) and _held_out(synth).name in out
    code, out, err = call("classify", str(_held_out(synth)), "--labels", "juggling", "--model", str(ortho_run), "--frames", str(FRAMES), "--no-label-bank")
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code != 0 and len(errors) == 1 and "juggling" in errors[0], err
