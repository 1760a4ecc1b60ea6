"""Train and evaluate heads (temporal modules, fusion + classifier) on :class:`~openvocab.features.cache.FeatureCache`\\ s.

The backbones stay frozen and are never run: each step is the temporal modules, the fusion and the head on cached
frame features, with the same AdamW / warm-up-cosine recipe as full training (Text4Vis Table A.3 defaults).

A recogniser with several streams (MOV: RGB + flow or audio) reads one cache per stream, ``{stream name: cache}``,
extracted from the same manifest with the same views (:func:`openvocab.features.cache.check_aligned`); each step
picks one view per clip, the same view in every stream. A MOV fusion (``mov`` / ``score``) trains with MOV's loss
(Eq. 9) on its fused video and fused flow/audio features against the head's frozen class rows, like the full
trainer; as every tower here is frozen, a MOV head trained from caches is the ``k = 0`` point of MOV Table 6 (no
vision block of the flow / audio tower fine-tuned).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
import torch.nn.functional as F

from openvocab.errors import InputError
from openvocab.features.cache import FeatureCache, check_aligned
from openvocab.models.recognizer import VideoRecognizer
from openvocab.train.losses import mov_loss
from openvocab.train.schedule import build_adamw, cosine_with_warmup

#: One cache (the recogniser's primary stream) or one per stream.
Caches = FeatureCache | Mapping[str, FeatureCache]


def stream_caches(model: VideoRecognizer, caches: Caches) -> dict[str, FeatureCache]:
    """``caches`` as ``{stream: cache}`` in the recogniser's stream order, refusing (one line) a missing or extra
    stream, a cache of another modality or width than its stream reads, and caches that are not aligned."""
    if isinstance(caches, FeatureCache):
        caches = {model.spec.primary: caches}
    caches = dict(caches)
    streams = list(model.streams)
    if sorted(caches) != sorted(streams):
        raise InputError(f"the recogniser's streams are {', '.join(streams)}; got feature caches for {', '.join(caches) or 'none'}")
    for name in streams:
        cache, stream = caches[name], model.streams[name]
        if cache.modality != stream.spec.input:
            raise InputError(f"holds {cache.modality} features, but stream '{name}' reads {stream.spec.input}", path=cache.directory)
        if stream.frame_dim != stream.dim:  # a temporal branch (parallel / serial) reads the tower's tokens, which a cache lacks
            raise InputError(f"stream '{name}' has temporal {stream.spec.temporal}, which reads the vision tower's tokens; train it with `openvocab train`")
        if int(cache.frames.shape[-1]) != stream.dim:
            raise InputError(f"holds features of width {int(cache.frames.shape[-1])}, but stream '{name}' has width {stream.dim}", path=cache.directory)
    ordered = {name: caches[name] for name in streams}
    check_aligned(ordered)
    return ordered


def head_loss(model: VideoRecognizer, frames: Mapping[str, torch.Tensor], targets: torch.Tensor, *, mov_alpha: float = 0.5) -> torch.Tensor:
    """The training loss of one batch of frame features ``{stream: (B, T, D)}``: cross-entropy of the logits, or for a
    MOV fusion MOV's Eq. 9 (``α`` = ``mov_alpha``, ``τ`` = 1 / the head's scale) on the fused outputs -- what
    ``model(inputs, embed=True)`` gives from pixels."""
    if model.fused_outputs:
        out = model._fuse(frames).map(model.head.embed)
        return mov_loss(out.video.float(), out.other.float(), model.head.weight, targets, alpha=mov_alpha, tau=1.0 / model.head.logit_scale)
    return F.cross_entropy(model.logits_from_frame_features(frames).float(), targets)


def train_head(
    model: VideoRecognizer,
    caches: Caches,
    *,
    epochs: int = 10,
    lr: float = 1e-3,
    min_lr: float = 1e-5,
    weight_decay: float = 0.2,
    batch_size: int = 64,
    warmup_epochs: float = 1.0,
    seed: int = 0,
    view: int | None = None,
    mov_alpha: float = 0.5,
) -> list[float]:
    """Fit ``model``'s temporal modules, fusion and head on the cache(s) (one random view per clip and step, the same
    in every stream, unless ``view`` is fixed). ``caches``: one cache, or ``{stream: cache}`` for a multi-stream
    recogniser (:func:`stream_caches`). Returns the mean loss of every epoch."""
    caches = stream_caches(model, caches)
    groups = model.parameter_groups()
    params = groups["head"] + groups["label_encoder"]
    if not params:
        raise ValueError("nothing to train: the head and temporal module have no trainable parameters")
    first = next(iter(caches.values()))
    n, views = len(first), first.views
    steps_per_epoch = max(1, math.ceil(n / batch_size))
    total = steps_per_epoch * epochs
    optimizer = build_adamw(params, lr=lr, weight_decay=weight_decay)
    scheduler = cosine_with_warmup(
        optimizer, total_steps=total, warmup_steps=min(total, round(warmup_epochs * steps_per_epoch)), base_lr=lr, min_lr=min(min_lr, lr)
    )
    g = torch.Generator().manual_seed(seed)
    frames = {name: cache.frames for name, cache in caches.items()}
    targets = first.targets
    history = []
    model.train()
    for _ in range(epochs):
        order = torch.randperm(n, generator=g)
        total_loss = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            v = torch.randint(views, (len(idx),), generator=g) if view is None else torch.full((len(idx),), view)
            loss = head_loss(model, {name: f[idx, v] for name, f in frames.items()}, targets[idx], mov_alpha=mov_alpha)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total_loss += float(loss.detach()) * len(idx)
        history.append(total_loss / n)
    model.eval()
    return history


@torch.inference_mode()
def evaluate_head(model: VideoRecognizer, caches: Caches, *, batch_size: int = 256) -> dict:
    """Top-1 / top-5 / mean-class accuracy over all cached views, by the one multi-view rule of
    :mod:`openvocab.scoring` (per-view probabilities averaged). A MOV recogniser's per-view logits are its base-class
    ones (Eq. 10; the score fusion's averaged probabilities)."""
    from openvocab.eval.metrics import mean_class_accuracy, topk_accuracy
    from openvocab.scoring import view_probabilities

    caches = stream_caches(model, caches)
    model.eval()
    first = next(iter(caches.values()))
    n, views = len(first), first.views
    probs = []
    for start in range(0, n, batch_size):
        part = {name: c.frames[start : start + batch_size].reshape(-1, *c.frames.shape[2:]) for name, c in caches.items()}
        logits = model.logits_from_frame_features(part).float()
        probs.append(view_probabilities(logits.reshape(-1, views, logits.shape[-1])))
    probs = torch.cat(probs)
    c = probs.shape[1]
    acc = topk_accuracy(probs, first.targets, ks=(1, min(5, c)))
    return {"top1": acc[1], "top5": acc[min(5, c)], "mean_class": mean_class_accuracy(probs, first.targets, num_classes=c), "videos": n}
