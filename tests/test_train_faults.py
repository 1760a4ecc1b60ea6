"""Training and run directories under faults: a training set where nothing decodes, a damaged newest checkpoint, a
corrupt ``trainer_state.json``, a deleted or garbled ``latest`` -- each gives one clear line or a warning and a
fallback to the newest intact checkpoint, never a traceback, never a silent restart from step 0, never a deletion."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

from openvocab.data.synth import SynthSpec, generate
from openvocab.errors import InputError
from openvocab.models.checkpoint import CorruptCheckpointError, load_checkpoint, read_trainer_state, save_checkpoint
from openvocab.train.config import load_config
from openvocab.train.trainer import train

pytestmark = pytest.mark.usefixtures("one_torch_thread")

REPO = Path(__file__).resolve().parents[1]
RECIPE = REPO / "configs" / "text4vis" / "synth_tiny.yaml"
LABELS = "red circle, blue square"  # two of the run's classes (a closed-set head scores its own classes only)


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    """4 classes (2 colours x 2 shapes), 2 clips each, 4 frames of 32 px."""
    spec = SynthSpec(
        shapes=("circle", "square"),
        colours=("red", "blue"),
        motions=("left",),
        label_factors=("colour", "shape"),
        clips_per_class=2,
        frames=4,
        size=32,
        novel_fraction=0.0,
    )
    return generate(spec, tmp_path_factory.mktemp("synth_faults"), seed=1)


def _overrides(train_csv: Path, out: Path, **extra) -> list[str]:
    base = {
        "data.train": str(train_csv),
        "data.val": "null",
        "run.out": str(out),
        "run.progress": "false",
        "model.classifier": "orthogonal",
        "data.frames": "2",
        "data.batch_size": "2",
        "data.workers": "0",
        "optim.epochs": "1",
        "run.save_every_steps": "1",
    }
    base.update({k: str(v) for k, v in extra.items()})
    return [f"{k}={v}" for k, v in base.items()]


@pytest.fixture(scope="module")
def base_run(synth, tmp_path_factory) -> Path:
    """A run with checkpoints at steps 1, 2 and 3 (of 4 in the epoch); tests work on copies."""
    out = tmp_path_factory.mktemp("runs") / "base"
    train(load_config(RECIPE, _overrides(synth / "train.csv", out, **{"run.max_steps": 3})))
    assert (out / "latest").read_text().strip() == "step_00000003"
    return out


@pytest.fixture
def run(base_run, tmp_path) -> Path:
    copy = tmp_path / "run"
    shutil.copytree(base_run, copy)
    return copy


def _logged_steps(run: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines() if '"loss"' in line]


def _errors(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _truncate(path: Path, size: int = 1000) -> None:
    with open(path, "r+b") as fh:
        fh.truncate(size)


# ---------------------------------------------------------------------------------------------------------------------
# training data that does not decode
# ---------------------------------------------------------------------------------------------------------------------
def _garbage_videos(folder: Path, n: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = folder / f"broken{i}.mp4"
        path.write_bytes(bytes((i * 37 + k * 11) % 256 for k in range(3000)))  # not a video, but a file that exists
        paths.append(path)
    return paths


def test_training_where_no_clip_decodes_exits_non_zero_with_one_line(cli, tmp_path):
    bad = _garbage_videos(tmp_path / "videos", 4)
    manifest = tmp_path / "train.csv"
    manifest.write_text("path,label\n" + "".join(f"{p},{'yoga' if i % 2 else 'surfing'}\n" for i, p in enumerate(bad)))
    out = tmp_path / "run"
    code, _, err = cli("train", str(RECIPE), *_overrides(manifest, out))
    assert code == 2, err
    lines = _errors(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: no clip of the training set could be decoded: 4 failed, first: ")
    assert any(str(p) in lines[0] for p in bad) and "not a recognised video" in lines[0]
    assert not out.exists(), "a run that could not train leaves no run directory behind"


def test_a_high_failure_rate_warns_and_trains_on_the_rest(cli, synth, tmp_path):
    bad = _garbage_videos(tmp_path / "videos", 2)
    rows = (synth / "train.csv").read_text().splitlines()
    header, good = rows[0], [r for r in rows[1:] if r.strip()]
    manifest = tmp_path / "train.csv"  # 8 good clips (paths relative to synth/) and 2 broken ones: 20 % fail
    good_abs = [f"{synth / r.split(',', 1)[0]},{r.split(',', 1)[1]}" for r in good]
    manifest.write_text("\n".join([header, *good_abs, *(f"{p},red circle,red,circle,left" for p in bad)]) + "\n")
    out = tmp_path / "run"
    code, stdout, err = cli("train", str(RECIPE), *_overrides(manifest, out, **{"data.batch_size": 5}))
    assert code == 0, err
    assert json.loads(stdout)["step"] == 2
    warning = [line for line in err.splitlines() if "of 10 training clips (20%) failed to decode" in line]
    assert warning and "first: " in warning[0] and "broken" in warning[0], err


# ---------------------------------------------------------------------------------------------------------------------
# damaged checkpoints: resume
# ---------------------------------------------------------------------------------------------------------------------
def test_resume_falls_back_past_a_truncated_newest_checkpoint_and_keeps_it(cli, run, synth):
    damaged = run / "step_00000003" / "model.safetensors"
    _truncate(damaged)
    code, stdout, err = cli("train", str(RECIPE), *_overrides(synth / "train.csv", run, **{"run.max_steps": 4}))
    assert code == 0, err
    assert "Traceback" not in err and not _errors(err)
    assert any("step_00000003" in line and "unusable" in line and "falling back" in line for line in err.splitlines()), err
    assert "resumed from" in err and "at step 2" in err
    assert json.loads(stdout)["step"] == 4
    assert (run / "latest").read_text().strip() == "step_00000004"
    assert _logged_steps(run) == [1, 2, 3, 4], "steps after the fallback checkpoint are redone, each logged once"
    kept = run / "step_00000003.unusable" / "model.safetensors"
    assert kept.is_file() and kept.stat().st_size == 1000, "the damaged checkpoint is kept (set aside), never deleted"
    assert (run / "step_00000003" / "trainer_state.json").is_file(), "step 3 was saved again, intact"
    assert read_trainer_state(run / "step_00000003")[1]["step"] == 3


def test_deleted_latest_resumes_from_the_newest_checkpoint_not_from_step_0(cli, run, synth):
    (run / "latest").unlink()
    code, stdout, err = cli("train", str(RECIPE), *_overrides(synth / "train.csv", run, **{"run.max_steps": 4}))
    assert code == 0, err
    assert any("no 'latest' file" in line and "step_00000003" in line for line in err.splitlines()), err
    assert json.loads(stdout)["step"] == 4
    assert _logged_steps(run) == [1, 2, 3, 4], "a restart from step 0 would have logged steps 1-3 twice"


def test_a_run_whose_every_checkpoint_is_damaged_is_refused_not_restarted(cli, run, synth):
    for step_dir in sorted(run.glob("step_*")):
        (step_dir / "trainer_state.json").write_text("{")
    before = sorted(p.name for p in run.iterdir())
    code, _, err = cli("train", str(RECIPE), *_overrides(synth / "train.csv", run, **{"run.max_steps": 4}))
    assert code == 2
    lines = _errors(err)
    assert len(lines) == 1 and "no usable checkpoint" in lines[0] and "step_00000003/trainer_state.json" in lines[0], err
    assert sorted(p.name for p in run.iterdir()) == before, "nothing was overwritten or deleted"
    assert _logged_steps(run) == [1, 2, 3]


# ---------------------------------------------------------------------------------------------------------------------
# damaged checkpoints: a run as --model
# ---------------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("content", ["", "null", "[1, 2]", '{"step": "three", "epoch": 0}', '{"step": 3, "epoch": 0, "extra": {"class_names": 5}}'])
def test_corrupt_trainer_state_of_a_run_as_model_is_one_line(cli, run, make_video, content):
    for old in ("step_00000001", "step_00000002"):  # the only checkpoint: nothing to fall back to
        shutil.rmtree(run / old)
    (run / "step_00000003" / "trainer_state.json").write_text(content)
    video = make_video("clip.mp4", num_frames=8, size=(48, 32))
    code, out, err = cli("classify", str(video), "--labels", LABELS, "--model", str(run), "--no-label-bank", "-q")
    assert code == 2 and out == ""
    lines = _errors(err)
    assert len(lines) == 1 and f"{run}/step_00000003/trainer_state.json" in lines[0], err
    assert "internal error" not in err


def test_corrupt_trainer_state_for_evaluate_is_one_line(cli, run, synth):
    for old in ("step_00000001", "step_00000002"):
        shutil.rmtree(run / old)
    (run / "step_00000003" / "trainer_state.json").write_text("null")
    code, _, err = cli("evaluate", str(synth / "train.csv"), "--model", str(run), "--workers", "0")
    assert code == 2
    lines = _errors(err)
    assert len(lines) == 1 and "trainer_state.json" in lines[0] and "not a trainer state" in lines[0], err


@pytest.mark.parametrize("damage", ["truncated model", "corrupt state", "latest deleted", "latest garbled"])
def test_a_run_as_model_falls_back_to_the_newest_intact_checkpoint(cli, run, make_video, damage):
    if damage == "truncated model":
        _truncate(run / "step_00000003" / "model.safetensors")
    elif damage == "corrupt state":
        (run / "step_00000003" / "trainer_state.json").write_text('{"step": 3, "epo')
    elif damage == "latest deleted":
        (run / "latest").unlink()
    else:
        (run / "latest").write_text("../../somewhere\n")
    video = make_video("clip.mp4", num_frames=8, size=(48, 32))
    code, out, err = cli("classify", str(video), "--labels", LABELS, "--model", str(run), "--no-label-bank", "--format", "json")
    assert code == 0, err
    assert {ls["label"] for ls in json.loads(out)[0]["labels"]} == {"red circle", "blue square"}
    warnings = [line for line in err.splitlines() if line.startswith("warning:") and str(run) in line]
    assert len(warnings) == 1, err  # once, although the run is resolved twice (its spec, then its weights)
    expected = "step_00000002" if damage in ("truncated model", "corrupt state") else "step_00000003"
    assert expected in warnings[0]
    assert sorted(p.name for p in run.glob("step_*")) == ["step_00000001", "step_00000002", "step_00000003"], "nothing deleted or moved"


# ---------------------------------------------------------------------------------------------------------------------
# the checkpoint reader itself (no training)
# ---------------------------------------------------------------------------------------------------------------------
def _save_steps(directory: Path, steps=(1, 2, 3)) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    for step in steps:
        with torch.no_grad():
            model.bias.fill_(float(step))
        save_checkpoint(directory, model=model, step=step, epoch=0, arch={"kind": "linear"}, keep_last=None)
    return model


def test_load_checkpoint_falls_back_and_reports_the_unusable_ones(tmp_path, caplog):
    model = _save_steps(tmp_path)
    _truncate(tmp_path / "step_00000003" / "model.safetensors", 40)
    (tmp_path / "step_00000002" / "trainer_state.json").write_text('{"step": 2}')  # no epoch: not a trainer state
    with caplog.at_level("WARNING", logger="openvocab.models.checkpoint_choice"):
        state = load_checkpoint(tmp_path, model=model, restore_rng=False)
    assert state["step"] == 1 and float(model.bias.detach()[0]) == 1.0
    assert state["unusable"] == [str(tmp_path / "step_00000003"), str(tmp_path / "step_00000002")]
    assert sum("unusable" in r.getMessage() for r in caplog.records) == 2
    assert (tmp_path / "step_00000003" / "model.safetensors").stat().st_size == 40, "left as it is"


def test_an_explicit_step_directory_is_never_swapped_for_another(tmp_path):
    model = _save_steps(tmp_path)
    _truncate(tmp_path / "step_00000003" / "model.safetensors", 40)
    with pytest.raises(CorruptCheckpointError) as info:
        load_checkpoint(tmp_path / "step_00000003", model=model)
    assert "\n" not in str(info.value) and "step_00000003/model.safetensors: corrupt safetensors file" in str(info.value)
    assert load_checkpoint(tmp_path / "step_00000002", model=model)["step"] == 2


def test_resume_needs_an_intact_optimizer_state_too(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(4, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(3, 4)).sum().backward()
    optimizer.step()
    for step in (1, 2):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, step=step, epoch=0, arch={})
    _truncate(tmp_path / "step_00000002" / "optimizer.safetensors", 30)
    assert load_checkpoint(tmp_path, model=model, restore_rng=False)["step"] == 2, "the model alone is intact at step 2"
    assert load_checkpoint(tmp_path, model=model, optimizer=optimizer, restore_rng=False)["step"] == 1


def test_no_checkpoint_at_all_is_still_a_clear_error(tmp_path):
    (tmp_path / "latest").write_text("step_00000007\n")
    with pytest.raises(InputError, match="no usable checkpoint .*step_00000007: no such checkpoint directory"):
        read_trainer_state(tmp_path)
