"""Cheap, stable digests of tensors: a strided sample of each tensor, not every byte.

Used where openvocab must recognise weights again -- the label bank's text-tower fingerprint
(:attr:`~openvocab.models.backbone.ClipBackbone.fingerprint`) and the frozen pretrained tensors a training checkpoint
leaves out (:mod:`openvocab.models.checkpoint`). Each tensor contributes its name, shape and up to 4,096 evenly spaced
values (as float32), so digesting even ViT-L/14 takes milliseconds while any fine-tuning or other checkpoint changes
the result. It identifies weights; it is not a security hash.
"""

from __future__ import annotations

import hashlib

import torch

SAMPLE = 4096


def update_digest(h: hashlib._Hash, name: str, tensor: torch.Tensor) -> None:
    """Feed ``name``, the shape and a strided sample of ``tensor`` into the hash object ``h``."""
    flat = tensor.detach().reshape(-1)
    step = max(1, flat.numel() // SAMPLE)
    sample = flat[::step][:SAMPLE].to(device="cpu", dtype=torch.float32).contiguous()
    h.update(name.encode())
    h.update(str(tuple(tensor.shape)).encode())
    h.update(sample.numpy().tobytes())


def tensor_digest(name: str, tensor: torch.Tensor) -> str:
    """The 16-hex-digit digest of one named tensor."""
    h = hashlib.sha256()
    update_digest(h, name, tensor)
    return h.hexdigest()[:16]
