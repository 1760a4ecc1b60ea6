"""Input discovery: files, directories (recursive, frame folders), glob patterns, problems, de-duplication."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from openvocab.io.discover import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    expand_inputs,
    is_frame_folder,
    list_frame_images,
    natural_sort_key,
)


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "data set"
    _touch(root / "clip_10.mp4")
    _touch(root / "clip_2.mkv")
    _touch(root / "readme.txt")
    _touch(root / ".hidden.mp4")
    _touch(root / "sub" / "été vidéo.webm")
    _touch(root / "sub" / "deeper" / "a.avi")
    for i in (1, 2, 10):
        _touch(root / "frames" / "vid_a" / f"img_{i}.jpg")
    _touch(root / "empty_sub" / "notes.md")
    return root


def test_suffix_sets() -> None:
    assert {".mp4", ".avi", ".mkv", ".webm", ".mov", ".gif"} <= VIDEO_SUFFIXES
    assert {".jpg", ".jpeg", ".png", ".bmp", ".webp"} <= IMAGE_SUFFIXES
    assert not VIDEO_SUFFIXES & IMAGE_SUFFIXES


def test_natural_sort() -> None:
    names = ["img_10.jpg", "img_2.jpg", "IMG_1.jpg", "img_02b.jpg"]
    assert sorted(names, key=natural_sort_key) == ["IMG_1.jpg", "img_2.jpg", "img_02b.jpg", "img_10.jpg"]


def test_directory_is_searched_recursively(tree: Path) -> None:
    videos, problems = expand_inputs([str(tree)])
    rel = [p.relative_to(tree).as_posix() for p in videos]
    assert rel == ["clip_2.mkv", "clip_10.mp4", "frames/vid_a", "sub/deeper/a.avi", "sub/été vidéo.webm"]
    assert problems == []


def test_frame_folder_is_one_video(tree: Path) -> None:
    folder = tree / "frames" / "vid_a"
    assert is_frame_folder(folder)
    assert not is_frame_folder(tree)
    assert [p.name for p in list_frame_images(folder)] == ["img_1.jpg", "img_2.jpg", "img_10.jpg"]
    videos, problems = expand_inputs([folder])
    assert videos == [folder] and problems == []


def test_files_are_kept_whatever_the_suffix(tree: Path) -> None:
    odd = tree / "readme.txt"
    videos, problems = expand_inputs([odd, tree / "sub" / "été vidéo.webm"])
    assert videos == [odd, tree / "sub" / "été vidéo.webm"] and problems == []


def test_problems_for_missing_and_empty(tree: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    empty = tree / "empty_sub"
    videos, problems = expand_inputs([str(missing), str(empty), str(tree / "clip_2.mkv")])
    assert videos == [tree / "clip_2.mkv"]
    assert problems == [
        (str(missing), "no such file or directory"),
        (str(empty), "no videos found in directory"),
    ]
    assert all("\n" not in reason for _, reason in problems)


def test_glob_patterns(tree: Path) -> None:
    videos, problems = expand_inputs([str(tree / "*.mp4"), str(tree / "**" / "*.avi")])
    assert [p.name for p in videos] == ["clip_10.mp4", "a.avi"] and problems == []
    videos, problems = expand_inputs([str(tree / "sub" / "*")])  # dirs expand, any video suffix
    assert [p.name for p in videos] == ["a.avi", "été vidéo.webm"]
    videos, problems = expand_inputs([str(tree / "*.txt")])  # an explicit suffix is honoured
    assert [p.name for p in videos] == ["readme.txt"]
    videos, problems = expand_inputs([str(tree / "*.mov")])
    assert videos == [] and problems == [(str(tree / "*.mov"), "no videos match this pattern")]


def test_deduplicated_in_first_seen_order(tree: Path) -> None:
    clip = tree / "clip_10.mp4"
    relative = os.path.relpath(clip)
    videos, problems = expand_inputs([str(clip), str(tree), relative, str(tree / "*.mp4")])
    assert videos[0] == clip
    assert len(videos) == len({p.resolve() for p in videos}) == 5
    assert problems == []


def test_single_string_and_empty_path(tree: Path) -> None:
    videos, _ = expand_inputs(str(tree / "clip_2.mkv"))  # a bare string is one path, not characters
    assert videos == [tree / "clip_2.mkv"]
    _, problems = expand_inputs([""])
    assert problems == [("", "empty path")]


# ------------------------------------------------------------------------------------------------- hostile trees
def _finishes(call, seconds: float = 60.0):
    """Run ``call`` in a thread: its result, or a failure if it is still running after ``seconds`` (a hang or a
    2**40-path walk, not a speed check)."""
    import threading

    box: dict = {}
    thread = threading.Thread(target=lambda: box.setdefault("result", call()), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "did not finish: loops through symbolic links or a blocking open"
    return box["result"]


posix_only = pytest.mark.skipif(os.name != "posix", reason="symbolic links and FIFOs as on POSIX")


@posix_only
def test_directory_symlink_loops_end_and_find_each_video_once(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    _touch(loop / "a.mp4")
    _touch(loop / "sub" / "b.mkv")
    os.symlink(".", loop / "m1")
    os.symlink(".", loop / "m2")
    os.symlink("..", loop / "sub" / "up")
    os.symlink(str(loop / "sub"), loop / "z_link_to_sub")  # a second way into sub: searched once
    videos, problems = _finishes(lambda: expand_inputs([loop]))
    assert [p.relative_to(loop).as_posix() for p in videos] == ["a.mp4", "sub/b.mkv"] and problems == []
    videos, problems = _finishes(lambda: expand_inputs([str(loop / "**" / "*.mp4"), str(loop / "**" / "*.mkv")]))
    assert [p.relative_to(loop).as_posix() for p in videos] == ["a.mp4", "sub/b.mkv"] and problems == []
    videos, _ = _finishes(lambda: expand_inputs([str(loop / "**")]))
    assert sorted(p.name for p in videos) == ["a.mp4", "b.mkv"]
    videos, _ = _finishes(lambda: expand_inputs([str(loop / "*" / "*.mp4")]))  # m1/a.mp4 and m2/a.mp4: one file
    assert len(videos) == 1 and videos[0].resolve() == (loop / "a.mp4").resolve()


@posix_only
def test_broken_links_never_reject_a_folder(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    _touch(root / "good.mp4")
    os.symlink("missing.mp4", root / "dangling.mp4")
    os.symlink("cycle_b.mkv", root / "cycle_a.mkv")
    os.symlink("cycle_a.mkv", root / "cycle_b.mkv")
    os.symlink("missing_folder", root / "old_folder")  # no video name: nothing to report
    os.symlink("self", root / "self")
    videos, problems = _finishes(lambda: expand_inputs([root]))
    assert videos == [root / "good.mp4"]
    assert problems == [
        (str(root / "cycle_a.mkv"), "symbolic link loop (the links point at each other)"),
        (str(root / "cycle_b.mkv"), "symbolic link loop (the links point at each other)"),
        (str(root / "dangling.mp4"), "broken symbolic link (its target missing.mp4 does not exist)"),
    ]
    _, direct = expand_inputs([root / "dangling.mp4", root / "self"])
    assert [why.split(" (")[0] for _, why in direct] == ["broken symbolic link", "symbolic link loop"]
    _, matched = expand_inputs([str(root / "*.mp4")])
    assert matched == [(str(root / "dangling.mp4"), "broken symbolic link (its target missing.mp4 does not exist)")]


@posix_only
def test_fifos_and_devices_are_never_opened(tmp_path: Path) -> None:
    root = tmp_path / "clips"
    _touch(root / "good.mp4")
    os.mkfifo(root / "pipe.mp4")
    os.mkfifo(root / "pipe.log")  # no video name: ignored in a folder
    videos, problems = _finishes(lambda: expand_inputs([root, root / "pipe.log", "/dev/null"]))
    assert videos == [root / "good.mp4"]
    assert problems == [
        (str(root / "pipe.mp4"), "not a regular file (a FIFO)"),
        (str(root / "pipe.log"), "not a regular file (a FIFO)"),
        ("/dev/null", "not a regular file (a character device)"),
    ]
    pattern = str(root / "pipe.*")
    _, matched = _finishes(lambda: expand_inputs([pattern]))
    assert matched == [(str(root / "pipe.mp4"), "not a regular file (a FIFO)"), (pattern, "no videos match this pattern")]


def test_frame_folder_with_a_link_to_itself_is_still_one_video(tmp_path: Path) -> None:
    folder = tmp_path / "frames"
    for i in range(3):
        _touch(folder / f"{i}.jpg")
    if os.name == "posix":
        os.symlink(".", folder / "again")
    assert is_frame_folder(folder)
    assert _finishes(lambda: expand_inputs([folder])) == ([folder], [])


def test_dash_unicode_and_bracket_names(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("-dash.mp4", "--long.mkv", "vidéo 日本語 ✓.webm", "clips[1].mp4", "x y.avi"):
        _touch(tmp_path / name)
    videos, problems = expand_inputs(["-dash.mp4", "--long.mkv", "vidéo 日本語 ✓.webm", "clips[1].mp4"])
    assert [str(v) for v in videos] == ["-dash.mp4", "--long.mkv", "vidéo 日本語 ✓.webm", "clips[1].mp4"] and problems == []
    videos, _ = expand_inputs(["clips[[]1].mp4", "*日本語*", "-*"])  # glob escapes, unicode, a dash pattern
    assert [str(v) for v in videos] == ["clips[1].mp4", "vidéo 日本語 ✓.webm", "--long.mkv", "-dash.mp4"]
    videos, _ = expand_inputs(["."])
    assert sorted(str(v) for v in videos) == sorted(["-dash.mp4", "--long.mkv", "vidéo 日本語 ✓.webm", "clips[1].mp4", "x y.avi"])


def test_glob_hides_hidden_names_like_python_glob(tmp_path: Path) -> None:
    import glob

    _touch(tmp_path / ".hidden" / "a.mp4")
    _touch(tmp_path / "seen" / ".b.mp4")
    _touch(tmp_path / "seen" / "c.mp4")
    for pattern in ("**/*.mp4", "*/*.mp4", ".*/*.mp4", "seen/.*.mp4", "**"):
        full = str(tmp_path / pattern)
        ours, _ = expand_inputs([full])
        theirs = [Path(p) for p in glob.glob(full, recursive=True) if Path(p).is_file()]
        assert sorted(ours) == sorted(theirs), pattern
