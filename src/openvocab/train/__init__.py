"""Training parts shared by the paper recipes: losses, schedules, samplers and checkpoints.

* :mod:`openvocab.train.losses` — Text4Vis Eq. 3 (frozen text classifier) and Eq. 2 / Algorithm 1 (distributed
  InfoNCE with batch gathering).
* :mod:`openvocab.train.schedule` — AdamW and the warm-up + cosine schedule of Text4Vis Table A.3.
* :mod:`openvocab.train.samplers` — a resumable DistributedSampler, the K-shot C-way subset and sample repetition.
* :mod:`openvocab.train.head_training` — temporal module + head training on the feature cache.
* checkpoints are written and read by :mod:`openvocab.models.checkpoint` (the library loads trained runs without
  this package).
"""

from openvocab.models.checkpoint import load_checkpoint, save_checkpoint
from openvocab.train.losses import distributed_infonce, frozen_classifier_ce, gather_with_grad, targets_from_labels
from openvocab.train.samplers import ResumableDistributedSampler, few_shot_indices, repeat_to_length
from openvocab.train.schedule import build_adamw, cosine_with_warmup, no_weight_decay

__all__ = [
    "ResumableDistributedSampler",
    "build_adamw",
    "cosine_with_warmup",
    "distributed_infonce",
    "few_shot_indices",
    "frozen_classifier_ce",
    "gather_with_grad",
    "load_checkpoint",
    "no_weight_decay",
    "repeat_to_length",
    "save_checkpoint",
    "targets_from_labels",
]
