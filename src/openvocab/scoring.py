"""Scoring video embeddings against label embeddings -- the one scoring path of openvocab.

* Cosine similarity times CLIP's logit scale (CLIP; Text4Vis Eq. 5 with the frozen text classifier
  ``W̃`` of L2-normalised label embeddings; MOV Eq. 8 ``s_i = <V, B_i> / τ``).
* Temporal average pooling (TAP) of frame embeddings into one clip embedding (Text4Vis §3.2 / Table 9 "TAP").
* Single-label: softmax over the vocabulary. Multi-label: an independent sigmoid per label, ``σ(a·cos + b)`` with
  the scale ``a`` (passed as ``logit_scale``) and bias ``b`` of the model's :class:`~openvocab.calibration.Calibration`
  (``openvocab calibrate``, or its documented default).
* Multi-view testing -- THE one rule, :func:`average_views`: every view (temporal clip × spatial crop) is pooled,
  scored and turned into probabilities on its own, and the probabilities are averaged over the views (Text4Vis §3
  "4×3 views", MOV §4.2 "the final score is averaged over 12 views"). ``classify``, ``evaluate``, the trainer's
  validation and head training all score through :func:`view_probabilities` / :func:`clip_scores`, so a run's
  logged ``val_top1`` at 4x3 and ``openvocab evaluate --views 4x3`` agree.
* Per-segment scoring (:func:`score_segments`): a timeline of which label where.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

#: A temporal pooling: ``(..., T, D) -> (..., D)`` (TAP, or a trained run's temporal module + projection; a MOV run's
#: gives ``(..., 3, D)``, see :func:`mov_probabilities`).
Pool = Callable[[torch.Tensor], torch.Tensor]
#: Probabilities of pooled views: ``(N, *E) pooled, (L, D) labels -> (N, L)``; default: softmax/sigmoid of scaled cosines.
Probabilities = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def l2_normalize(x: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """Unit-normalise along the last dimension."""
    return x / x.norm(dim=-1, keepdim=True).clamp_min(eps)


def temporal_average(frame_embeddings: torch.Tensor, *, dim: int = -2) -> torch.Tensor:
    """TAP: the mean of per-frame embeddings over the time dimension (Text4Vis §3.2)."""
    return frame_embeddings.mean(dim=dim)


def similarity_logits(video_embeddings: torch.Tensor, label_embeddings: torch.Tensor, *, logit_scale: float) -> torch.Tensor:
    """``scale · cos(video, label)``: ``(..., D) × (L, D) -> (..., L)``. Neither input needs to be normalised."""
    v = l2_normalize(video_embeddings.float())
    t = l2_normalize(label_embeddings.float().to(v.device))
    return logit_scale * (v @ t.T)


def label_probabilities(logits: torch.Tensor, *, multi_label: bool = False, bias: float | None = None) -> torch.Tensor:
    """Turn similarity logits into scores in [0, 1].

    Single-label: softmax over the vocabulary (rows sum to 1). Multi-label: ``sigmoid(logits + bias)`` per label, where
    ``logits = a·cos`` and ``bias = b`` come from the model's calibration (:mod:`openvocab.calibration`); required.
    """
    if not multi_label:
        return logits.softmax(dim=-1)
    if bias is None:
        raise ValueError("multi-label scoring needs the calibration's bias (openvocab.calibration.calibration_of)")
    return torch.sigmoid(logits + bias)


def average_views(view_probabilities: torch.Tensor, *, dim: int = -2) -> torch.Tensor:
    """The multi-view rule: the mean of per-view probabilities over the view dimension (``(..., V, L) -> (..., L)``)."""
    return view_probabilities.mean(dim=dim)


def view_probabilities(view_logits: torch.Tensor, *, multi_label: bool = False, bias: float | None = None) -> torch.Tensor:
    """Per-view logits ``(..., V, L)`` -> clip scores ``(..., L)``: probabilities per view, then :func:`average_views`.

    For heads whose logits are not a scaled cosine (the linear probe) this is the whole scoring path."""
    return average_views(label_probabilities(view_logits.float(), multi_label=multi_label, bias=bias))


def clip_scores(
    view_embeddings: torch.Tensor, label_embeddings: torch.Tensor, *, logit_scale: float, multi_label: bool = False, bias: float | None = None
) -> torch.Tensor:
    """Pooled view embeddings ``(..., V, D)`` against labels ``(L, D)`` -> clip scores ``(..., L)``: cosine × scale
    per view, probabilities per view, averaged over views (:func:`average_views`). Multi-label: ``logit_scale`` and
    ``bias`` are the calibration's ``a`` and ``b`` (``σ(a·cos + b)``)."""
    logits = similarity_logits(view_embeddings, label_embeddings, logit_scale=logit_scale)
    return view_probabilities(logits, multi_label=multi_label, bias=bias)


def score_views(
    view_frame_embeddings: torch.Tensor,
    label_embeddings: torch.Tensor,
    *,
    logit_scale: float,
    multi_label: bool = False,
    bias: float | None = None,
    pool: Pool | None = None,
    probabilities: Probabilities | None = None,
) -> torch.Tensor:
    """Clip-level scores from per-view frame embeddings.

    ``view_frame_embeddings``: ``(crops, temporal_views, T, D)``. Each view is pooled (``pool``, default TAP),
    scored, turned into probabilities, and the probabilities are averaged over all ``crops × temporal_views`` views.
    ``pool`` maps ``(..., T, D) -> (..., D)`` (a trained run's temporal module, see
    :mod:`openvocab.classifier`); its output may live in another width than the frames (a head's projection).
    ``probabilities`` replaces the per-view softmax/sigmoid (MOV's Eq. 10-12, :func:`mov_probabilities`); the views'
    probabilities are averaged either way. Returns ``(L,)``.
    """
    clip_embeddings = temporal_average(view_frame_embeddings, dim=-2) if pool is None else pool(view_frame_embeddings)  # (C, V, *E)
    flat = clip_embeddings.reshape(-1, *clip_embeddings.shape[2:])  # (C*V, *E): every view
    if probabilities is not None:
        return average_views(probabilities(flat, label_embeddings), dim=0)
    return clip_scores(flat, label_embeddings, logit_scale=logit_scale, multi_label=multi_label, bias=bias)


def score_segments(
    frame_embeddings: torch.Tensor,
    frame_times: torch.Tensor,
    label_embeddings: torch.Tensor,
    *,
    boundaries: torch.Tensor,
    logit_scale: float,
    multi_label: bool = False,
    bias: float | None = None,
    pool: Pool | None = None,
    probabilities: Probabilities | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-segment scores: a timeline of which label where.

    ``frame_embeddings`` ``(F, D)`` with presentation times ``frame_times`` ``(F,)``; ``boundaries`` ``(K+1,)``
    ascending seconds. Segment ``k`` pools (TAP) the frames with ``boundaries[k] <= t < boundaries[k+1]`` (the last
    segment includes its end). Returns ``(scores (K', L), kept segment indices (K',))`` -- segments that received
    no sampled frame are left out. With ``pool`` (``(..., T, D) -> (..., D)``, e.g. a T-Trans) each segment's
    frames are put in time order and pooled by it, one segment per call. ``probabilities`` as in :func:`score_views`.
    """
    k = boundaries.numel() - 1
    seg = torch.bucketize(frame_times.contiguous(), boundaries[1:-1].contiguous(), right=True).clamp_(0, k - 1)
    kept = torch.unique(seg)
    if pool is None:
        pooled = torch.stack([temporal_average(frame_embeddings[seg == s], dim=0) for s in kept.tolist()]) if kept.numel() else frame_embeddings[:0]
    else:
        rows = []
        for s in kept.tolist():
            idx = torch.nonzero(seg == s).flatten()
            idx = idx[torch.argsort(frame_times[idx], stable=True)]
            rows.append(pool(frame_embeddings[idx]))
        if not rows:
            return label_embeddings.new_zeros(0, label_embeddings.shape[0]), kept
        pooled = torch.stack(rows)
    if probabilities is not None:
        return probabilities(pooled, label_embeddings), kept
    logits = similarity_logits(pooled, label_embeddings, logit_scale=logit_scale)
    return label_probabilities(logits, multi_label=multi_label, bias=bias), kept


# ---------------------------------------------------------------------------------------------------------------------
# MOV base / novel inference (MOV §3.3-3.4)
# ---------------------------------------------------------------------------------------------------------------------
#: MOV's temperatures (§3.4, Appendix A / Table 7): τ for the fused features (CLIP's default 0.01), a lower τ_v for the
#: frozen video feature, whose distribution is otherwise much flatter than the fused flow/audio one.
MOV_TAU = 0.01
MOV_TAU_VIDEO = 0.003
#: β of Eq. 12 (§4.2 "For novel classes, we set the weight β in Eq. 12 to 0.25").
MOV_BETA = 0.25


def mov_base_probabilities(fused_video: torch.Tensor, label_embeddings: torch.Tensor, *, tau: float = MOV_TAU) -> torch.Tensor:
    """MOV Eq. 10: ``P(j) = softmax_j(sim(v_m, B_j) / τ)`` over base-class embeddings ``B`` ``(p, D)``; ``fused_video``
    is the fused multimodal video feature ``v_m`` ``(..., D)``."""
    return label_probabilities(similarity_logits(fused_video, label_embeddings, logit_scale=1.0 / tau))


def mov_novel_probabilities(
    fused_other: torch.Tensor,
    frozen_video: torch.Tensor,
    label_embeddings: torch.Tensor,
    *,
    tau_other: float = MOV_TAU,
    tau_video: float = MOV_TAU_VIDEO,
    beta: float = MOV_BETA,
) -> torch.Tensor:
    """MOV Eq. 11-12: ``P(j) = β·softmax_j(sim(x_m, N_j)/τ_x) + (1 − β)·softmax_j(sim(v, N_j)/τ_v)``.

    ``fused_other`` is the fused flow or audio feature ``x_m`` ``(..., D)``; ``frozen_video`` the temporally averaged
    feature of the FROZEN video backbone ``v`` ``(..., D)`` (not the trained ``v_m``: it keeps CLIP's generalisation);
    ``label_embeddings`` the novel-class embeddings ``N`` ``(q, D)``. Rows sum to 1.
    """
    if not 0.0 <= beta <= 1.0:
        raise ValueError(f"beta must be in [0, 1], got {beta}")
    p_other = label_probabilities(similarity_logits(fused_other, label_embeddings, logit_scale=1.0 / tau_other))
    p_video = label_probabilities(similarity_logits(frozen_video, label_embeddings, logit_scale=1.0 / tau_video))
    return beta * p_other + (1.0 - beta) * p_video


#: The MOV probability rules (:func:`mov_probabilities`).
MOV_RULES = ("base", "base-mean", "novel", "video")


def mov_probabilities(
    stacked: torch.Tensor,
    label_embeddings: torch.Tensor,
    *,
    rule: str,
    tau: float = MOV_TAU,
    tau_video: float = MOV_TAU_VIDEO,
    beta: float = MOV_BETA,
) -> torch.Tensor:
    """Probabilities of MOV outputs packed as ``(..., 3, D)`` = ``(v_m, x_m, v)`` (``MovOutputs.stack``).

    ``rule``: ``"base"`` -- Eq. 10 on ``v_m``; ``"base-mean"`` -- Table 5's score fusion, the mean of Eq. 10 on
    ``v_m`` and on ``x_m`` (both at ``τ``); ``"novel"`` -- Eq. 11-12; ``"video"`` -- the frozen video feature alone at
    ``τ`` -- zero-shot CLIP on the frozen video feature, a MOV run's fallback for a video without the other modality
    (the ranking of Eq. 12 with ``β = 0``; at CLIP's own temperature, not the sharper ``τ_v`` tuned for mixing). Returns ``(..., L)``.
    """
    if stacked.shape[-2] != 3:
        raise ValueError(f"MOV outputs are packed as (..., 3, D), got {tuple(stacked.shape)}")
    fused_video, fused_other, frozen = stacked[..., 0, :], stacked[..., 1, :], stacked[..., 2, :]
    if rule == "base":
        return mov_base_probabilities(fused_video, label_embeddings, tau=tau)
    if rule == "base-mean":
        return 0.5 * (mov_base_probabilities(fused_video, label_embeddings, tau=tau) + mov_base_probabilities(fused_other, label_embeddings, tau=tau))
    if rule == "novel":
        return mov_novel_probabilities(fused_other, frozen, label_embeddings, tau_other=tau, tau_video=tau_video, beta=beta)
    if rule == "video":
        return mov_base_probabilities(frozen, label_embeddings, tau=tau)
    raise ValueError(f"unknown MOV rule '{rule}' ({', '.join(MOV_RULES)})")
