"""Architecture-exact CLIP models with random weights, written as a loadable model directory.

No pretrained weights can be downloaded on machines without a hub; these models have exactly the shapes (and so
the speed and memory) of the released OpenAI CLIP models, and a real CLIP tokenizer, so every path of openvocab --
loading, classifying, benchmarking, training -- runs offline. Their scores are meaningless: the directory carries a
marker file and openvocab warns whenever such a model is used for classification.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from openvocab.errors import InputError

#: The file that marks a model directory as random-weight (``ClipBackbone.random_weights``; the classifier warns).
RANDOM_WEIGHTS_MARKER = "openvocab_random_weights.json"

_VOCAB_SIZE = 49408
_CONTEXT = 77


@dataclass(frozen=True)
class ClipArch:
    """Widths/depths of one CLIP architecture (Radford et al. 2021, Table 19)."""

    vision_width: int
    vision_layers: int
    vision_heads: int
    patch_size: int
    text_width: int
    text_layers: int
    text_heads: int
    embed_dim: int
    image_size: int = 224


ARCHITECTURES: dict[str, ClipArch] = {
    # a few-MB model with CLIP's real interfaces (224 px input, 77-token context, 49,408 vocabulary): for tests
    "tiny": ClipArch(vision_width=64, vision_layers=2, vision_heads=2, patch_size=32, text_width=64, text_layers=2, text_heads=2, embed_dim=64),
    "vit-b-32": ClipArch(vision_width=768, vision_layers=12, vision_heads=12, patch_size=32, text_width=512, text_layers=12, text_heads=8, embed_dim=512),
    "vit-b-16": ClipArch(vision_width=768, vision_layers=12, vision_heads=12, patch_size=16, text_width=512, text_layers=12, text_heads=8, embed_dim=512),
    "vit-l-14": ClipArch(vision_width=1024, vision_layers=24, vision_heads=16, patch_size=14, text_width=768, text_layers=12, text_heads=12, embed_dim=768),
}


def clip_config(arch: str):
    """The ``transformers.CLIPConfig`` of an architecture name (see :data:`ARCHITECTURES`)."""
    from transformers import CLIPConfig

    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{arch}'; choose one of {', '.join(ARCHITECTURES)}")
    a = ARCHITECTURES[arch]
    text = dict(
        vocab_size=_VOCAB_SIZE,
        hidden_size=a.text_width,
        intermediate_size=4 * a.text_width,
        num_hidden_layers=a.text_layers,
        num_attention_heads=a.text_heads,
        max_position_embeddings=_CONTEXT,
        hidden_act="quick_gelu",
        projection_dim=a.embed_dim,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    vision = dict(
        hidden_size=a.vision_width,
        intermediate_size=4 * a.vision_width,
        num_hidden_layers=a.vision_layers,
        num_attention_heads=a.vision_heads,
        patch_size=a.patch_size,
        image_size=a.image_size,
        hidden_act="quick_gelu",
        projection_dim=a.embed_dim,
    )
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=a.embed_dim)


def architecture_names() -> list[str]:
    """Every architecture ``model create`` / ``random:ARCH`` accept: the ViTs above and the CLIP-ResNets."""
    from openvocab.models.clip_resnet import RESNET_ARCHITECTURES

    return [*ARCHITECTURES, *RESNET_ARCHITECTURES]


def build_random_clip(arch: str, *, seed: int = 0):
    """A CLIP model of the given architecture with random weights: a ``transformers.CLIPModel`` (transformers' own
    initialisation) for the ViTs, a :class:`~openvocab.models.clip_resnet.ClipResNetModel` for ``rn50`` & co."""
    from transformers import CLIPModel

    from openvocab.models.clip_resnet import RESNET_ARCHITECTURES, build_random_clip_resnet

    if arch in RESNET_ARCHITECTURES:
        return build_random_clip_resnet(arch, seed=seed)
    if arch not in ARCHITECTURES:
        raise InputError(f"unknown architecture '{arch}'; choose one of {', '.join(architecture_names())}")
    config = clip_config(arch)
    with torch.random.fork_rng(devices=[]):  # seeded weights; the caller's random stream is left as it was
        torch.manual_seed(seed)
        model = CLIPModel(config)
    return model.eval()


def create_model_dir(arch: str, directory: str | Path, *, seed: int = 0, overwrite: bool = False) -> Path:
    """Write a random-weight CLIP of ``arch`` to ``directory``: safetensors weights, config, tokenizer, preprocessor.

    The directory loads with ``openvocab.load(directory)`` and with transformers' own
    ``CLIPModel/CLIPProcessor.from_pretrained(directory)``. A T5 architecture (``t5-tiny``, ``flan-t5-base`` ...,
    :data:`openvocab.models.create_t5.T5_ARCHITECTURES`) writes a random-weight T5 instead.
    """
    from openvocab.models.create_t5 import T5_ARCHITECTURES, create_t5_dir

    if arch in T5_ARCHITECTURES:
        return create_t5_dir(arch, directory, seed=seed, overwrite=overwrite)
    model = build_random_clip(arch, seed=seed)
    marker = {"architecture": arch, "seed": seed, "note": "random weights: scores are meaningless; for tests and speed measurements"}
    return _write_clip_dir(model, None, directory, overwrite=overwrite, marker=marker)


def save_model_dir(backbone, directory: str | Path, *, overwrite: bool = False, note: str = "") -> Path:
    """Write a :class:`~openvocab.models.backbone.ClipBackbone` (e.g. fine-tuned) as a loadable model directory."""
    return _write_clip_dir(backbone.clip, backbone, directory, overwrite=overwrite, marker=None, note=note)


def _write_clip_dir(model, backbone, directory: str | Path, *, overwrite: bool, marker: dict | None, note: str = "") -> Path:
    """Assemble the directory in a temporary sibling and rename it into place (:func:`openvocab.atomic.atomic_dir`):
    never a half-written model."""
    from transformers import CLIPImageProcessor

    from openvocab.atomic import atomic_dir
    from openvocab.text.tokenizer import save_clip_tokenizer

    target = Path(directory).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not overwrite:
            raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target)
    with atomic_dir(target, overwrite=True) as tmp:  # the checks above decided whether replacing is allowed
        model.save_pretrained(str(tmp))
        if backbone is None:
            save_clip_tokenizer(tmp)
            size = model.config.vision_config.image_size
            CLIPImageProcessor(size={"shortest_edge": size}, crop_size={"height": size, "width": size}).save_pretrained(str(tmp))
        else:
            backbone.tokenizer.save_pretrained(str(tmp))
            spec = backbone.image_spec
            CLIPImageProcessor(
                size={"shortest_edge": spec.resize_short_side},
                crop_size={"height": spec.size, "width": spec.size},
                image_mean=list(spec.mean),
                image_std=list(spec.std),
            ).save_pretrained(str(tmp))
        if marker is not None:
            (tmp / RANDOM_WEIGHTS_MARKER).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
        if note:
            (tmp / "openvocab_export.json").write_text(json.dumps({"note": note}, indent=2) + "\n", encoding="utf-8")
    return target
