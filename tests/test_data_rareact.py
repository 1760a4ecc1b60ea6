"""RareAct as a multi-label test set (multi-label paper K.1): noun, verb and "verb noun" per positive clip, from a small
synthetic ``rareact.csv`` in the real column layout (``id,video_id,start,end,class_id,verb,noun,annotation``, as in
github.com/antoine77340/RareAct), with placeholder videos named the ways the reader accepts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from openvocab.data import read_rareact, triple_labels
from openvocab.data.rareact import ANNOTATION_VALUES
from openvocab.errors import InputError
from openvocab.train.config import DataConfig, _choices
from openvocab.train.data_setup import load_splits, read_split

HEADER = "id,video_id,start,end,class_id,verb,noun,annotation\n"
ROWS = [
    "0,vidAAAAAAAA,50,60,0,cut,rock,1",  # 2 positive: the full video with a window
    "1,vidAAAAAAAA,50,60,1,wash,rock,1",  # 3 the same clip positive for another class: both triples
    "2,vidAAAAAAAA,50,60,0,cut,rock,1",  # 4 a repeated row counts once
    "3,vidBBBBBBBB,10,20,2,throw,phone,0",  # 5 negative: no record, no problem
    "4,vidBBBBBBBB,30,40,3,microwave,phone,1",  # 6 positive: a trimmed clip file (no window)
    "5,vidCCCCCCCC,0,10,4,blend,microwave,2",  # 7 hard negative (only the verb is right): no labels
    "6,vid-_CCCCCC,0,10,4,blend,microwave,1",  # 8 positive: a frame folder; 'microwave' is also a verb above: one class
    "7,vidMISSING1,0,10,0,cut,rock,1",  # 9 no video
    "8,vidDDDDDDDD,20,10,0,cut,rock,1",  # 10 end before start
    "9,vidDDDDDDDD,0,10,0,cut,rock,7",  # 11 annotation outside 0-4
    "10,vidDDDDDDDD,0,10",  # 12 too few columns
    "11,,0,10,0,cut,rock,1",  # 13 empty video_id
    "12,vidDDDDDDDD,0,10,0,,rock,1",  # 14 empty verb
    "13,vidDDDDDDDD,0,10,0,cut,rock,3",  # 15 hard negative (only the noun is right): no labels
]
CLASSES = ["blend", "blend microwave", "cut", "cut rock", "microwave", "microwave phone", "phone", "rock", "wash", "wash rock"]


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


@pytest.fixture
def rareact(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "videos"
    _touch(root / "vidAAAAAAAA.mp4")
    _touch(root / "vidAAAAAAAAX.mp4")  # a longer id that starts with vidAAAAAAAA: never taken for it
    _touch(root / "vidAAAAAAAA_extra.webm")
    _touch(root / "sub" / "vidBBBBBBBB_000030_000040.mp4")
    _touch(root / "vidBBBBBBBB.mkv")  # the trimmed clip wins over the full video
    for i in range(2):
        _touch(root / "frames" / "vid-_CCCCCC" / f"img_{i:05d}.jpg")
    path = tmp_path / "rareact.csv"
    path.write_text(HEADER + "\n".join(ROWS) + "\n")
    return path, root


def _named(manifest) -> list[tuple[str, tuple[str, ...], float | None, float | None, int | None]]:
    return [(Path(r.path).name, tuple(manifest.classes[i] for i in r.labels), r.start_s, r.end_s, r.row) for r in manifest.records]


def test_triple_labels() -> None:
    assert triple_labels("rock", "cut") == ("rock", "cut", "cut rock")
    assert triple_labels("  ice  cream ", "scoop") == ("ice cream", "scoop", "scoop ice cream")
    assert triple_labels("rock", "cut", template="{verb}ting a {noun}") == ("rock", "cut", "cutting a rock")
    with pytest.raises(ValueError, match="empty verb"):
        triple_labels("rock", " ")
    with pytest.raises(ValueError, match="template"):
        triple_labels("rock", "cut", template="{object}")
    assert ANNOTATION_VALUES[1] == "positive" and sorted(ANNOTATION_VALUES) == [0, 1, 2, 3, 4]


def test_positive_clips_get_noun_verb_and_combination(rareact) -> None:
    path, root = rareact
    m = read_rareact(path, video_root=root)
    assert m.classes == CLASSES
    assert _named(m) == [
        ("vidAAAAAAAA.mp4", ("cut", "cut rock", "rock", "wash", "wash rock"), 50.0, 60.0, 2),
        ("vidBBBBBBBB_000030_000040.mp4", ("microwave", "microwave phone", "phone"), None, None, 6),
        ("vid-_CCCCCC", ("blend", "blend microwave", "microwave"), 0.0, 10.0, 8),  # the full video (a frame folder): windowed
    ]
    assert m.records[0].path == str(root.absolute() / "vidAAAAAAAA.mp4")
    assert [(p.row, p.kind) for p in m.problems] == [
        (9, "missing file"), (10, "bad time range"), (11, "malformed row"), (12, "malformed row"), (13, "malformed row"), (14, "malformed row"),
    ]  # fmt: skip
    messages = [str(p) for p in m.problems]
    assert messages[0].startswith(f"{path}:9: missing file: no vidMISSING1.* or vidMISSING1_000000_000010.* video")
    assert messages[1] == f"{path}:10: bad time range for vidDDDDDDDD: end 10 s is not after start 20 s"
    assert messages[2] == f"{path}:11: malformed row: annotation '7' is not one of 0-4 (1 = positive)"
    assert messages[3] == f"{path}:12: malformed row: expected 8 columns, got 4"
    assert messages[4] == f"{path}:13: malformed row: empty video_id"
    assert messages[5] == f"{path}:14: malformed row: empty verb for vidDDDDDDDD"
    assert m.summary() == "rareact rareact: 3 videos, 10 classes, 6 rows skipped (4 malformed rows, 1 bad time range, 1 missing file)"
    assert m.labels_per_video() == pytest.approx(11 / 3)


def test_fixed_vocabulary_template_and_unchecked_files(rareact, tmp_path: Path) -> None:
    path, root = rareact
    fixed = [c for c in CLASSES if c != "wash rock"]
    m = read_rareact(path, video_root=root, classes=fixed)
    assert m.classes == fixed
    assert _named(m)[0] == ("vidAAAAAAAA.mp4", ("cut", "cut rock", "rock"), 50.0, 60.0, 2)  # the 'wash' positive was skipped alone
    assert str(m.problems[0]) == f"{path}:3: unknown label 'wash rock' for vidAAAAAAAA 50-60 s"
    loose = read_rareact(path, video_root=tmp_path / "absent", check_files=False, template="{noun} being {verb}ed")
    assert "rock being cuted" in loose.classes and not any(p.kind == "missing file" for p in loose.problems)
    assert [(Path(r.path).name, r.start_s, r.end_s) for r in loose.records][:2] == [("vidAAAAAAAA.mp4", 50.0, 60.0), ("vidBBBBBBBB.mp4", 30.0, 40.0)]
    with pytest.raises(InputError, match="template"):
        read_rareact(path, video_root=root, template="{object}")
    (tmp_path / "bad.csv").write_text("video_id,verb,noun\nx,cut,rock\n")
    with pytest.raises(InputError, match="not a RareAct CSV.*missing start, end, annotation"):
        read_rareact(tmp_path / "bad.csv", video_root=root)
    with pytest.raises(InputError, match="video root is not a directory"):
        read_rareact(path, video_root=tmp_path / "absent")


def test_recipe_format_and_cli(rareact, tmp_path: Path, cli) -> None:
    path, root = rareact
    assert "rareact" in _choices()[("data", "format")]
    where = DataConfig(format="rareact", train=str(path), val=str(path), root=str(root))
    assert read_split(where, "val").records == read_rareact(path, video_root=root).records
    train, val = load_splits(where, log_problems=False)
    assert train.classes == val.classes == CLASSES
    with pytest.raises(InputError, match="needs data.root"):
        read_split(DataConfig(format="rareact", train=str(path)), "train")
    code, stdout, stderr = cli("data", "check", str(path), "--kind", "rareact", "--root", str(root))
    assert code == 1 and stdout.strip() == "rareact rareact: 3 videos, 10 classes, 6 rows skipped (4 malformed rows, 1 bad time range, 1 missing file)"
    assert stderr.startswith(f"skipped: {path}:9: missing file")
    out = tmp_path / "rareact.jsonl"  # to a JSONL manifest (no filtering asked)
    code, stdout, stderr = cli("data", "filter", str(path), str(out), "--format", "rareact", "--root", str(root))
    assert code == 0 and stdout.startswith(f"wrote {out}: 3 videos, 10 classes, 3.67 labels per video;"), stderr
    first = json.loads(out.read_text().splitlines()[0])
    assert first == {"path": "videos/vidAAAAAAAA.mp4", "labels": ["cut", "cut rock", "rock", "wash", "wash rock"], "start": 50, "end": 60}
    code, stdout, stderr = cli("data", "check", str(path), "--kind", "rareact")
    assert code == 2 and stderr.strip() == "error: --kind rareact needs --video-root"
