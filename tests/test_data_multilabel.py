"""Multi-label data: JSONL manifests with labelled segments, their row problems, subsets, the JSONL writer, ActivityNet's
videos mode as a multi-label source, and the multi-label synthetic benchmark (``data synth --multi-label``).

Videos are empty placeholders except where frames are checked; synthetic clips are tiny (32-48 px, 6-8 frames).
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from openvocab.data import Manifest, RowProblem, Segment, VideoRecord, read_activitynet, read_manifest, write_manifest_jsonl
from openvocab.data.synth import COLOURS
from openvocab.data.synth_multilabel import MULTILABEL_FILES, MultiLabelSpec, concept_label, draw_multilabel_clip, generate_multilabel
from openvocab.errors import InputError
from openvocab.io.decode import open_video
from openvocab.train.config import DataConfig
from openvocab.train.data_setup import read_split


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def _problems(manifest: Manifest) -> list[tuple[int | None, str]]:
    return [(p.row, p.kind) for p in manifest.problems]


def _named(manifest: Manifest) -> list[tuple[str, tuple[str, ...], tuple[tuple[float, float, tuple[str, ...]], ...]]]:
    """(file name, label names, segments as (start, end, label names)) per record."""
    names = manifest.classes
    return [
        (Path(r.path).name, tuple(names[i] for i in r.labels), tuple((s.start_s, s.end_s, tuple(names[i] for i in s.labels)) for s in r.segments))
        for r in manifest.records
    ]


# ---------------------------------------------------------------------- JSONL with segments
JSONL_ROWS = [
    # 1 ok: the record's labels are its labels plus its segments' labels
    {
        "path": "videos/a.mp4",
        "labels": ["yoga", "dog barking"],
        "segments": [{"start": 0, "end": 1.5, "labels": ["yoga"]}, {"start": 2, "end": 4, "labels": "dog barking|playing guitar"}],
    },
    {"path": "videos/b.mp4", "labels": []},  # 2 no labels
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": [{"start": 3, "end": 1, "labels": ["yoga"]}]},  # 3 segment end before start
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": {"start": 0}},  # 4 segments not a list
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": [{"start": 0, "end": 1}]},  # 5 a segment without labels
    {"path": "videos/b.mp4", "start": 10, "end": 20, "labels": ["yoga"], "segments": [{"start": 5, "end": 12, "labels": ["yoga"]}]},  # 6 outside window
    {"path": "videos/b.mp4", "segments": [{"start_s": 0, "end_s": 2, "label": "surfing"}]},  # 7 ok: labels from the segment alone
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": [3]},  # 8 a segment that is not an object
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": [{"start": 0, "end": "x", "labels": ["yoga"]}]},  # 9 bad segment time
    {"path": "videos/b.mp4", "labels": ["yoga"], "segments": [{"start": 1, "labels": ["yoga"]}]},  # 10 a segment without an end
]


def test_jsonl_segments_records_and_problems(tmp_path: Path) -> None:
    _touch(tmp_path / "videos" / "a.mp4")
    _touch(tmp_path / "videos" / "b.mp4")
    file = tmp_path / "m.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in JSONL_ROWS))
    m = read_manifest(file)
    assert m.classes == ["dog barking", "playing guitar", "surfing", "yoga"]
    assert _named(m) == [
        ("a.mp4", ("dog barking", "playing guitar", "yoga"), ((0.0, 1.5, ("yoga",)), (2.0, 4.0, ("dog barking", "playing guitar")))),
        ("b.mp4", ("surfing",), ((0.0, 2.0, ("surfing",)),)),
    ]
    assert [r.row for r in m.records] == [1, 7]
    assert m.records[0].segments[1] == Segment(2.0, 4.0, (0, 1))
    assert _problems(m) == [
        (2, "missing label"), (3, "bad time range"), (4, "malformed row"), (5, "missing label"),
        (6, "bad time range"), (8, "malformed row"), (9, "bad time range"), (10, "bad time range"),
    ]  # fmt: skip
    messages = [str(p) for p in m.problems]
    assert messages[0] == f"{file}:2: no labels for videos/b.mp4"
    assert messages[1] == f"{file}:3: bad time range for segment 1 of videos/b.mp4: end 1 s is not after start 3 s"
    assert messages[2] == f"{file}:4: malformed row: 'segments' must be a list of {{start, end, labels}} objects"
    assert messages[3] == f"{file}:5: no labels for segment 1 of videos/b.mp4"
    assert messages[4] == f"{file}:6: bad time range for segment 1 of videos/b.mp4: 5-12 s lies outside the row's window 10-20 s"
    assert messages[5] == f"{file}:8: malformed row: segment 1 of videos/b.mp4 is not an object"
    assert messages[6] == f"{file}:9: bad time range for segment 1 of videos/b.mp4: 'x' is not a time in seconds"
    assert messages[7] == f"{file}:10: bad time range for segment 1 of videos/b.mp4: a segment needs both start and end"
    # the summary says how many rows were skipped and why
    assert m.summary() == f"{file}: 2 videos, 4 classes, 8 rows skipped (4 bad time ranges, 2 malformed rows, 2 missing labels)"
    assert m.class_counts() == [1, 1, 1, 1] and m.labels_per_video() == 2.0


def test_unknown_labels_against_a_fixed_vocabulary_are_named(tmp_path: Path) -> None:
    _touch(tmp_path / "a.mp4")
    rows = [
        {"path": "a.mp4", "labels": ["Yoga", "dog_barking"]},  # 1 ok (normalised matching)
        {"path": "a.mp4", "labels": ["yoga", "skydiving", "surfing"]},  # 2 two unknown labels
        {"path": "a.mp4", "labels": ["yoga"], "segments": [{"start": 0, "end": 1, "labels": ["yoga", "surfing"]}]},  # 3 unknown in a segment
        {"path": "a.mp4", "label": "skydiving"},  # 4 one unknown label
    ]
    file = tmp_path / "m.jsonl"
    file.write_text("".join(json.dumps(row) + "\n" for row in rows))
    m = read_manifest(file, classes=["yoga", "dog barking"])
    assert m.classes == ["yoga", "dog barking"] and [r.labels for r in m.records] == [(0, 1)]
    assert [str(p) for p in m.problems] == [
        f"{file}:2: unknown labels 'skydiving', 'surfing' for a.mp4",
        f"{file}:3: unknown label 'surfing' in segment 1 of a.mp4",
        f"{file}:4: unknown label 'skydiving' for a.mp4",
    ]
    assert m.summary().endswith("1 video, 2 classes, 3 rows skipped (3 unknown labels)")


def test_video_record_segments_field_is_optional_and_pickles() -> None:
    old_style = VideoRecord("a.mp4", (0,), 1.0, 2.0, 5)  # positional constructors of older code still work
    assert old_style.segments == () and old_style.label == 0
    record = VideoRecord("a.mp4", (0, 2), row=3, segments=(Segment(0.0, 1.0, (0,)), Segment(1.0, 3.0, (2,))))
    assert pickle.loads(pickle.dumps(record)) == record  # DataLoader workers get records by pickle


def test_subset_keeps_labels_inside_and_drops_records_left_empty() -> None:
    records = [
        VideoRecord("a", (0, 1), row=1, segments=(Segment(0.0, 1.0, (0,)), Segment(1.0, 2.0, (1,)))),
        VideoRecord("b", (1,), row=2),
        VideoRecord("c", (2, 3), row=3),
        VideoRecord("d", (0, 3), row=4),
        VideoRecord("e", (), row=5),
    ]
    m = Manifest(records, ["w", "x", "y", "z"], [RowProblem("m", 9, "missing file q", "missing file")], "m")
    keep = m.subset([3, 1])
    assert keep.classes == ["z", "x"]
    # a: keeps x (its w segment goes); b: x; c: keeps z; d: keeps z; e: unlabelled -> dropped
    assert [(r.path, r.labels) for r in keep.records] == [("a", (1,)), ("b", (1,)), ("c", (0,)), ("d", (0,))]
    assert keep.records[0].segments == (Segment(1.0, 2.0, (1,)),)
    drop = m.subset([3, 1], partial="drop")  # the stricter rule: every label must be in the subset
    assert [(r.path, r.labels) for r in drop.records] == [("b", (1,))]
    assert m.subset([0]).records[0].segments == (Segment(0.0, 1.0, (0,)),)
    with pytest.raises(InputError, match="partial"):
        m.subset([0], partial="some")
    # class counts count each video once per distinct class
    assert Manifest([VideoRecord("a", (0, 0, 1))], ["x", "y"]).class_counts() == [1, 1]


def test_write_manifest_jsonl_round_trips(tmp_path: Path) -> None:
    _touch(tmp_path / "data" / "videos" / "a.mp4")
    _touch(tmp_path / "elsewhere" / "b.mp4")
    rows = [
        {"path": "videos/a.mp4", "labels": ["yoga", "dog barking"], "start": 1, "end": 9.5, "segments": [{"start": 2, "end": 3, "labels": ["yoga"]}]},
        {"path": str(tmp_path / "elsewhere" / "b.mp4"), "labels": ["surfing"]},
    ]
    source = tmp_path / "data" / "in.jsonl"
    source.write_text("".join(json.dumps(row) + "\n" for row in rows))
    m = read_manifest(source)
    out = write_manifest_jsonl(m, tmp_path / "data" / "out.jsonl")
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert lines[0] == {
        "path": "videos/a.mp4",
        "labels": ["dog barking", "yoga"],
        "start": 1,
        "end": 9.5,
        "segments": [{"start": 2, "end": 3, "labels": ["yoga"]}],
    }
    assert lines[1] == {"path": str(tmp_path / "elsewhere" / "b.mp4"), "labels": ["surfing"]}  # outside the folder: absolute
    again = read_manifest(out, classes=m.classes)
    assert again.records == m.records and again.classes == m.classes and not again.problems


# ---------------------------------------------------------------------- ActivityNet: videos mode is multi-label
def _anet(tmp_path: Path) -> tuple[Path, Path]:
    def entry(subset: str, *annotations: tuple[float, float, str]) -> dict:
        return {"subset": subset, "duration": 100.0, "annotations": [{"segment": [s, e], "label": label} for s, e, label in annotations]}

    database = {
        "multi": entry("validation", (5, 15, "Surfing"), (20, 30, "Playing guitar"), (40, 50, "Surfing")),
        "single": entry("validation", (1, 2, "Archery")),
        "train": entry("training", (1, 2, "Zumba")),
    }
    root = tmp_path / "videos"
    for video_id in database:
        _touch(root / f"v_{video_id}.mp4")
    path = tmp_path / "anet.json"
    path.write_text(json.dumps({"database": database}))
    return path, root


def test_activitynet_videos_mode_is_multi_label_with_segments(tmp_path: Path) -> None:
    path, root = _anet(tmp_path)
    m = read_activitynet(path, video_root=root, subset="validation", mode="videos")
    assert m.classes == ["Archery", "Playing guitar", "Surfing", "Zumba"]
    assert _named(m) == [
        ("v_multi.mp4", ("Playing guitar", "Surfing"), ((5.0, 15.0, ("Surfing",)), (20.0, 30.0, ("Playing guitar",)), (40.0, 50.0, ("Surfing",)))),
        ("v_single.mp4", ("Archery",), ((1.0, 2.0, ("Archery",)),)),
    ]
    assert all(r.start_s is None and r.end_s is None for r in m.records)
    assert m.class_counts() == [1, 1, 1, 0] and m.labels_per_video() == 1.5
    segments = read_activitynet(path, video_root=root, subset="validation")  # one single-label record per annotation
    assert len(segments) == 4 and all(r.segments == () and len(r.labels) == 1 for r in segments.records)
    # the recipe path (data.val_mode=videos) gives the same records
    where = DataConfig(format="activitynet", train=str(path), val=str(path), root=str(root), val_mode="videos")
    assert read_split(where, "val").records == m.records


# ---------------------------------------------------------------------- multi-label synthetic clips
SMALL = {"train_clips": 8, "val_clips": 2, "test_clips": 2, "novel_clips": 6, "frames": 8, "size": 48}


def _near(frames: np.ndarray, rgb: tuple[int, int, int], radius: float = 30.0) -> np.ndarray:
    """(T, H, W) pixels within ``radius`` (RGB distance) of ``rgb``; a drawn colour is jittered by at most 15 a
    channel (26 in distance), the dark spot, the background and the other colours are far."""
    return np.linalg.norm(frames.astype(np.float32) - np.asarray(rgb, np.float32), axis=-1) <= radius


def test_concept_labels_and_spec() -> None:
    assert [concept_label("shape", "circle"), concept_label("colour", "red"), concept_label("motion", "left")] == ["circle", "red object", "moving left"]
    spec = MultiLabelSpec()
    assert len(spec.class_names()) == 16 and spec.class_names()[:7] == ["circle", "square", "triangle", "cross", "star", "ring", "red object"]
    assert spec.class_names()[-4:] == ["moving left", "moving right", "moving up", "moving down"]
    held = spec.held_out(0)
    assert [len(held[f]) for f in ("shape", "colour", "motion")] == [1, 1, 0]
    assert held == spec.held_out(0) and len({spec.held_out(s)["shape"] for s in range(10)}) > 1  # seeded
    # list order does not change which values are held out
    assert MultiLabelSpec(shapes=tuple(reversed(spec.shapes))).held_out(3)["shape"] == spec.held_out(3)["shape"]
    for kwargs, message in [
        ({"max_objects": 5}, "objects per clip"),
        ({"held_out_colours": 6}, "held_out_colours"),
        ({"colours": ("red", "blue", "green"), "held_out_colours": 1}, "seen .not held-out. colours"),
        ({"held_out_shapes": 0, "held_out_colours": 0}, "novel_clips needs"),
        ({"shapes": ("blob",)}, "unknown shape 'blob'"),
        ({"train_clips": -1}, "train_clips"),
    ]:
        with pytest.raises(InputError, match=message):
            MultiLabelSpec(**kwargs)


def test_labels_match_the_drawn_objects() -> None:
    spec = MultiLabelSpec(**SMALL)
    held = spec.held_out(5)
    seen_objects = 0
    for split in ("train", "novel_test"):
        for index in range(6):
            objects, frames = draw_multilabel_clip(spec, seed=5, split=split, index=index)
            assert frames.shape == (8, 48, 48, 3) and frames.dtype == np.uint8
            assert 1 <= len(objects) <= 3
            assert len({o["shape"] for o in objects}) == len({o["colour"] for o in objects}) == len(objects)  # all different
            labelled = {o["colour"] for o in objects}
            for colour in spec.colours:  # every labelled colour is drawn, no other colour is
                count = int(_near(frames, COLOURS[colour]).sum())
                assert (count > 20) if colour in labelled else (count == 0), (split, index, colour, count)
            for obj in objects:  # each object moves the way its label says (when visible at both ends)
                mask = _near(frames, COLOURS[obj["colour"]])
                first, last = mask[0], mask[-1]
                if first.sum() < 6 or last.sum() < 6:
                    continue
                ys, xs = np.mgrid[0:48, 0:48]
                dx = (xs * last).sum() / last.sum() - (xs * first).sum() / first.sum()
                dy = (ys * last).sum() / last.sum() - (ys * first).sum() / first.sum()
                expected = {"left": dx < -8, "right": dx > 8, "up": dy < -8, "down": dy > 8}[obj["motion"]]
                assert expected, (obj, dx, dy)
                seen_objects += 1
            has_held = any(o[f] in held[f] for o in objects for f in ("shape", "colour", "motion"))
            assert has_held == (split == "novel_test"), (split, objects)
    assert seen_objects >= 12
    # exactly deterministic
    a = draw_multilabel_clip(spec, seed=5, split="val", index=1)
    b = draw_multilabel_clip(spec, seed=5, split="val", index=1)
    assert a[0] == b[0] and np.array_equal(a[1], b[1])


def test_generate_multilabel_splits_and_determinism(tmp_path: Path) -> None:
    spec = MultiLabelSpec(**SMALL)
    a = generate_multilabel(spec, tmp_path / "a", seed=2)
    b = generate_multilabel(spec, tmp_path / "b", seed=2, workers=2)
    c = generate_multilabel(spec, tmp_path / "c", seed=3)
    for name in MULTILABEL_FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "train.jsonl").read_bytes() != (c / "train.jsonl").read_bytes()
    meta = json.loads((a / "splits.json").read_text())
    classes = (a / "classes.txt").read_text().splitlines()
    assert classes == spec.class_names() == meta["classes"]
    novel = set(meta["novel"])
    assert novel == {concept_label(f, v) for f, values in spec.held_out(2).items() for v in values} and len(novel) == 2
    assert (a / "novel_classes.txt").read_text().splitlines() == [n for n in classes if n in novel]
    assert meta["counts"] == {"train": 8, "val": 2, "test": 2, "novel_test": 6}
    for split, count in meta["counts"].items():
        rows = [json.loads(line) for line in (a / f"{split}.jsonl").read_text().splitlines()]
        assert len(rows) == count
        for row in rows:
            concepts = {concept_label(f, o[f]) for o in row["objects"] for f in ("shape", "colour", "motion")}
            assert row["labels"] == [n for n in classes if n in concepts]  # the concepts present, in class order
            assert bool(novel & set(row["labels"])) == (split == "novel_test"), (split, row)
        m = read_manifest(a / f"{split}.jsonl", classes=a / "classes.txt")
        assert not m.problems and len(m) == count
    train = read_manifest(a / "train.jsonl")  # without the class list: only seen concepts, never a held-out one
    assert not novel & set(train.classes)
    # a written clip decodes to the drawn objects' colours
    row = json.loads((a / "train.jsonl").read_text().splitlines()[0])
    frames = open_video(a / row["path"]).read_all().frames
    for obj in row["objects"]:
        assert _near(frames, COLOURS[obj["colour"]], radius=60).sum() > 10, obj


def test_cli_synth_multi_label(tmp_path: Path, cli) -> None:
    out = tmp_path / "ml"
    code, stdout, stderr = cli("data", "synth", str(out), "--multi-label", "--train-clips", "4", "--val-clips", "1", "--test-clips", "1",
                               "--novel-clips", "2", "--frames", "6", "--size", "32", "--objects", "1-2", "--seed", "1", "-q")  # fmt: skip
    assert code == 0, stderr
    assert stdout.startswith("wrote 8 multi-label clips of 16 concepts (14 seen, 2 held out: ") and f" to {out} in " in stdout
    assert "train 4, val 1, test 1, novel_test 2;" in stdout
    meta = json.loads((out / "splits.json").read_text())
    assert meta["spec"]["max_objects"] == 2 and all(1 <= len(json.loads(r)["objects"]) <= 2 for r in (out / "train.jsonl").read_text().splitlines())
    for args, message in [
        (("--multi-label", "--label-factors", "motion"), "error: --label-factors does not apply with --multi-label"),
        (("--held-out-shapes", "1"), "error: --held-out-shapes needs --multi-label"),
        (("--multi-label", "--objects", "x"), "error: --objects must be N or MIN-MAX"),
        (("--multi-label", "--objects", "5"), "error: synthetic spec: objects per clip"),
        (("--multi-label", "--colours", "red,mauve"), "error: unknown colour 'mauve'"),
    ]:
        code, stdout, stderr = cli("data", "synth", str(tmp_path / "bad"), *args, "-q")
        assert code == 2 and stderr.startswith(message) and len(stderr.strip().splitlines()) == 1, (args, stderr)
