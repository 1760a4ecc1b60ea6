"""`openvocab flow extract`: a batch over a manifest that caches every good video, lists bad ones (one line each, in
OUT/failures.csv, exit 1), resumes without rewriting, and answers user errors with one `error:` line and exit 2."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from openvocab.data.synth import SynthSpec, render_clip
from openvocab.io.encode import write_video
from openvocab.io.flow_cache import FlowCache


@pytest.fixture
def run(cli):
    return lambda *args: cli("flow", *args)


@pytest.fixture
def dataset(tmp_path):
    """Two good clips with the same name in different folders, a one-frame clip and a corrupt file, in a manifest."""
    root = tmp_path / "data"
    spec = SynthSpec(frames=8, size=48)
    for folder, motion in (("left", "left"), ("right", "right")):
        (root / folder).mkdir(parents=True)
        frames, _ = render_clip(spec, {"colour": "green", "shape": "square", "motion": motion}, rng=np.random.default_rng(0))
        write_video(root / folder / "clip.mp4", frames, fps=8)
    write_video(root / "left" / "still.mp4", np.zeros((1, 48, 48, 3), np.uint8), fps=8)
    (root / "right" / "broken.mp4").write_bytes(b"\x00garbage" * 64)
    rows = ["left/clip.mp4,left", "left/still.mp4,left", "right/clip.mp4,right", "right/broken.mp4,right"]
    (root / "train.csv").write_text("path,label\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return root


def test_extract_reports_bad_videos_and_resumes(run, dataset, tmp_path) -> None:
    out = tmp_path / "flow"
    code, stdout, stderr = run("extract", str(dataset / "train.csv"), str(out), "--method", "dis", "--workers", "2")
    assert code == 1, stderr
    assert "4 videos: 2 extracted, 0 already cached (skipped), 2 failed" in stdout
    still, broken = str(dataset / "left" / "still.mp4"), str(dataset / "right" / "broken.mp4")
    assert f"error: {still}: a one-frame video has no frame pair for optical flow" in stderr.splitlines()
    assert any(line.startswith(f"error: {broken}: ") for line in stderr.splitlines())
    with open(out / "failures.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["path", "reason"] and sorted(r[0] for r in rows[1:]) == [still, broken]
    assert dict(rows[1:])[still] == "a one-frame video has no frame pair for optical flow"
    cached = [out / "left" / "clip.mp4.flow.safetensors", out / "right" / "clip.mp4.flow.safetensors"]
    assert all(p.is_file() for p in cached)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "failures.csv",
        "flow_cache.json",
        "left/clip.mp4.flow.safetensors",
        "right/clip.mp4.flow.safetensors",
    ]  # nothing else: no temporary files, nothing for the bad videos
    cache = FlowCache(out, method="dis")  # what training opens: the video root comes from flow_cache.json
    assert cache.has(dataset / "left" / "clip.mp4") and cache.read(dataset / "right" / "clip.mp4", [0, 7]).shape == (2, 48, 48, 2)

    mtimes = [p.stat().st_mtime_ns for p in cached]
    code, stdout, _ = run("extract", str(dataset / "train.csv"), str(out), "--method", "dis", "--workers", "1")
    assert code == 1 and "4 videos: 0 extracted, 2 already cached (skipped), 2 failed" in stdout
    assert [p.stat().st_mtime_ns for p in cached] == mtimes

    (dataset / "train.csv").write_text("path,label\nleft/clip.mp4,left\nright/clip.mp4,right\n", encoding="utf-8")
    code, stdout, _ = run("extract", str(dataset / "train.csv"), str(out), "--method", "dis")
    assert code == 0 and "2 already cached" in stdout and not (out / "failures.csv").exists()


def test_limit_and_another_method(run, dataset, tmp_path) -> None:
    out = tmp_path / "flow"
    code, stdout, _ = run("extract", str(dataset / "train.csv"), str(out), "--method", "farneback", "--limit", "1", "--codec", "png", "-q")
    assert code == 0 and "1 videos: 1 extracted" in stdout and "(farneback, short side 256, png)" in stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.csv"], "missing.csv"),
        (["train.csv", "--method", "raft"], "unknown optical flow method 'raft'"),
        (["train.csv", "--format", "kinetics"], "--format kinetics needs --root"),
        (["train.csv", "--workers", "0"], "--workers must be at least 1"),
    ],
)
def test_user_errors_are_one_line_and_exit_2(run, dataset, tmp_path, args, message) -> None:
    code, _, stderr = run("extract", str(dataset / args[0]), str(tmp_path / "flow"), *args[1:])
    lines = stderr.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_help_has_an_example() -> None:
    from typer.testing import CliRunner

    from openvocab.cli import app

    result = CliRunner().invoke(app, ["flow", "extract", "--help"])
    assert result.exit_code == 0 and "openvocab flow extract" in result.output and "--short-side" in result.output
    assert "flow" in CliRunner().invoke(app, ["--help"]).output
