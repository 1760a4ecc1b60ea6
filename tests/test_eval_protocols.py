"""Zero-shot protocols of Text4Vis §4.2: full, half-class trials, Kinetics-600 novel splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from openvocab.errors import InputError
from openvocab.eval.protocols import (
    full_protocol,
    half_class_protocol,
    kinetics600_novel_protocol,
)


def exact_case(num_classes: int, per_class: int = 3, dim: int = 64, seed: int = 0):
    """Every video embedding is its class embedding plus small noise: every protocol scores 100 %."""
    rng = np.random.default_rng(seed)
    classes = rng.normal(size=(num_classes, dim)).astype(np.float32)
    targets = np.repeat(np.arange(num_classes), per_class)
    videos = classes[targets] + 0.01 * rng.normal(size=(targets.size, dim)).astype(np.float32)
    return videos, targets, classes


def test_full_protocol_exact_and_permuted():
    videos, targets, classes = exact_case(20)
    res = full_protocol(videos, targets, classes, logit_scale=100.0)
    assert (res.top1, res.top5, res.mean_class_accuracy) == (1.0, 1.0, 1.0)
    assert (res.num_videos, res.num_classes) == (60, 20)
    # permuting the classifier rows without permuting the targets destroys the match (a derangement: 0 %) ...
    perm = np.roll(np.arange(20), 1)
    assert full_protocol(videos, targets, classes[perm]).top1 == 0.0
    # ... and permuting the targets the same way restores it
    inverse = np.argsort(perm)
    assert full_protocol(videos, inverse[targets], classes[perm]).top1 == 1.0
    # torch inputs and JSON output
    res_t = full_protocol(torch.from_numpy(videos), torch.from_numpy(targets), torch.from_numpy(classes))
    assert json.loads(json.dumps(res_t.to_dict())) == res.to_dict()


def test_half_class_subset_sizes_and_exactness():
    for num_classes, expected in ((101, 50), (51, 25), (200, 100)):
        videos, targets, classes = exact_case(num_classes, per_class=1, dim=256)
        res = half_class_protocol(videos, targets, classes, trials=3, seed=1)
        assert res.subset_size == expected
        assert all(len(t.classes) == expected and t.num_videos == expected for t in res.trials)
        assert all(len(set(t.classes)) == expected for t in res.trials)
        assert res.mean == 1.0 and res.std == 0.0


def test_half_class_reproducible_per_seed_and_different_across_seeds():
    rng = np.random.default_rng(3)
    classes = rng.normal(size=(51, 32)).astype(np.float32)
    targets = rng.integers(0, 51, 400)
    videos = classes[targets] + 1.2 * rng.normal(size=(400, 32)).astype(np.float32)  # noisy: accuracy < 100 %
    a = half_class_protocol(videos, targets, classes, seed=7)
    b = half_class_protocol(videos, targets, classes, seed=7)
    c = half_class_protocol(videos, targets, classes, seed=8)
    assert a.to_dict() == b.to_dict()
    assert len(a.trials) == 10
    assert [t.classes for t in a.trials] != [t.classes for t in c.trials]
    assert len({tuple(t.classes) for t in a.trials}) == 10  # trials differ from each other
    tops = np.array([t.top1 for t in a.trials])
    assert a.mean == pytest.approx(tops.mean()) and a.std == pytest.approx(tops.std(ddof=0))
    assert 0.0 < a.mean < 1.0
    # fewer classes to choose from than all: half-class accuracy is at least the full-protocol accuracy here
    assert a.mean >= full_protocol(videos, targets, classes).top1 - 0.05


def test_half_class_counts_only_videos_of_the_drawn_classes():
    videos, targets, classes = exact_case(10, per_class=2)
    res = half_class_protocol(videos, targets, classes, trials=2, seed=0)
    for trial in res.trials:
        assert trial.num_videos == 2 * len(trial.classes) == 10
    with pytest.raises(InputError):
        half_class_protocol(videos, targets, classes, subset_size=11)


def write_split(path, names):
    path.write_text("\n".join(names) + "\n", encoding="utf-8")
    return path


def test_kinetics600_novel_protocol(tmp_path):
    videos, targets, classes = exact_case(12, per_class=2)
    names = [f"Class Name {i}" for i in range(12)]
    rng = np.random.default_rng(0)
    splits = [sorted(rng.choice(12, 8, replace=False).tolist()) for _ in range(3)]
    files = [write_split(tmp_path / f"split_{k}.txt", [f"  class name {i}  " for i in s]) for k, s in enumerate(splits)]
    res = kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=files)
    assert [s.num_classes for s in res.splits] == [8, 8, 8]
    assert [s.num_videos for s in res.splits] == [16, 16, 16]
    assert res.mean == 1.0 and res.std == 0.0 and res.splits[0].source == str(files[0])
    # a split given as a list of names; a noisy case gives the per-split mean and population std
    noisy = videos + 0.9 * rng.normal(size=videos.shape).astype(np.float32) * np.linalg.norm(classes, axis=1).mean() / 8
    lists = [[names[i] for i in s] for s in splits]
    res2 = kinetics600_novel_protocol(noisy, targets, classes, class_names=names, split_files=lists)
    tops = np.array([s.top1 for s in res2.splits])
    assert res2.mean == pytest.approx(tops.mean()) and res2.std == pytest.approx(tops.std(ddof=0))
    assert res2.splits[1].source == "split 1"
    json.dumps(res2.to_dict())


def test_kinetics600_unknown_or_repeated_names(tmp_path):
    videos, targets, classes = exact_case(5)
    names = ["a", "b", "c", "d", "e"]
    bad = write_split(tmp_path / "bad.txt", ["a", "", "b", "zebra"])
    with pytest.raises(InputError, match=r"bad\.txt:4.*zebra"):
        kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=[bad])
    rep = write_split(tmp_path / "rep.txt", ["a", "B"])
    rep.write_text("a\nB\nb\n", encoding="utf-8")
    with pytest.raises(InputError, match=r"rep\.txt:3.*repeated"):
        kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=[rep])
    with pytest.raises(InputError, match="split 0, item 2"):
        kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=[["a", "zz"]])
    with pytest.raises(InputError, match="missing.txt"):
        kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=[tmp_path / "missing.txt"])
    with pytest.raises(InputError):
        kinetics600_novel_protocol(videos, targets, classes, class_names=names[:4], split_files=[["a"]])
