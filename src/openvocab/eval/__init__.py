"""Evaluation: classification metrics, the zero-shot protocols of Text4Vis §4.2 (Table 4), and plots.

``metrics`` (top-k, mean class accuracy, confusion matrix; multi-view averaging is :func:`openvocab.scoring.average_views`) and ``protocols`` (full,
half-class trials, Kinetics-600 novel splits) work on pre-computed scores or embeddings; ``plots`` imports
matplotlib lazily.
"""

from openvocab.eval.metrics import (
    confusion_matrix,
    mean_class_accuracy,
    predict,
    topk_accuracy,
)

__all__ = ["confusion_matrix", "mean_class_accuracy", "predict", "topk_accuracy"]
