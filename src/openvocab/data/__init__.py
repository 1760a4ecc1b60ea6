"""Datasets as manifests (which videos, which labels) and the procedural synthetic video benchmark.

    from openvocab.data import read_ucf101, base_novel_split
    train = read_ucf101("ucfTrainTestlist", video_root="UCF-101", split=1, subset="train")
    print(train.summary())          # "ucf101 trainlist01: 9,537 videos, 101 classes"
    base, novel = base_novel_split(train.classes, seed=0)
    base_train = train.subset(base).require_nonempty()

Readers never raise on a bad row: it becomes a :class:`RowProblem` (file, line, reason) and the row is skipped.
Multi-label data: JSONL manifests with ``labels`` lists and labelled ``segments`` (:class:`Segment`),
:func:`read_rareact` (noun, verb, "verb noun" per clip), ActivityNet ``mode="videos"``;
:func:`filter_vocabulary` / :func:`read_block_list` filter a training vocabulary; :func:`write_manifest_jsonl`
writes a manifest back. :mod:`openvocab.data.synth` (PyAV, NumPy) is imported on first use of ``SynthSpec`` /
``MultiLabelSpec`` / ``generate`` / ``generate_multilabel``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from openvocab.data.activitynet import read_activitynet
from openvocab.data.manifests import Manifest, RowProblem, Segment, VideoRecord, base_novel_split, read_manifest, write_manifest_jsonl
from openvocab.data.official import read_hmdb51, read_kinetics_csv, read_ucf101
from openvocab.data.rareact import read_rareact, triple_labels
from openvocab.data.vggsound import read_vggsound_csv
from openvocab.data.vocabulary import filter_vocabulary, read_block_list

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.data.synth import SynthSpec, generate
    from openvocab.data.synth_multilabel import MultiLabelSpec, generate_multilabel

__all__ = [
    "Manifest",
    "MultiLabelSpec",
    "RowProblem",
    "Segment",
    "SynthSpec",
    "VideoRecord",
    "base_novel_split",
    "filter_vocabulary",
    "generate",
    "generate_multilabel",
    "read_activitynet",
    "read_block_list",
    "read_hmdb51",
    "read_kinetics_csv",
    "read_manifest",
    "read_rareact",
    "read_ucf101",
    "read_vggsound_csv",
    "triple_labels",
    "write_manifest_jsonl",
]


def __getattr__(name: str):
    if name in {"SynthSpec", "generate"}:
        from openvocab.data import synth

        return getattr(synth, name)
    if name in {"MultiLabelSpec", "generate_multilabel"}:
        from openvocab.data import synth_multilabel

        return getattr(synth_multilabel, name)
    raise AttributeError(f"module 'openvocab.data' has no attribute {name!r}")
