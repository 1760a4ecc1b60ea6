"""The CLIP backbone: one wrapper over a CLIP model that every path of openvocab goes through.

The model is transformers' ``CLIPModel`` (ViT image towers) or openvocab's own
:class:`~openvocab.models.clip_resnet.ClipResNetModel` (CLIP-ResNet, which transformers lacks; same attribute names).
It loads a hub id or a local directory (``from_pretrained``, safetensors), and exposes what the recognisers need:

* :meth:`ClipBackbone.encode_frames` -- per-frame image embeddings ``h(v)`` (CLIP's pooled, projected CLS token;
  MOV Eq. 1, Text4Vis §3 "frame-level representations"), identical to ``CLIPModel.get_image_features``;
* :meth:`ClipBackbone.vision_tokens` -- the CLS and patch tokens of every vision layer (for temporal modules that
  work inside the ViT, e.g. Text4Vis' TokenT1D, and MOV's cross-attention fusion);
* :meth:`ClipBackbone.encode_text` / :meth:`ClipBackbone.encode_prompts` -- text embeddings ``g(t)``;
* :attr:`ClipBackbone.logit_scale` -- CLIP's learned temperature, ``exp(logit_scale)``;
* :attr:`ClipBackbone.fingerprint` -- a stable id of the text tower's weights, the key of the label bank.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from openvocab.digest import update_digest
from openvocab.errors import ModelLoadError
from openvocab.io.transforms import CLIP_MEAN, CLIP_STD, ImageSpec
from openvocab.models.create import RANDOM_WEIGHTS_MARKER, build_random_clip

log = logging.getLogger(__name__)


#: Prompts per text-tower call. Prompts are sorted by token count first, so a batch pads to nearly its own length
#: and the size matters little for padding; measured on 2 CPU cores (ViT-B/32 text tower, Kinetics-400 x 28
#: templates) throughput is flat from 64 to 256 and drops at 512 (BENCHMARKS.md, "Label encoding (text tower)").
TEXT_BATCH_SIZE = 128

ProgressCallback = Callable[[int, int], None]


def _image_spec_from_dir(directory: Path | None, image_size: int) -> ImageSpec:
    default = ImageSpec(size=image_size, resize_short_side=image_size)
    if directory is None or not (directory / "preprocessor_config.json").is_file():
        return default
    try:
        cfg = json.loads((directory / "preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
    crop = cfg.get("crop_size", image_size)
    crop = crop.get("height", image_size) if isinstance(crop, dict) else int(crop)
    short = cfg.get("size", crop)
    short = short.get("shortest_edge", crop) if isinstance(short, dict) else int(short)
    mean = tuple(float(x) for x in cfg.get("image_mean", CLIP_MEAN))
    std = tuple(float(x) for x in cfg.get("image_std", CLIP_STD))
    return ImageSpec(size=int(crop), resize_short_side=int(short), mean=mean, std=std)  # type: ignore[arg-type]


def _model_type(directory: Path) -> str | None:
    try:
        return json.loads((directory / "config.json").read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None


def _load_clip_model(name_or_path: str, *, dtype: torch.dtype | None) -> tuple[nn.Module, Path | None]:
    """Load a ``CLIPModel`` (or a CLIP-ResNet directory) from a local directory or a hub id, turning every failure
    into one clear line."""
    from transformers import CLIPModel

    from openvocab.models.clip_resnet import ClipResNetConfig, ClipResNetModel
    from openvocab.text.tokenizer import (
        hub_download_hint,
        hub_offline,
        hub_unreachable,
        looks_like_local_path,
        missing_path_message,
    )

    local = Path(name_or_path).expanduser()
    kwargs = {"dtype": dtype} if dtype is not None else {}
    if local.exists():
        if not local.is_dir() or not (local / "config.json").is_file():
            original = local.is_file() or any((local / n).is_file() for n in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"))
            hint = (
                "an OpenAI / open_clip checkpoint: convert it once with `openvocab model convert SRC DIR` and pass DIR"
                if original
                else "pass a directory holding a CLIP checkpoint, e.g. one written by `openvocab model create --arch vit-b-32 DIR`"
            )
            raise ModelLoadError(f"not a model directory (no config.json); {hint}", path=local)
        if _model_type(local) == ClipResNetConfig.model_type:
            return ClipResNetModel.from_pretrained(local, dtype=dtype), local
        try:
            return CLIPModel.from_pretrained(str(local), **kwargs), local
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one line
            raise ModelLoadError(f"could not load a CLIP model from this directory ({type(exc).__name__}: {exc})", path=local) from None
    if looks_like_local_path(name_or_path):
        raise ModelLoadError(missing_path_message(name_or_path), path=local if name_or_path.startswith("~") else name_or_path)
    hint = hub_download_hint(name_or_path)
    try:  # the local Hugging Face cache first: no network, no retries
        model = CLIPModel.from_pretrained(name_or_path, local_files_only=True, **kwargs)
    except Exception:  # noqa: BLE001
        if hub_offline():
            raise ModelLoadError(f"model '{name_or_path}' is not in the local Hugging Face cache and the hub is offline; {hint}") from None
        unreachable = hub_unreachable(name_or_path)  # ~2 s at most, instead of ~30 s of retried requests and warnings
        if unreachable is not None:
            raise ModelLoadError(f"model '{name_or_path}' is not in the local Hugging Face cache and {unreachable}; {hint}") from None
        try:
            model = CLIPModel.from_pretrained(name_or_path, **kwargs)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"could not load model '{name_or_path}' ({type(exc).__name__}); {hint}") from None
    snapshot = getattr(model, "name_or_path", None)
    cached = Path(snapshot) if snapshot and Path(snapshot).is_dir() else None
    return model, cached


class ClipBackbone(nn.Module):
    """A CLIP model plus its tokenizer and image preprocessing spec.

    Build it with :meth:`from_pretrained`; the wrapped ``transformers.CLIPModel`` is :attr:`clip`.
    """

    def __init__(self, *, clip: nn.Module, tokenizer, image_spec: ImageSpec, source: str, random_weights: bool = False) -> None:
        super().__init__()
        self.clip = clip.eval()
        self.tokenizer = tokenizer
        self.image_spec = image_spec
        self.source = source
        self.random_weights = random_weights
        self._fingerprint: str | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> ClipBackbone:
        """Load from a local directory or a hub id. Raises :class:`ModelLoadError` (one line) on any failure.

        ``random:ARCH`` (``random:vit-b-32`` ...) builds an architecture-exact model with seeded random weights in
        memory, for smoke tests and speed measurements where no checkpoint is at hand; it is flagged
        :attr:`random_weights` and the classifier warns that its scores are meaningless.
        """
        from openvocab.text.tokenizer import build_clip_tokenizer, load_tokenizer

        name = str(name_or_path)
        if name.startswith("random:"):
            from openvocab.errors import InputError

            try:
                clip = build_random_clip(name.split(":", 1)[1])
            except InputError as exc:
                raise ModelLoadError(f"--model {name}: {exc}") from None
            if dtype is not None:
                clip = clip.to(dtype)
            size = int(clip.config.vision_config.image_size)
            backbone = cls(
                clip=clip, tokenizer=build_clip_tokenizer(), image_spec=ImageSpec(size=size, resize_short_side=size), source=name, random_weights=True
            )
            return backbone.to(device)
        clip, directory = _load_clip_model(name, dtype=dtype)
        try:
            tokenizer = load_tokenizer(str(directory) if directory is not None else name)
        except ModelLoadError:
            if directory is None:
                raise
            log.warning("%s: no tokenizer files; using the standard CLIP BPE tokenizer", directory)
            tokenizer = build_clip_tokenizer()
        image_size = int(clip.config.vision_config.image_size)
        spec = _image_spec_from_dir(directory, image_size)
        random_weights = directory is not None and (directory / RANDOM_WEIGHTS_MARKER).is_file()
        backbone = cls(clip=clip, tokenizer=tokenizer, image_spec=spec, source=name, random_weights=random_weights)
        try:
            backbone.to(device)
        except (RuntimeError, AssertionError) as exc:
            raise ModelLoadError(f"cannot move the model to device '{device}' ({exc})") from None
        return backbone

    # ------------------------------------------------------------------ properties
    @property
    def device(self) -> torch.device:
        return next(self.clip.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.clip.parameters()).dtype

    @property
    def embed_dim(self) -> int:
        return int(self.clip.config.projection_dim)

    @property
    def context_length(self) -> int:
        return int(self.clip.config.text_config.max_position_embeddings)

    @property
    def num_vision_layers(self) -> int:
        return int(self.clip.config.vision_config.num_hidden_layers)

    @property
    def is_resnet(self) -> bool:
        """True for a CLIP-ResNet image tower (convolutional stages, attention pooling), False for a ViT."""
        return hasattr(self.clip.vision_model, "layer1")

    def describe(self) -> str:
        """One line on the image tower's architecture (for ``openvocab model info`` and logs)."""
        v = self.clip.config.vision_config
        if self.is_resnet:
            return f"CLIP-ResNet, blocks {tuple(v.layers)}, width {v.width}, attention pool {v.heads} heads, image {v.image_size}"
        return f"ViT, {v.num_hidden_layers} layers, width {v.hidden_size}, patch {v.patch_size}, image {v.image_size}"

    @property
    def logit_scale(self) -> float:
        """CLIP's temperature as a multiplier, ``exp(logit_scale)`` (100 for the released models)."""
        return float(self.clip.logit_scale.detach().exp().item())

    @property
    def fingerprint(self) -> str:
        """A stable hex id of everything that determines text embeddings: config, vocabulary and text weights.

        Each text-side tensor contributes its shape and a strided sample of up to 4,096 values, so computing it
        costs milliseconds even for ViT-L/14 while any fine-tuning or different checkpoint changes it.
        """
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(json.dumps(self.clip.config.text_config.to_dict(), sort_keys=True, default=str).encode())
            h.update(str(len(self.tokenizer)).encode())
            for name, tensor in sorted(self.clip.state_dict().items()):
                if not (name.startswith(("text_model.", "text_projection")) or name == "logit_scale"):
                    continue
                update_digest(h, name, tensor)
            self._fingerprint = h.hexdigest()[:24]
        return self._fingerprint

    # ------------------------------------------------------------------ vision
    def encode_frames(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings, one per frame: ``(N, 3, H, W) -> (N, D)`` (not L2-normalised).

        Equals ``CLIPModel.get_image_features(pixel_values).pooler_output`` (tested).
        """
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        native = pixel_values.shape[-2:] == (self.image_spec.size, self.image_spec.size)
        # other input sizes: position embeddings bilinearly interpolated (as MOV §4.1 does for spectrograms)
        out = self.clip.vision_model(pixel_values=pixel_values, interpolate_pos_encoding=not native, return_dict=True)
        return self.clip.visual_projection(out.pooler_output)

    def vision_tokens(self, pixel_values: torch.Tensor, *, layers: Sequence[int] | None = None) -> torch.Tensor:
        """CLS + patch tokens of the chosen vision layers: ``(N, 3, H, W) -> (N, len(layers), 1 + P, width)``.

        Layer ``0`` is the embedding output (after the pre-LayerNorm), layer ``k`` the output of block ``k``;
        ``None`` returns all ``num_vision_layers + 1``. ViT image towers only (a ResNet has feature maps, not tokens).
        """
        if self.is_resnet:
            raise ValueError(f"{self.source}: per-layer tokens need a ViT image tower; this is a CLIP-ResNet")
        pixel_values = pixel_values.to(device=self.device, dtype=self.dtype)
        out = self.clip.vision_model(pixel_values=pixel_values, output_hidden_states=True, return_dict=True)
        states = out.hidden_states
        chosen = range(len(states)) if layers is None else layers
        try:
            return torch.stack([states[i] for i in chosen], dim=1)
        except IndexError:
            raise ValueError(f"layers must be in 0..{len(states) - 1}, got {list(chosen)}") from None

    # ------------------------------------------------------------------ text
    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Projected text embeddings ``(M, L) -> (M, D)`` (not L2-normalised); equals ``get_text_features``."""
        input_ids = input_ids.to(self.device)
        if attention_mask is not None:
            attention_mask = attention_mask.to(self.device)
        out = self.clip.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return self.clip.text_projection(out.pooler_output)

    @torch.inference_mode()
    def encode_prompts(
        self,
        prompts: Sequence[str],
        *,
        batch_size: int = TEXT_BATCH_SIZE,
        progress: ProgressCallback | None = None,
        share_prefixes: bool = True,
    ) -> tuple[torch.Tensor, list[int]]:
        """Tokenize and encode prompts in batches; returns (float32 CPU embeddings (M, D), indices truncated).

        All prompts are tokenized in one call. Token prefixes that many prompts share (a template's "a photo of a
        person doing") are computed once and cached (``share_prefixes``; see :mod:`openvocab.models.text_encoding`);
        the rest of each prompt is sorted by length and batched ``batch_size`` at a time, each batch padded only to
        its own longest row; rows come back in input order. The result equals ``get_text_features`` on 77-token
        inputs up to float rounding (tested). ``progress(done, total)`` is called after every batch with the number
        of prompts encoded so far.
        """
        from openvocab.models.text_encoding import encode_token_ids
        from openvocab.text.tokenizer import EOS_ID, tokenize_prompts

        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        prompts = list(prompts)
        if not prompts:
            return torch.empty(0, self.embed_dim), []
        ids, truncated = tokenize_prompts(self.tokenizer, prompts, context_length=self.context_length)
        pad_id = self.tokenizer.pad_token_id
        if pad_id is None:
            pad_id = self.tokenizer.eos_token_id if self.tokenizer.eos_token_id is not None else EOS_ID
        out = encode_token_ids(
            self.clip.text_model,
            self.clip.text_projection,
            ids,
            pad_id=pad_id,
            batch_size=batch_size,
            share_prefixes=share_prefixes,
            forward=self.encode_text,
            progress=progress,
        )
        return out, truncated

    def encode_labels(self, labels: Sequence[str], prompts, *, progress: ProgressCallback | None = None) -> torch.Tensor:
        """Prompt-ensembled, L2-normalised label embeddings ``(L, D)`` (CLIP / MOV §3.1: each label is filled into
        every template of ``prompts`` (a :class:`~openvocab.text.prompts.PromptSet`), encoded, normalised,
        averaged over templates and normalised again). Labels truncated to the context are logged once.
        ``progress(done, total)`` counts encoded prompts (labels x templates), as in :meth:`encode_prompts`."""
        from openvocab.text.ensemble import ensemble_text_embeddings

        labels = list(labels)
        n_templates = len(prompts.templates)
        flat = [p for label in labels for p in prompts.fill(label)]
        per_prompt, truncated = self.encode_prompts(flat, progress=progress)
        for label in sorted({labels[i // n_templates] for i in truncated}):
            log.warning("label '%s…' is longer than the text encoder's %d-token context; it was truncated", label[:40], self.context_length)
        return ensemble_text_embeddings(per_prompt, len(labels), n_templates)


def clip_image_tower(*, source: str | Path, dtype: torch.dtype | None = None) -> ClipBackbone:
    """The encoder of a stream reading ``rgb``, ``flow`` or ``audio`` (:data:`openvocab.models.choices.MODALITIES`):
    a CLIP model's image tower (MOV §3.1: the same architecture and initial weights for every modality)."""
    return ClipBackbone.from_pretrained(source, dtype=dtype)
