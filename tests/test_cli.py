"""The CLI: the main job, label bank and model commands, and the bad-input table (one line, no traceback)."""

from __future__ import annotations

import json
import subprocess
import sys
import wave

import numpy as np
import pytest

from openvocab.cli import main

LABELS = "playing guitar, yoga, dog barking"


@pytest.fixture
def run(monkeypatch, capsys, tiny_model_dir, tmp_path):
    """Run ``openvocab ARGS`` in-process; returns (exit code, stdout, stderr). --model/--label-bank default to test ones."""

    def call(*args: str, model: bool = True):
        argv = ["openvocab", *args]
        if model and args and args[0] in {"classify"}:
            argv += ["--model", str(tiny_model_dir), "--label-bank", str(tmp_path / "bank.sqlite")]
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as exc:
            main()
        out, err = capsys.readouterr()
        assert "Traceback" not in err and "Traceback" not in out
        return exc.value.code, out, err

    return call


def _error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith("error:")]


def _wav(path, seconds=0.5, rate=16000):
    samples = (np.sin(np.arange(int(seconds * rate)) * 0.05) * 20000).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return path


def test_classify_json_output(run, make_video):
    video = make_video("clip.mp4", num_frames=30)
    code, out, err = run("classify", str(video), "--labels", LABELS, "--format", "json", "--top-k", "2")
    assert code == 0, err
    data = json.loads(out)
    assert len(data) == 1 and data[0]["path"] == str(video) and len(data[0]["labels"]) == 2
    assert "RANDOM weights" in err  # the tiny model is honest about itself


def test_classify_folder_table_csv_and_output_file(run, make_video, tmp_path):
    make_video("dir/a.mp4", num_frames=20)
    make_video("dir/sub/b.mkv", num_frames=20)
    labels = tmp_path / "labels.txt"
    labels.write_text("# my labels\nyoga\nsurfing\n\n")
    code, out, err = run("classify", str(tmp_path / "dir"), "--labels-file", str(labels), "--timeline", "-q")
    assert code == 0, err
    assert "a.mp4" in out and "b.mkv" in out and "timeline" in out
    target = tmp_path / "out" / "results.csv"
    code, out, err = run("classify", str(tmp_path / "dir" / "*.mp4"), "--labels", LABELS, "--format", "csv", "-o", str(target))
    assert code == 0 and out == ""
    assert target.read_text().startswith("path,scope,start_s,end_s,rank,label,score")


def test_labels_add_list_export(run, tiny_model_dir, tmp_path):
    bank = str(tmp_path / "bank.sqlite")
    code, out, _ = run("labels", "add", "--labels", LABELS, "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "3 newly encoded" in out
    code, out, _ = run("labels", "add", "--labels", LABELS + ", surfing", "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "4 labels" in out and "1 newly encoded" in out
    code, out, err = run("labels", "list", "--label-bank", bank)
    assert code == 0 and len(out.strip().splitlines()) == 4 and "surfing" in out
    code, out, _ = run("labels", "export", str(tmp_path / "k.npz"), "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0
    data = np.load(tmp_path / "k.npz")
    assert data["embeddings"].shape == (4, 64)


def test_model_create_and_info(run, tmp_path):
    code, out, _ = run("model", "create", "--arch", "tiny", str(tmp_path / "m"))
    assert code == 0 and (tmp_path / "m" / "model.safetensors").is_file()
    code, out, _ = run("model", "info", str(tmp_path / "m"))
    assert code == 0 and "random weights: True" in out
    code, _, err = run("model", "create", "--arch", "vit-h-99", str(tmp_path / "m2"))
    assert code == 2 and "unknown architecture" in err


def _bad_inputs(tmp_path, make_video):
    zero = tmp_path / "zero.mp4"
    zero.write_bytes(b"")
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n")
    full = make_video("full.mp4", num_frames=60)
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(full.read_bytes()[: full.stat().st_size // 2])
    (tmp_path / "empty_dir").mkdir()
    return {
        "missing path": ([str(tmp_path / "nope.mp4")], 1, "no such file"),
        "directory with no videos": ([str(tmp_path / "empty_dir")], 1, "no videos"),
        "zero-byte file": ([str(zero)], 1, "zero.mp4"),
        "text file named .mp4": ([str(text)], 1, "notes.mp4"),
        "audio-only file": ([str(_wav(tmp_path / "tone.wav"))], 1, "no video stream"),
        "truncated mp4": ([str(truncated)], None, "truncated.mp4"),
    }


@pytest.mark.parametrize("case", ["missing path", "directory with no videos", "zero-byte file", "text file named .mp4", "audio-only file", "truncated mp4"])
def test_bad_video_inputs(run, make_video, tmp_path, case):
    paths, want_code, fragment = _bad_inputs(tmp_path, make_video)[case]
    code, out, err = run("classify", *paths, "--labels", LABELS)
    if want_code is None:  # a truncated file may still hold decodable frames: classified, or one clear error
        assert code in (0, 1)
        if code == 0:
            return
    else:
        assert code == want_code
    lines = _error_lines(err)
    assert len(lines) == 1 and fragment in lines[0], err


def test_batch_continues_past_bad_files(run, make_video, tmp_path):
    good = make_video("good.mp4", num_frames=20)
    bad = tmp_path / "bad.mp4"
    bad.write_text("garbage")
    code, out, err = run("classify", str(bad), str(good), str(tmp_path / "missing.avi"), "--labels", LABELS, "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert [d["error"] is None for d in data] == [False, True]
    assert len(_error_lines(err)) == 2 and "2 of 3 inputs failed; 1 classified" in err


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--labels", " , ,"], "empty label list"),
        ([], "no labels given"),
        (["--labels-file", "/nonexistent/labels.txt"], "labels.txt"),
        (["--labels", LABELS, "--views", "4y3"], "views"),
        (["--labels", LABELS, "--format", "xml"], "--format"),
        (["--labels", LABELS, "--frames", "0"], "frames"),
    ],
)
def test_bad_options_are_one_line(run, make_video, args, fragment):
    video = make_video("v.mp4", num_frames=10)
    code, out, err = run("classify", str(video), *args)
    assert code == 2
    lines = _error_lines(err)
    assert len(lines) == 1 and fragment in lines[0], err


def test_missing_model_is_one_line(run, make_video, tmp_path):
    video = make_video("v.mp4", num_frames=10)
    code, _, err = run("classify", str(video), "--labels", LABELS, "--model", str(tmp_path / "no_model"), model=False)
    assert code == 2 and len(_error_lines(err)) == 1 and "no_model" in err


def test_one_frame_duplicates_long_and_unicode(run, make_video):
    one = make_video("one frame.mp4", num_frames=1)
    uni = make_video("vidéo été/clip 1.mp4", num_frames=12)
    long_label = "very long label " * 125  # 2,000 characters
    code, out, err = run("classify", str(one), str(uni), "--labels", f"yoga, Yoga, café crème, 跳舞, {long_label}", "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert [d["path"] for d in data] == [str(one), str(uni)]
    assert {ls["label"] for ls in data[1]["labels"]} >= {"café crème", "跳舞", "yoga"}
    assert "duplicate label 'Yoga' ignored" in err and "truncated" in err


def test_entry_point_runs_as_a_process(tiny_model_dir, make_video, tmp_path):
    video = make_video("v.mp4", num_frames=40)  # 8 TSN segments of 5 frames: one sampled frame per window
    cmd = [sys.executable, "-m", "openvocab.cli", "classify", str(video), "--labels", LABELS, "--model", str(tiny_model_dir), "--label-bank", str(tmp_path / "b.sqlite"), "--format", "csv", "-q"]
    ok = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert len(ok.stdout.strip().splitlines()) == 1 + 3 + 3 * 8  # header, clip ranks, segment ranks
    bad = subprocess.run(cmd[:4] + [str(tmp_path / "missing.mp4")] + cmd[5:], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().splitlines()[0].startswith("error:")


@pytest.mark.parametrize("args, fragment", [(["classify", "--bogus", "x"], "No such option"), (["classify"], "Missing"), (["nonsense"], "No such command")])
def test_usage_errors_are_short_and_exit_2(run, args, fragment):
    code, out, err = run(*args, model=False)
    assert code == 2 and fragment in err and "Traceback" not in err and len(err.strip().splitlines()) <= 8
