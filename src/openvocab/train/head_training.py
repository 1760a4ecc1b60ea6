"""Train and evaluate heads (temporal module + classifier) on a :class:`~openvocab.features.cache.FeatureCache`.

The backbone stays frozen and is never run: each step is the temporal module and the head on cached frame
features, with the same AdamW / warm-up-cosine recipe as full training (Text4Vis Table A.3 defaults).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from openvocab.features.cache import FeatureCache
from openvocab.models.recognizer import VideoRecognizer
from openvocab.train.schedule import build_adamw, cosine_with_warmup


def train_head(
    model: VideoRecognizer,
    cache: FeatureCache,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    min_lr: float = 1e-5,
    weight_decay: float = 0.2,
    batch_size: int = 64,
    warmup_epochs: float = 1.0,
    seed: int = 0,
    view: int | None = None,
) -> list[float]:
    """Fit ``model``'s temporal module and head on the cache (one random view per clip and step unless ``view``
    is fixed). Returns the mean loss of every epoch."""
    groups = model.parameter_groups()
    params = groups["head"] + groups["label_encoder"]
    if not params:
        raise ValueError("nothing to train: the head and temporal module have no trainable parameters")
    n = len(cache)
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = steps_per_epoch * epochs
    optimizer = build_adamw(params, lr=lr, weight_decay=weight_decay)
    scheduler = cosine_with_warmup(
        optimizer, total_steps=total, warmup_steps=min(total, round(warmup_epochs * steps_per_epoch)), base_lr=lr, min_lr=min(min_lr, lr)
    )
    g = torch.Generator().manual_seed(seed)
    frames, targets = cache.frames, cache.targets
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total_loss = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            v = torch.randint(frames.shape[1], (len(idx),), generator=g) if view is None else torch.full((len(idx),), view)
            logits = model.logits_from_frame_features(frames[idx, v])
            loss = F.cross_entropy(logits, targets[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
        history.append(total_loss / n)
    model.eval()
    return history


@torch.inference_mode()
def evaluate_head(model: VideoRecognizer, cache: FeatureCache) -> dict:
    """Top-1 / top-5 / mean-class accuracy over all cached views, by the one multi-view rule of
    :mod:`openvocab.scoring` (per-view probabilities averaged)."""
    from openvocab.eval.metrics import mean_class_accuracy, topk_accuracy
    from openvocab.scoring import view_probabilities

    model.eval()
    n, views = cache.frames.shape[:2]
    logits = model.logits_from_frame_features(cache.frames.reshape(n * views, *cache.frames.shape[2:]))
    probs = view_probabilities(logits.float().reshape(n, views, -1))
    c = probs.shape[1]
    acc = topk_accuracy(probs, cache.targets, ks=(1, min(5, c)))
    return {"top1": acc[1], "top5": acc[min(5, c)], "mean_class": mean_class_accuracy(probs, cache.targets, num_classes=c), "videos": n}
