"""Optimiser and learning-rate schedule of the Text4Vis recipe (Appendix B.1, Table A.3).

Table A.3: AdamW, betas (0.9, 0.98), weight decay 0.2, learning rate (base, minimal) = (5e-5, 5e-6) with a cosine
schedule after a linear warm-up (5 of 30 epochs). Here the schedule is per optimiser STEP (convert epochs to steps
with ``epochs × iterations_per_epoch``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["WarmupCosine", "build_adamw", "cosine_with_warmup", "no_weight_decay"]


class WarmupCosine:
    """``lr(step) / base_lr`` of :func:`cosine_with_warmup`: a callable object (not a lambda) whose ``__dict__`` is
    plain JSON, so :class:`torch.optim.lr_scheduler.LambdaLR` saves and restores it with its ``state_dict``."""

    def __init__(self, *, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> None:
        self.total_steps = int(total_steps)
        self.warmup_steps = int(warmup_steps)
        self.base_lr = float(base_lr)
        self.min_lr = float(min_lr)

    def lr(self, step: int) -> float:
        """The closed form (Text4Vis ``WarmupCosineAnnealingLR``, per step):

        * ``step < W``: ``base · step / W`` (linear warm-up from 0);
        * ``W <= step``: ``min + (base − min) · (1 + cos(pi · p)) / 2`` with ``p = min(1, (step − W) / (T − W))``.
        """
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        span = max(1, self.total_steps - self.warmup_steps)
        progress = min(1.0, (step - self.warmup_steps) / span)
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def __call__(self, step: int) -> float:
        return self.lr(step) / self.base_lr


def cosine_with_warmup(
    optimizer: torch.optim.Optimizer,
    *,
    total_steps: int,
    warmup_steps: int,
    base_lr: float,
    min_lr: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up then cosine decay from ``base_lr`` to ``min_lr`` (Table A.3: 5e-5 → 5e-6), stepped per
    optimiser step (call ``scheduler.step()`` after each ``optimizer.step()``).

    The optimiser's ``lr`` is set to ``lr(0)`` at construction and to ``lr(s)`` after ``s`` calls of ``step()``
    (:meth:`WarmupCosine.lr`). Param groups whose initial ``lr`` differs from ``base_lr`` (e.g. Text4Vis' smaller
    ratio for the pretrained CLIP tower) follow the same curve scaled by ``group_lr / base_lr``. The returned
    ``LambdaLR`` has a JSON-able ``state_dict`` (see :mod:`openvocab.models.checkpoint`).
    """
    if total_steps < 1 or warmup_steps < 0 or warmup_steps > total_steps:
        raise ValueError(f"need 0 <= warmup_steps <= total_steps and total_steps >= 1, got {warmup_steps}, {total_steps}")
    if base_lr <= 0 or min_lr < 0 or min_lr > base_lr:
        raise ValueError(f"need 0 <= min_lr <= base_lr and base_lr > 0, got base_lr={base_lr}, min_lr={min_lr}")
    curve = WarmupCosine(total_steps=total_steps, warmup_steps=warmup_steps, base_lr=base_lr, min_lr=min_lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, curve)


_NO_DECAY_NAMES = (
    "bias",
    "logit_scale",
    "norm",  # LayerNorm / *_norm / layernorm
    "ln_",  # OpenAI CLIP's ln_1, ln_2, ln_pre, ln_post, ln_final
    "embedding",  # position_embedding, class_embedding, token_embedding, positional_embedding
    "pos_embed",
    "cls_token",
    "prompt",  # learnable prompt contexts (CoOp)
)
_NO_DECAY_MODULES = (nn.Embedding, nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.RMSNorm)


def no_weight_decay(name: str, param: torch.Tensor, module: nn.Module | None = None) -> bool:
    """True for parameters that CLIP/Text4Vis practice leaves out of weight decay: biases, normalisation weights,
    embeddings (token/position/class), the logit scale, learnable prompts and any 0-d/1-d tensor.

    Matching is by the ``param.ndim < 2`` rule, by the owning module's type when known (embedding or norm layers),
    and by name fragments (``bias``, ``norm``, ``ln_``, ``embedding``, ``logit_scale``, ...). A patch-embedding CONV
    (``patch_embedding.weight``, 4-d) is a projection and keeps its weight decay.
    """
    if param.ndim < 2:
        return True
    if module is not None and isinstance(module, _NO_DECAY_MODULES):
        return True
    lowered = name.lower()
    if "patch_embedding" in lowered or "patch_embed" in lowered:
        return False
    return any(fragment in lowered for fragment in _NO_DECAY_NAMES)


def _named(params: nn.Module | Iterable[tuple[str, nn.Parameter]]) -> list[tuple[str, nn.Parameter, nn.Module | None]]:
    if isinstance(params, nn.Module):
        owners = {}
        for mod_name, mod in params.named_modules():
            for p_name, _ in mod.named_parameters(recurse=False):
                owners[f"{mod_name}.{p_name}" if mod_name else p_name] = mod
        return [(n, p, owners.get(n)) for n, p in params.named_parameters()]
    out = []
    for item in params:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)):
            raise TypeError("build_adamw needs named parameters: a module, (name, param) pairs or groups of them")
        out.append((item[0], item[1], None))
    return out


def build_adamw(
    params_or_groups: nn.Module | Iterable[tuple[str, nn.Parameter]] | Sequence[Mapping[str, Any]],
    *,
    lr: float,
    weight_decay: float = 0.2,
    betas: tuple[float, float] = (0.9, 0.98),
    eps: float = 1e-8,
) -> torch.optim.AdamW:
    """AdamW with the Table A.3 defaults and no weight decay where CLIP practice has none (:func:`no_weight_decay`).

    Args:
        params_or_groups: a module, an iterable of ``(name, parameter)`` pairs (``model.named_parameters()``), or a
            sequence of groups ``{"named_params": <module or pairs>, "lr": ..., "weight_decay": ..., ...}`` (e.g. a
            smaller lr for the pretrained tower, Text4Vis' ``clip_ratio``). Parameters with ``requires_grad=False``
            are skipped; a parameter listed twice is kept once.
        lr, weight_decay, betas, eps: defaults for every group (a group's own keys win).

    Returns:
        ``torch.optim.AdamW`` whose param groups come in pairs ``<group>/decay`` and ``<group>/no_decay`` (empty
        ones dropped), each carrying ``group_name`` and ``param_names`` (for readable checkpoint errors).
    """
    if isinstance(params_or_groups, nn.Module) or not (
        isinstance(params_or_groups, Sequence) and params_or_groups and isinstance(params_or_groups[0], Mapping)
    ):
        groups: list[Mapping[str, Any]] = [{"named_params": params_or_groups}]
    else:
        groups = list(params_or_groups)
    seen: set[int] = set()
    torch_groups: list[dict[str, Any]] = []
    for g_index, group in enumerate(groups):
        options = {k: v for k, v in group.items() if k != "named_params"}
        label = str(options.pop("name", f"group{g_index}"))
        decay: list[tuple[str, nn.Parameter]] = []
        keep: list[tuple[str, nn.Parameter]] = []
        for name, param, module in _named(group["named_params"]):
            if not param.requires_grad or id(param) in seen:
                continue
            seen.add(id(param))
            (keep if no_weight_decay(name, param, module) else decay).append((name, param))
        wd = float(options.pop("weight_decay", weight_decay))
        for suffix, members, decay_value in (("decay", decay, wd), ("no_decay", keep, 0.0)):
            if members:
                torch_groups.append(
                    {
                        **options,
                        "params": [p for _, p in members],
                        "param_names": [n for n, _ in members],
                        "weight_decay": decay_value,
                        "group_name": f"{label}/{suffix}",
                    }
                )
    if not torch_groups:
        raise ValueError("build_adamw: no trainable parameters")
    return torch.optim.AdamW(torch_groups, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)
