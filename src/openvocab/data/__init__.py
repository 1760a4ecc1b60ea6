"""Datasets as manifests (which videos, which labels) and the procedural synthetic video benchmark.

    from openvocab.data import read_ucf101, base_novel_split
    train = read_ucf101("ucfTrainTestlist", video_root="UCF-101", split=1, subset="train")
    print(train.summary())          # "ucf101 trainlist01: 9,537 videos, 101 classes"
    base, novel = base_novel_split(train.classes, seed=0)
    base_train = train.subset(base).require_nonempty()

Readers never raise on a bad row: it becomes a :class:`RowProblem` (file, line, reason) and the row is skipped.
:mod:`openvocab.data.synth` (PyAV, NumPy) is imported on first use of ``SynthSpec`` / ``generate``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvocab.data.activitynet import read_activitynet
from openvocab.data.manifests import Manifest, RowProblem, VideoRecord, base_novel_split, read_manifest
from openvocab.data.official import read_hmdb51, read_kinetics_csv, read_ucf101
from openvocab.data.vggsound import read_vggsound_csv

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.data.synth import SynthSpec, generate

__all__ = [
    "Manifest",
    "RowProblem",
    "SynthSpec",
    "VideoRecord",
    "base_novel_split",
    "generate",
    "read_activitynet",
    "read_hmdb51",
    "read_kinetics_csv",
    "read_manifest",
    "read_ucf101",
    "read_vggsound_csv",
]


def __getattr__(name: str):
    if name in {"SynthSpec", "generate"}:
        from openvocab.data import synth

        return getattr(synth, name)
    raise AttributeError(f"module 'openvocab.data' has no attribute {name!r}")
