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
    code, out, err = run("labels", "list", "--label-bank", bank, "--format", "tsv")
    lines = out.strip().splitlines()
    assert code == 0 and lines[0].split("\t") == ["model", "fingerprint", "prompts", "dim", "label", "added"]
    assert len(lines) == 5 and "surfing" in out and "4 labels of 1 model" in err
    assert all(line.split("\t")[0] == str(tiny_model_dir.resolve()) for line in lines[1:])  # the model is named
    code, out, _ = run("labels", "list", "--label-bank", bank, "--format", "json")
    rows = json.loads(out)
    assert code == 0 and len(rows) == 4 and {r["label"] for r in rows} == {"playing guitar", "yoga", "dog barking", "surfing"}
    assert rows[0]["model"] == str(tiny_model_dir.resolve()) and rows[0]["dim"] == 64
    code, out, _ = run("labels", "list", "--label-bank", bank)
    assert code == 0 and "fingerprint" in out and "surfing" in out  # a table with a header
    code, out, _ = run("labels", "export", str(tmp_path / "k.npz"), "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0
    data = np.load(tmp_path / "k.npz")
    assert data["embeddings"].shape == (4, 64)


def test_labels_export_selects_the_vocabulary_asked_for(run, tiny_model_dir, tmp_path):
    bank = str(tmp_path / "bank.sqlite")
    assert run("labels", "add", "--labels", LABELS, "--model", str(tiny_model_dir), "--label-bank", bank)[0] == 0
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("yoga\nsurfing\n")
    code, out, err = run("labels", "export", str(tmp_path / "v.json"), "--labels-file", str(vocab), "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "exported 2 labels" in out and "1 newly encoded" in out, err
    data = json.loads((tmp_path / "v.json").read_text())
    assert data["labels"] == ["yoga", "surfing"] and len(data["embeddings"]) == 2
    code, out, _ = run("labels", "export", str(tmp_path / "all.npz"), "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and np.load(tmp_path / "all.npz")["embeddings"].shape == (4, 64)  # no selection: everything cached


def test_labels_remove_and_clear_one_model_of_two(run, tiny_model_dir, tmp_path):
    from openvocab.text.label_bank import LabelBank

    other = tmp_path / "other_model"
    assert run("model", "create", "--arch", "tiny", "--seed", "1", str(other))[0] == 0
    bank = str(tmp_path / "bank.sqlite")
    for model, labels in ((tiny_model_dir, LABELS), (other, "yoga, surfing")):
        assert run("labels", "add", "--labels", labels, "--model", str(model), "--label-bank", bank)[0] == 0
    with LabelBank(bank) as b:
        names = b.model_names()
        fp_a, fp_b = (fp for fp, n in sorted(names.items(), key=lambda kv: kv[1] != [str(tiny_model_dir.resolve())]))
        assert fp_a != fp_b and b.count(fingerprint=fp_a) == 3 and b.count(fingerprint=fp_b) == 2

    code, out, err = run("labels", "remove", "yoga", "juggling", "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "removed 1 label of" in out and "yoga" in out and "juggling" in err, err
    code, out, err = run("labels", "remove", "surfing", "--fingerprint", fp_b, "--prompts", "ensemble", "--label-bank", bank)
    assert code == 0 and "removed 1 label" in out
    with LabelBank(bank) as b:
        assert {r.label for r in b.list(fingerprint=fp_a)} == {"playing guitar", "dog barking"}
        assert [r.label for r in b.list(fingerprint=fp_b)] == ["yoga"]

    code, out, err = run("labels", "clear", "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "removed 2 labels of " + str(tiny_model_dir.resolve()) in out and "2 embeddings removed" in err
    with LabelBank(bank) as b:
        assert b.count(fingerprint=fp_a) == 0 and b.count(fingerprint=fp_b) == 1  # the other model stays
    code, out, _ = run("labels", "clear", "--model", str(tiny_model_dir), "--label-bank", bank)
    assert code == 0 and "nothing to remove" in out
    code, out, err = run("labels", "clear", "--all", "--label-bank", bank)
    assert code == 0 and "removed 1 label of " + str(other.resolve()) in out
    with LabelBank(bank) as b:
        assert b.count() == 0
    for args in (["clear"], ["clear", "--all", "--model", str(other)], ["remove", "yoga"]):
        code, _, err = run("labels", *args, "--label-bank", bank)
        assert code == 2 and len(_error_lines(err)) == 1, err


def test_label_bank_message_names_existing_commands():
    """The label bank tells users to run `openvocab labels clear`: that command must exist."""
    from typer.testing import CliRunner

    from openvocab.cli import app

    assert CliRunner().invoke(app, ["labels", "clear", "--help"]).exit_code == 0
    assert CliRunner().invoke(app, ["labels", "remove", "--help"]).exit_code == 0


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


def test_text_file_is_refused_and_the_batch_continues(run, make_video, tmp_path):
    good = make_video("good.mp4", num_frames=20)
    notes = tmp_path / "notes.txt"
    notes.write_text("These are my notes about the video.\n" * 50)  # FFmpeg's tty demuxer would "play" this
    code, out, err = run("classify", str(notes), str(good), "--labels", LABELS, "--format", "json")
    assert code == 1
    assert [d["error"] is None for d in json.loads(out)] == [False, True]
    lines = _error_lines(err)
    assert len(lines) == 1 and lines[0].startswith(f"error: {notes}: not a video"), err


def test_dense_timeline_with_empty_segments_says_why(run, make_video):
    video = make_video("long.mp4", num_frames=100)  # 4 s at 25 fps; 8 frames at stride 2 cover 0.64 s
    code, out, err = run("classify", str(video), "--labels", LABELS, "--sampler", "dense", "--stride", "2", "--timeline")
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "the timeline has" in line]
    assert len(warnings) == 1 and "the timeline has 2 of 8 segments" in warnings[0] and "dense sampling" in warnings[0], err
    assert warnings[0].startswith(f"warning: {video}:")
    code, out, err = run("classify", str(video), "--labels", LABELS, "--sampler", "dense", "--stride", "2", "--format", "json")
    assert code == 0 and json.loads(out)[0]["warnings"] == [warnings[0].removeprefix("warning: ")], "the JSON carries the warning that was printed"
    code, out, err = run("classify", str(video), "--labels", LABELS, "--timeline")  # uniform: every segment filled
    assert code == 0 and "the timeline has" not in err


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
    cmd = [
        sys.executable,
        "-m",
        "openvocab.cli",
        "classify",
        str(video),
        "--labels",
        LABELS,
        "--model",
        str(tiny_model_dir),
        "--label-bank",
        str(tmp_path / "b.sqlite"),
        "--format",
        "csv",
        "-q",
    ]
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


def test_import_is_light_and_help_answers_without_torch():
    """`import openvocab.cli`, `--help` of every command group and usage errors never load torch & co."""
    argvs = [
        [],
        ["--help"],
        ["classify", "--help"],
        ["classify"],
        ["clasify"],
        ["labels", "--help"],
        ["labels", "list", "--help"],
        ["labels", "remove", "--help"],
        ["labels", "clear", "--help"],
        ["model", "--help"],
        ["data", "--help"],
        ["train", "--help"],
        ["evaluate", "--help"],
        ["features", "--help"],
        ["features", "train-head", "--help"],
    ]
    script = (
        "import json, sys\n"
        "import openvocab.cli\n"
        "heavy = ('torch', 'transformers', 'numpy', 'av', 'cv2', 'sklearn')\n"
        "assert not [m for m in heavy if m in sys.modules], [m for m in heavy if m in sys.modules]\n"
        "codes = []\n"
        "for argv in json.loads(sys.argv[1]):\n"
        "    sys.argv = ['openvocab', *argv]\n"
        "    try:\n"
        "        openvocab.cli.main()\n"
        "    except SystemExit as exc:\n"
        "        codes.append(exc.code)\n"
        "print(json.dumps({'codes': codes, 'heavy': [m for m in heavy if m in sys.modules]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script, json.dumps(argvs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["heavy"] == []
    # no arguments: the help (exit 0 or click's 2 for a group without a command); --help: 0; usage errors: 2
    assert report["codes"][1:] == [0, 0, 2, 2] + [0] * (len(argvs) - 5), report
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "group",
    [
        ["classify"],
        ["labels"],
        ["labels", "add"],
        ["labels", "list"],
        ["labels", "export"],
        ["labels", "remove"],
        ["labels", "clear"],
        ["model"],
        ["model", "create"],
        ["model", "export"],
        ["model", "convert"],
        ["model", "info"],
        ["data"],
        ["data", "synth"],
        ["data", "check"],
        ["train"],
        ["evaluate"],
        ["features"],
        ["features", "extract"],
        ["features", "train-head"],
    ],
)
def test_help_of_every_command(run, group):
    code, out, err = run(*group, "--help", model=False)
    assert code == 0 and "Usage:" in out, err
    if len(group) > 1 or group in (["classify"], ["train"], ["evaluate"]):  # every command shows an example
        assert "Example" in out, out
