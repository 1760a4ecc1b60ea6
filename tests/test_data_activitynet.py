"""ActivityNet v1.3: the annotation-JSON reader (segments and videos modes), its problems, and its wiring into
recipes (data.format=activitynet).

The database is a small fake ``activity_net.v1-3.min.json`` in tmp_path; videos are empty placeholders (the
reader only checks existence) except one real frame-numbered clip that a segment record decodes through
VideoClipDataset, and one folder of (empty) .jpg frames.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from openvocab.data.dataset import VideoClipDataset
from openvocab.data.manifests import Manifest, read_activitynet
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec
from openvocab.train.config import DataConfig, load_config
from openvocab.train.data_setup import load_splits, read_split


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _entry(subset: str, duration: float, *annotations: tuple[float, float, str]) -> dict:
    return {
        "subset": subset,
        "duration": duration,
        "url": "https://www.youtube.com/watch?v=x",
        "resolution": "640x360",
        "annotations": [{"segment": [s, e], "label": label} for s, e, label in annotations],
    }


# Database order = the position reported as ``row`` (1-based).
DATABASE = {
    "vidA": _entry("training", 120.0, (10, 20, "Playing guitar"), (30, 50, "Playing guitar"), (60, 70, "Surfing")),
    "vidB": _entry("validation", 60.0, (5, 15, "Surfing")),
    "vidC": _entry("training", 30.0, (0, 10, "Archery"), (12, 30.8, "Archery")),  # 30.8 s: within the 1 s slack
    "vidMissing": _entry("training", 30.0, (1, 2, "Surfing")),
    "vidBadSeg": _entry("training", 40.0, (10, 5, "Surfing"), (-1, 3, "Surfing"), (30, 45, "Surfing"), (1, 2, "Surfing")),
    "vidEmpty": _entry("training", 50.0),
    "vidTest": {"subset": "testing", "duration": 90.0, "url": "", "resolution": "", "annotations": []},
    "vidFrames": _entry("validation", 20.0, (2, 8, "Zumba")),
    "vidReal": _entry("training", 4.0, (2.0, 3.0, "Playing guitar")),
}
CLASSES = ["Archery", "Playing guitar", "Surfing", "Zumba"]
POS = {video_id: n for n, video_id in enumerate(DATABASE, start=1)}


@pytest.fixture
def anet(tmp_path: Path, make_video) -> tuple[Path, Path]:
    """(annotation JSON, video root) with every naming the reader accepts, in sub-folders."""
    root = tmp_path / "videos"
    _touch(root / "train" / "v_vidA.mp4")
    _touch(root / "train" / "v_vidAx.mp4")  # another id extending "vidA": must not be taken for it
    _touch(root / "vidB.mkv")  # no "v_" prefix
    _touch(root / "train" / "deeper" / "v_vidC.webm")
    _touch(root / "train" / "v_vidBadSeg.mp4")
    _touch(root / "train" / "v_vidEmpty.mp4")
    _touch(root / "test" / "v_vidTest.webm")
    for i in range(3):
        _touch(root / "frames" / "v_vidFrames" / f"img_{i:05d}.jpg")
    make_video("videos/train/v_vidReal.mp4", num_frames=100, size=(80, 80), fps=25)
    path = tmp_path / "activity_net.v1-3.min.json"
    path.write_text(json.dumps({"version": "VERSION 1.3", "taxonomy": [], "database": DATABASE}), encoding="utf-8")
    return path, root


def _names(manifest: Manifest) -> list[tuple[str, tuple[str, ...], float | None, float | None]]:
    return [(Path(r.path).name, tuple(manifest.classes[i] for i in r.labels), r.start_s, r.end_s) for r in manifest.records]


def _problems(manifest: Manifest) -> list[tuple[int | None, str]]:
    return [(p.row, p.kind) for p in manifest.problems]


# ---------------------------------------------------------------------- segments mode
def test_segments_mode_one_record_per_annotation(anet) -> None:
    path, root = anet
    m = read_activitynet(path, video_root=root, subset="training")
    assert m.classes == CLASSES  # every subset's labels, sorted
    assert _names(m) == [
        ("v_vidA.mp4", ("Playing guitar",), 10.0, 20.0),
        ("v_vidA.mp4", ("Playing guitar",), 30.0, 50.0),
        ("v_vidA.mp4", ("Surfing",), 60.0, 70.0),
        ("v_vidC.webm", ("Archery",), 0.0, 10.0),
        ("v_vidC.webm", ("Archery",), 12.0, 30.8),
        ("v_vidBadSeg.mp4", ("Surfing",), 1.0, 2.0),  # its good annotation survives its bad ones
        ("v_vidReal.mp4", ("Playing guitar",), 2.0, 3.0),
    ]
    assert [r.row for r in m.records] == [1, 1, 1, 3, 3, 5, 9]
    assert all(Path(r.path).is_absolute() and Path(r.path).is_file() for r in m.records)
    assert m.records[0].path == str(root.absolute() / "train" / "v_vidA.mp4")
    assert m.summary() == ("activitynet training: 7 videos, 4 classes, 5 rows skipped (3 bad time ranges, 1 missing file, 1 missing label)")


def test_videos_mode_one_multilabel_record_per_video(anet) -> None:
    path, root = anet
    m = read_activitynet(path, video_root=root, subset="training", mode="videos")
    assert m.classes == CLASSES
    assert _names(m) == [
        ("v_vidA.mp4", ("Playing guitar", "Surfing"), None, None),  # distinct labels, sorted, no window
        ("v_vidC.webm", ("Archery",), None, None),
        ("v_vidReal.mp4", ("Playing guitar",), None, None),
    ]
    assert [r.row for r in m.records] == [1, 3, 9]
    # a bad annotation skips the whole video: its label set would be incomplete
    assert _problems(m) == [
        (POS["vidMissing"], "missing file"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidEmpty"], "missing label"),
    ]
    assert m.source == "activitynet training videos"


def test_subset_filtering_and_shared_vocabulary(anet) -> None:
    path, root = anet
    train = read_activitynet(path, video_root=root, subset="training")
    val = read_activitynet(path, video_root=root, subset="validation")
    assert val.classes == train.classes == CLASSES  # "Zumba" is only in validation, "Archery" only in training
    assert _names(val) == [("vidB.mkv", ("Surfing",), 5.0, 15.0), ("v_vidFrames", ("Zumba",), 2.0, 8.0)]
    assert Path(val.records[1].path).is_dir()  # a frame folder is a video
    assert [r.row for r in val.records] == [POS["vidB"], POS["vidFrames"]]
    assert val.problems == []
    assert {Path(r.path).name for r in train.records}.isdisjoint(Path(r.path).name for r in val.records)


def test_testing_subset_gives_unlabelled_records(anet) -> None:
    path, root = anet
    for mode in ("segments", "videos"):
        m = read_activitynet(path, video_root=root, subset="testing", mode=mode)
        assert _names(m) == [("v_vidTest.webm", (), None, None)]
        assert m.records[0].row == POS["vidTest"]
        assert m.problems == []
        assert m.classes == CLASSES


# ---------------------------------------------------------------------- problems
def test_each_problem_names_position_and_video_id(anet) -> None:
    path, root = anet
    m = read_activitynet(path, video_root=root, subset="training")
    assert _problems(m) == [
        (POS["vidMissing"], "missing file"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidBadSeg"], "bad time range"),
        (POS["vidEmpty"], "missing label"),
    ]
    messages = [str(p) for p in m.problems]
    assert all(p.source == str(path) for p in m.problems)
    assert messages[0].startswith(f"{path}:4: missing file") and "vidMissing" in messages[0]
    assert "annotation 1 of video vidBadSeg" in messages[1] and "end 5 s is not after start 10 s" in messages[1]
    assert "annotation 2 of video vidBadSeg" in messages[2] and ">= 0" in messages[2]
    assert "annotation 3 of video vidBadSeg" in messages[3] and "past the video's duration 40 s" in messages[3]
    assert messages[4] == f"{path}:6: missing label: video vidEmpty has no annotations"


def test_unknown_label_with_a_fixed_vocabulary(anet) -> None:
    path, root = anet
    m = read_activitynet(path, video_root=root, subset="training", classes=["surfing", "Playing Guitar"])
    assert m.classes == ["surfing", "Playing Guitar"]  # the given order defines the indices; names match loosely
    assert [(Path(r.path).name, r.labels) for r in m.records] == [
        ("v_vidA.mp4", (1,)),
        ("v_vidA.mp4", (1,)),
        ("v_vidA.mp4", (0,)),
        ("v_vidBadSeg.mp4", (0,)),
        ("v_vidReal.mp4", (1,)),
    ]
    unknown = [p for p in m.problems if p.kind == "unknown label"]
    assert [p.row for p in unknown] == [POS["vidC"], POS["vidC"]]
    assert "unknown label 'Archery'" in unknown[0].message and "video vidC" in unknown[0].message
    videos = read_activitynet(path, video_root=root, subset="training", mode="videos", classes=["Surfing"])
    assert [Path(r.path).name for r in videos.records] == []  # vidA also has "Playing guitar": skipped whole


def test_malformed_entries_are_problems_not_errors(tmp_path: Path) -> None:
    root = tmp_path / "v"
    for name in ("a", "b", "c", "d", "e"):
        _touch(root / f"v_{name}.mp4")
    database = {
        "a": "not an object",
        "b": {"subset": "training", "duration": 10, "annotations": "nope"},
        "c": {"subset": "training", "duration": "long", "annotations": [{"segment": [1, 2], "label": "x"}]},
        "d": {"subset": "training", "duration": 10, "annotations": [{"segment": [1], "label": "x"}, "junk"]},
        "e": {
            "subset": "training",
            "annotations": [{"segment": [1, 2], "label": " "}, {"segment": [1, 500], "label": "x"}],
        },
    }
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"database": database}), encoding="utf-8")
    m = read_activitynet(path, video_root=root)
    assert _problems(m) == [
        (1, "malformed row"),
        (2, "malformed row"),
        (3, "malformed row"),
        (4, "bad time range"),
        (4, "malformed row"),
        (5, "missing label"),
    ]
    assert _names(m) == [("v_e.mp4", ("x",), 1.0, 500.0)]  # no duration: no upper bound to check


def test_unreadable_files_and_bad_arguments_raise(tmp_path: Path, anet) -> None:
    path, root = anet
    with pytest.raises(InputError, match="not found"):
        read_activitynet(tmp_path / "nope.json", video_root=root)
    bad = tmp_path / "bad.json"
    bad.write_text("{not json", encoding="utf-8")
    with pytest.raises(InputError, match="not valid JSON"):
        read_activitynet(bad, video_root=root)
    bad.write_text(json.dumps({"version": "1.3", "taxonomy": []}), encoding="utf-8")
    with pytest.raises(InputError, match="no 'database'"):
        read_activitynet(bad, video_root=root)
    with pytest.raises(InputError, match="video root is not a directory"):
        read_activitynet(path, video_root=tmp_path / "missing")
    with pytest.raises(InputError, match="subset must be"):
        read_activitynet(path, video_root=root, subset="train")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="mode must be"):
        read_activitynet(path, video_root=root, mode="clips")  # type: ignore[arg-type]


def test_without_checking_files(anet, tmp_path: Path) -> None:
    path, _ = anet
    m = read_activitynet(path, video_root=tmp_path / "not-there", subset="training", check_files=False)
    assert len(m.records) == 8  # vidMissing now counts: nothing is looked up
    assert m.records[0].path == str((tmp_path / "not-there").absolute() / "v_vidA.mp4")
    assert _problems(m) == [(POS["vidBadSeg"], "bad time range")] * 3 + [(POS["vidEmpty"], "missing label")]


# ---------------------------------------------------------------------- decoding a segment
def test_segment_record_decodes_its_window(anet, frame_code) -> None:
    path, root = anet
    m = read_activitynet(path, video_root=root, subset="training")
    record = next(r for r in m.records if Path(r.path).name == "v_vidReal.mp4")
    assert (record.start_s, record.end_s) == (2.0, 3.0)  # frames 50..74 of the 25 fps clip
    default = VideoClipDataset([record], sampler=SamplerSpec(frames=5))
    clip = replace(default.clip, size=64, resize_short_side=64)  # the dataset's own frame spec, smaller
    item = VideoClipDataset([record], sampler=SamplerSpec(frames=5), clip=clip)[0]
    assert item is not None and item["target"] == record.label
    pixels = item["inputs"]["rgb"]  # (crops, views, T, 3, S, S), normalised
    assert tuple(pixels.shape) == (1, 1, 5, 3, 64, 64)
    mean, std = np.array(clip.mean)[:, None, None], np.array(clip.std)[:, None, None]
    frames = [((p.numpy() * std + mean) * 255).clip(0, 255).transpose(1, 2, 0) for p in pixels[0, 0]]
    assert [frame_code.read_frame_index(f) for f in frames] == [52, 57, 62, 67, 72]  # segment centres of 50..74
    train_item = VideoClipDataset([record], sampler=SamplerSpec(frames=5), clip=clip, train=True)[0]
    assert train_item is not None and tuple(train_item["inputs"]["rgb"].shape) == (5, 3, 64, 64)


# ---------------------------------------------------------------------- the real vocabulary
def test_real_activitynet_vocabulary_as_classes(tmp_path: Path, shared_data: Path) -> None:
    labels_file = shared_data / "labels" / "activitynet.txt"
    names = [line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(names) == len(set(names)) == 200
    root = tmp_path / "videos"
    database = {}
    for i, name in enumerate(names):
        video_id = f"id{i:03d}"
        _touch(root / f"v_{video_id}.mp4")
        subset = "training" if i % 2 == 0 else "validation"
        database[video_id] = _entry(subset, 100.0, (1.5, 9.25, name), (20, 30, names[(i + 1) % 200]))
    path = tmp_path / "activity_net.v1-3.min.json"
    path.write_text(json.dumps({"version": "VERSION 1.3", "database": database}), encoding="utf-8")
    for classes in (labels_file, names):
        m = read_activitynet(path, video_root=root, subset="training", classes=classes).require_nonempty()
        assert m.classes == names and m.problems == []  # the file's order defines the indices
        assert len(m.records) == 200
        assert [m.records[0].labels, m.records[1].labels] == [(0,), (1,)]
        videos = read_activitynet(path, video_root=root, subset="validation", mode="videos", classes=classes)
        assert len(videos) == 100 and videos.records[0].labels == (1, 2)
    derived = read_activitynet(path, video_root=root, subset="validation")
    assert derived.classes == sorted(names)  # no classes given: every subset's labels, sorted
    assert sum(derived.class_counts()) == 200


# ---------------------------------------------------------------------- recipes
def test_recipe_format_activitynet(anet, tmp_path: Path) -> None:
    path, root = anet
    recipe = tmp_path / "anet.yaml"
    text = f"data:\n  format: activitynet\n  train: {path}\n  val: {path}\n  root: {root}\n"
    recipe.write_text(text, encoding="utf-8")
    cfg = load_config(recipe)
    assert cfg.data.format == "activitynet"
    train = read_split(cfg.data, "train")
    assert train.source == "activitynet training" and len(train) == 7
    train, val = load_splits(cfg.data, log_problems=False)
    assert val is not None and val.source == "activitynet validation"
    assert train.classes == val.classes == CLASSES
    assert [val.classes[r.label] for r in val.records] == ["Surfing", "Zumba"]
    with pytest.raises(InputError, match="data.root"):
        read_split(DataConfig(format="activitynet", train=str(path)), "train")
