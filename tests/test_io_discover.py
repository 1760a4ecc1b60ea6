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
