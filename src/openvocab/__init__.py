"""openvocab: open-vocabulary video classification on CLIP-family models.

    import openvocab
    clf = openvocab.load("openai/clip-vit-base-patch32")          # or a local model directory
    result = clf.classify("my_video.mp4", ["playing guitar", "yoga", "dog barking"])
    print(result.top.label, result.top.score)

Heavy modules (torch, transformers, PyAV) are imported on first use, so ``import openvocab`` and the CLI's
``--help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["load", "VideoClassifier", "ClipResult", "LabelScore", "SegmentResult", "OpenVocabError", "__version__"]

from openvocab.errors import OpenVocabError

if TYPE_CHECKING:  # pragma: no cover
    from openvocab.classifier import VideoClassifier, load
    from openvocab.results import ClipResult, LabelScore, SegmentResult


def __getattr__(name: str):
    if name in {"load", "VideoClassifier"}:
        from openvocab import classifier

        return getattr(classifier, name)
    if name in {"ClipResult", "LabelScore", "SegmentResult"}:
        from openvocab import results

        return getattr(results, name)
    raise AttributeError(f"module 'openvocab' has no attribute {name!r}")
