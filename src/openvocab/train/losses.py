"""Training losses of the papers: Text4Vis (``../shared/papers/text4vis-revisiting-classifier.txt``), MOV and the
open-vocabulary multi-label paper.

* :func:`frozen_classifier_ce` — Eq. 3, the Text4Vis paradigm: cross-entropy over the scaled cosine similarity between
  the video embedding and a FROZEN classifier ``W~`` whose rows are the text embeddings of the class names (Eq. 6).
* :func:`distributed_infonce` — Eq. 2 with the batch gathering of Appendix C.3 / Algorithm 1: the contrastive
  (ActionCLIP-style) paradigm that Text4Vis compares against in §4.3 "Ours vs. contrastive" (Table 9).
* :func:`mov_loss` — MOV Eq. 9: the fused video and the fused flow/audio features, each against the frozen classes.
* :func:`multilabel_bce` — the multi-label paper's Eq. 2: weighted binary cross-entropy of ``σ(cos/τ)`` over the
  batch's ``4B`` classes (:func:`openvocab.train.samplers.batch_classes` builds them, §3.3).

Reduction convention of :func:`distributed_infonce` (proven by ``tests/test_train_losses.py``): with M ranks each
holding N pairs, rank k returns ``L_k`` = the mean over its N local rows of the two N·M-way cross-entropies, averaged
over the two directions. Then

* ``mean_k L_k`` equals the single-process InfoNCE over the full N·M batch (the NM×NM similarity matrix);
* the gradient that ``L_k.backward()`` leaves on rank k's local inputs equals ``M ×`` the full-batch gradient of those
  rows (the gather's backward SUMS the contributions of every rank's loss, i.e. it differentiates ``sum_k L_k``);
* therefore DDP's all-reduce-MEAN of parameter gradients gives exactly the full-batch gradient of the model.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from openvocab.errors import InputError
from openvocab.scoring import similarity_logits

__all__ = ["distributed_infonce", "frozen_classifier_ce", "gather_with_grad", "mov_loss", "multilabel_bce", "targets_from_labels"]


def frozen_classifier_ce(
    video_emb: Tensor,
    classifier: Tensor,
    targets: Tensor,
    *,
    logit_scale: float | Tensor,
    label_smoothing: float = 0.0,
) -> Tensor:
    """Text4Vis Eq. 3: ``H(y | softmax(s · cos(g_V(x), W~)))`` with a frozen classifier ``W~``.

    Args:
        video_emb: ``(B, D)`` clip embeddings ``g_V(x)`` (gradients flow into the visual side).
        classifier: ``(C, D)`` classifier rows ``W~_i = g_T(l_i)`` (Eq. 6), or any other fixed initialisation of §2.2
            (random, orthogonal, LDA). It is DETACHED: Eq. 3 optimises only ``Theta_V``, so ``W~`` never receives a
            gradient even if it is a ``requires_grad`` parameter.
        targets: ``(B,)`` integer class indices (single-label; the multi-label losses live elsewhere).
        logit_scale: the multiplier ``s`` applied to the cosine similarities (CLIP's ``exp(logit_scale)``, ~100);
            a tensor may carry a gradient if the scale is learnt.
        label_smoothing: passed to :func:`torch.nn.functional.cross_entropy`.

    Returns:
        The mean cross-entropy over the batch (a 0-d tensor).
    """
    if video_emb.ndim != 2 or classifier.ndim != 2 or video_emb.shape[1] != classifier.shape[1]:
        raise ValueError(f"frozen_classifier_ce needs video_emb (B, D) and classifier (C, D); got {tuple(video_emb.shape)} and {tuple(classifier.shape)}")
    if targets.ndim != 1 or targets.shape[0] != video_emb.shape[0] or targets.is_floating_point():
        raise ValueError(f"targets must be (B,) integer class indices, got {tuple(targets.shape)} {targets.dtype}")
    logits = similarity_logits(video_emb, classifier.detach(), logit_scale=logit_scale)  # the one scoring path
    return F.cross_entropy(logits, targets, label_smoothing=label_smoothing)


def mov_loss(fused_video: Tensor, fused_other: Tensor, classifier: Tensor, targets: Tensor, *, alpha: float = 0.5, tau: float = 0.01) -> Tensor:
    """MOV Eq. 9: ``α·CE(sim(v_m, B)/τ, y) + (1 − α)·CE(sim(x_m, B)/τ, y)``.

    ``fused_video`` is ``v_m`` and ``fused_other`` the fused flow or audio feature ``x_m`` (both ``(B, D)``), scored
    against the frozen base-class text embeddings ``B`` ``(p, D)`` (detached, as in :func:`frozen_classifier_ce`) at
    the temperature ``τ`` (CLIP's 0.01); ``α = 0.5`` (§4.2). Both terms are :func:`frozen_classifier_ce`, the one
    scoring path.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha}")
    scale = 1.0 / tau
    return alpha * frozen_classifier_ce(fused_video, classifier, targets, logit_scale=scale) + (1.0 - alpha) * frozen_classifier_ce(
        fused_other, classifier, targets, logit_scale=scale
    )


def targets_from_labels(row_labels: Tensor, col_labels: Tensor | None = None) -> Tensor:
    """Soft multi-positive targets: ``T[i, j] = [row_labels[i] == col_labels[j]] / #positives(i)``.

    ActionCLIP fine-tunes with video-text pairs whose texts are class names, so several videos of a batch share the
    same text. Plain InfoNCE (Algorithm 1) then treats the duplicate texts of the same class as negatives. ActionCLIP
    instead builds a ground-truth similarity matrix (1 where the two samples have the same class) and minimises the
    KL divergence between the softmax of the logits and that matrix normalised per row. Minimising the KL divergence
    or the cross-entropy against the same target distribution has identical gradients (they differ by the target's
    entropy, a constant), so :func:`distributed_infonce` uses the soft-target cross-entropy these targets define.
    (ActionCLIP's code normalises with ``softmax(10 · gt)``, which puts ~e^-10 mass on negatives; the exact
    per-row normalisation used here puts none.)

    Args:
        row_labels: ``(N,)`` class ids of the rows (the local samples).
        col_labels: ``(K,)`` class ids of the columns (the gathered samples); defaults to ``row_labels``.

    Returns:
        ``(N, K)`` float targets whose rows sum to 1 (each row has at least one positive when its own sample is
        among the columns).
    """
    col_labels = row_labels if col_labels is None else col_labels
    same = (row_labels.reshape(-1, 1) == col_labels.reshape(1, -1)).float()
    count = same.sum(dim=1, keepdim=True)
    if bool((count == 0).any()):
        raise ValueError("targets_from_labels: a row label has no positive among the column labels")
    return same / count


class _GatherWithGrad(torch.autograd.Function):
    """All-gather (concatenate along dim 0) whose backward sends every rank's gradient back to the owning shard.

    Backward all-reduces (SUM) the gradient of the gathered tensor and returns this rank's slice, so the local
    shard receives ``d(sum_k L_k)/d(shard)`` through the gathered copies. Works on any backend (gloo, NCCL) because
    it needs only ``all_gather`` and ``all_reduce``. All ranks must pass shards of the same shape.
    """

    @staticmethod
    def forward(ctx, tensor: Tensor, group) -> Tensor:  # type: ignore[override]
        import torch.distributed as dist

        world = dist.get_world_size(group=group)
        ctx.group = group
        ctx.rank = dist.get_rank(group=group)
        ctx.size = tensor.shape[0]
        parts = [torch.empty_like(tensor) for _ in range(world)]
        dist.all_gather(parts, tensor.contiguous(), group=group)
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        import torch.distributed as dist

        grad = grad_output.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM, group=ctx.group)
        start = ctx.rank * ctx.size
        return grad[start : start + ctx.size], None


def _dist_info(group) -> tuple[int, int]:
    """(rank, world size) of ``group``, or (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return 0, 1
    return dist.get_rank(group=group), dist.get_world_size(group=group)


def gather_with_grad(tensor: Tensor, *, group=None) -> Tensor:
    """``batch_gather`` of Algorithm 1: concatenate the ``(N, ...)`` shards of all ranks into ``(N·M, ...)``.

    Differentiable (see :class:`_GatherWithGrad`); the identity when not distributed or with one rank.
    """
    _, world = _dist_info(group)
    if world == 1:
        return tensor
    return _GatherWithGrad.apply(tensor, group)


def _gather_no_grad(tensor: Tensor, group) -> Tensor:
    import torch.distributed as dist

    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size(group=group))]
    dist.all_gather(parts, tensor.contiguous(), group=group)
    return torch.cat(parts, dim=0)


def distributed_infonce(
    vision: Tensor,
    text: Tensor,
    *,
    logit_scale: float | Tensor,
    labels: Tensor | None = None,
    group=None,
) -> Tensor:
    """Symmetric InfoNCE with batch gathering — Text4Vis Eq. 2 as computed by Algorithm 1 (Appendix C.3).

    Each rank L2-normalises its ``N`` local vision and text features, gathers both modalities from all ``M`` ranks
    (with gradient flowing back to the local shard), and computes the local ``(N, N·M)`` logits
    ``s · v_local @ t_all^T`` and ``s · t_local @ v_all^T``. The positive of local row ``i`` is column
    ``rank·N + i``. The loss is the mean of the two cross-entropies (vision→text and text→vision), each averaged over
    the N local rows. See the module docstring for how the per-rank losses and gradients relate to the full-batch
    InfoNCE (DDP's gradient mean makes them identical). Without an initialised process group (or with one rank) this
    is plain single-process InfoNCE over the batch.

    Args:
        vision: ``(N, D)`` local vision (video) features.
        text: ``(N, D)`` local text features, row ``i`` paired with ``vision[i]``.
        logit_scale: the multiplier ``s`` (CLIP's ``exp(logit_scale)``); a tensor may carry a gradient.
        labels: optional ``(N,)`` integer class ids. When given, samples of the same class are all positives of each
            other (ActionCLIP-style duplicate texts) via :func:`targets_from_labels`; the default ``None`` is the
            plain one-positive InfoNCE of Algorithm 1.
        group: the process group (default: the world). All ranks must hold the same N.

    Returns:
        This rank's loss ``L_k`` (0-d tensor).
    """
    if vision.ndim != 2 or vision.shape != text.shape:
        raise ValueError(f"distributed_infonce needs vision and text of the same (N, D) shape; got {tuple(vision.shape)} and {tuple(text.shape)}")
    rank, world = _dist_info(group)
    n = vision.shape[0]
    v_local = F.normalize(vision, dim=-1)
    t_local = F.normalize(text, dim=-1)
    v_all = gather_with_grad(v_local, group=group)
    t_all = gather_with_grad(t_local, group=group)
    logits_vision = logit_scale * v_local @ t_all.t()  # (N, N·M)
    logits_text = logit_scale * t_local @ v_all.t()  # (N, N·M)
    if labels is None:
        targets: Tensor = torch.arange(n, device=vision.device) + rank * n
    else:
        if labels.shape != (n,):
            raise ValueError(f"labels must be ({n},), got {tuple(labels.shape)}")
        labels = labels.to(vision.device)
        all_labels = labels if world == 1 else _gather_no_grad(labels, group)
        targets = targets_from_labels(labels, all_labels).to(logits_vision.dtype)
    return 0.5 * (F.cross_entropy(logits_vision, targets) + F.cross_entropy(logits_text, targets))


def multilabel_bce(video: Tensor, labels: Tensor, targets: Tensor, *, tau: float, negative_weight: float) -> Tensor:
    """Weighted binary cross-entropy of open-vocabulary multi-label §3.3, Eq. 2
    (``../shared/papers/open-vocabulary-multi-label.txt``).

    ``s(ℓ, v) = cos(f_t(ℓ), f_v(v))`` (Eq. 1; both sides are L2-normalised here, through
    :func:`openvocab.scoring.similarity_logits` with ``logit_scale = 1/τ``, the one scoring path), ``p = σ(s/τ)``, and

        ``L = −(1/B) Σ_v [ Σ_{ℓ∈P(v)} log p(ℓ, v) + w Σ_{ℓ∈N(v)} log(1 − p(ℓ, v)) ]``

    computed stably as ``log p = logsigmoid(s/τ)`` and ``log(1 − p) = logsigmoid(−s/τ)``.

    Normalisation: Eq. 2 SUMS over the videos of the batch; this returns that sum divided by ``B`` (the mean over
    videos), so the loss does not scale with the batch size. It is a constant factor ``1/B`` versus Eq. 2 (the
    number of classes ``K`` is not divided out: every video contributes all of its ``K`` pairs).

    Args:
        video: ``(B, D)`` video embeddings ``f_v(v)`` (need not be normalised; gradients flow).
        labels: ``(K, D)`` label embeddings ``f_t(ℓ)`` of the batch classes (need not be normalised; gradients flow,
            NOT detached — Eq. 2 trains both encoders).
        targets: ``(B, K)`` multi-hot, 1 where ``ℓ ∈ P(v)`` and 0 where ``ℓ ∈ N(v)`` (e.g. from
            :func:`openvocab.train.samplers.batch_classes`).
        tau: temperature ``τ > 0``.
        negative_weight: ``w > 0``, the weight of the negative term only.

    Returns:
        A 0-d float32 tensor.
    """
    if video.ndim != 2 or labels.ndim != 2 or video.shape[1] != labels.shape[1]:
        raise InputError(f"multilabel_bce needs video (B, D) and labels (K, D); got {tuple(video.shape)} and {tuple(labels.shape)}")
    if video.shape[0] < 1:
        raise InputError("multilabel_bce: the batch has no videos")
    if tuple(targets.shape) != (video.shape[0], labels.shape[0]):
        raise InputError(f"multilabel_bce: targets must be (B, K) = {(video.shape[0], labels.shape[0])}, got {tuple(targets.shape)}")
    if not (math.isfinite(tau) and tau > 0):
        raise InputError(f"multilabel_bce: tau must be > 0, got {tau}")
    if not (math.isfinite(negative_weight) and negative_weight > 0):
        raise InputError(f"multilabel_bce: negative_weight must be > 0, got {negative_weight}")
    logits = similarity_logits(video, labels, logit_scale=1.0 / tau)  # s / τ, (B, K)
    positive = targets.to(device=logits.device, dtype=logits.dtype)
    if bool(((positive != 0) & (positive != 1)).any()):
        raise InputError("multilabel_bce: targets must be multi-hot (only 0 and 1)")
    per_pair = positive * F.logsigmoid(logits) + negative_weight * (1.0 - positive) * F.logsigmoid(-logits)
    return -per_pair.sum() / video.shape[0]
