"""Outputs a user can trust (issue 10 items 4 and 7): ``-o`` never turns a FIFO, a device or a symbolic link into a
regular file, keeps a file's mode, honours the umask, ``-o -`` is stdout; ``classify -o results.jsonl`` streams one
line per finished video, refuses to mix into an existing file, and ``--resume`` after a SIGKILL ends with every video
exactly once and no half-written line."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from openvocab.atomic import atomic_path, atomic_write
from openvocab.cli.common import write_output

LABELS = "red circle, blue square"


def test_dash_is_stdout(capsys):
    write_output('{"a": 1}', Path("-"))
    assert capsys.readouterr().out == '{"a": 1}\n'
    assert not Path("-").exists()


def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_output("hello", fifo)
    reader.join(timeout=10)
    assert got == [b"hello\n"]
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    with pytest.raises(OSError, match="not a regular file"):
        with atomic_path(fifo):
            pass


def test_a_device_is_written_through_not_replaced():
    before = os.stat("/dev/null")
    atomic_write("/dev/null", "x")
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and (after.st_ino, after.st_rdev) == (before.st_ino, before.st_rdev)


def test_a_symlink_is_followed_and_kept(tmp_path):
    real = tmp_path / "real.json"
    real.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(real)
    write_output("new", link)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert real.read_text() == "new\n"


def test_modes_existing_kept_new_from_umask(tmp_path):
    kept = tmp_path / "kept.csv"
    kept.write_text("x")
    os.chmod(kept, 0o640)
    atomic_write(kept, "y")
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o640 and kept.read_text() == "y"
    old = os.umask(0o027)
    try:
        atomic_write(tmp_path / "new.csv", "z")
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.csv").st_mode) == 0o640  # 0o666 & ~0o027


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> Path:
    from openvocab.data.synth import SynthSpec, generate

    spec = SynthSpec(colours=("red", "blue"), shapes=("circle", "square"), label_factors=("colour", "shape"), size=32, frames=4, clips_per_class=6)
    root = generate(spec, tmp_path_factory.mktemp("batch") / "synth", seed=0)
    return root / "videos"


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_jsonl_refuses_to_mix_and_resume_repairs_a_cut_line(cli, clips, tiny_model_dir, tmp_path):
    out = tmp_path / "results.jsonl"
    videos = sorted(str(p) for p in clips.rglob("*.mp4"))
    code, _, err = cli("classify", str(clips), "--labels", LABELS, "--model", str(tiny_model_dir), "-o", str(out), "-q", "--frames", "2")
    assert code == 0, err
    rows = _lines(out)
    assert sorted(r["path"] for r in rows) == videos and all(r["labels"] for r in rows)
    before = out.read_bytes()
    code, _, err = cli("classify", str(clips), "--labels", LABELS, "--model", str(tiny_model_dir), "-o", str(out), "-q", "--frames", "2")
    assert code == 2 and "--resume" in err and out.read_bytes() == before  # nothing mixed, nothing overwritten
    cut = before[: before.rfind(b"\n", 0, len(before) - 1) + 1] + before[before.rfind(b"\n", 0, len(before) - 1) + 1 :][:40]
    out.write_bytes(cut)  # the last line half-written, as a kill mid-write leaves it
    code, _, err = cli("classify", str(clips), "--labels", LABELS, "--model", str(tiny_model_dir), "-o", str(out), "--resume", "--frames", "2")
    assert code == 0, err
    assert "half-written" in err and f"{len(videos) - 1} video(s) already there, 1 to do" in err
    assert sorted(r["path"] for r in _lines(out)) == videos
    code, _, err = cli("classify", str(clips), "--labels", LABELS, "--model", str(tiny_model_dir), "--resume", "-q")
    assert code == 2 and "--resume continues a JSON-lines output" in err


def test_sigkill_mid_batch_then_resume_gives_every_video_exactly_once(clips, tiny_model_dir, tmp_path):
    out = tmp_path / "killed.jsonl"
    videos = sorted(str(p) for p in clips.rglob("*.mp4"))
    args = [sys.executable, "-m", "openvocab.cli", "classify", str(clips), "--labels", LABELS, "--model", str(tiny_model_dir), "-o", str(out), "-q"]
    proc = subprocess.Popen(args + ["--frames", "8", "--views", "2x3"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None and not (out.exists() and out.read_bytes().count(b"\n") >= 1):
        time.sleep(0.02)
    killed = proc.poll() is None
    if killed:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    first = out.read_bytes().count(b"\n") if out.exists() else 0
    assert first >= 1, proc.stderr.read().decode()
    loud = [a for a in args if a != "-q"]  # the resume says what it skipped
    done = subprocess.run(loud + ["--frames", "8", "--views", "2x3", "--resume"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    paths = [r["path"] for r in _lines(out)]
    assert sorted(paths) == videos and len(paths) == len(set(paths))
    if killed:  # the usual case: the batch really was cut
        assert first < len(videos) and f"{first} video(s) already there" in done.stderr
