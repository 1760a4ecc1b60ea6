"""Convert OpenAI CLIP / open_clip checkpoints into openvocab model directories.

Accepted sources (all in OpenAI's key layout: ``visual.*``, ``token_embedding.weight``, ``transformer.resblocks.N.*``):

* OpenAI's released archives (``RN50.pt``, ``ViT-B-16.pt``): TorchScript archives. They are read with
  ``torch.jit.load``, which rebuilds the TorchScript module from its serialised TorchScript code and tensors; it does
  not unpickle arbitrary Python objects (its unpickler only accepts TorchScript types), and nothing is executed here:
  only ``state_dict()`` is taken, the module's ``forward`` is never called;
* open_clip files (``open_clip_model.safetensors``, ``open_clip_pytorch_model.bin``, or a directory holding one);
* any ``torch.save``-d state dict (``.pt``/``.pth``/``.bin``), possibly nested under ``"state_dict"``/``"model"`` and
  with ``module.`` prefixes (DDP). These are read with ``torch.load(..., weights_only=True)`` ONLY: a file that needs
  arbitrary unpickling is refused, never executed.

The architecture is inferred from tensor shapes (as OpenAI's ``build_model`` does), the keys are mapped onto
transformers' ``CLIPModel`` (ViT) or :class:`openvocab.models.clip_resnet.ClipResNetModel` (ResNet), the weights are
loaded strictly, and the model is written as a model directory (safetensors, config, CLIP tokenizer, preprocessor).

What shapes cannot tell: attention heads (taken as ``width // 64``, true for every OpenAI model; some open_clip
models differ, e.g. ViT-H/14's vision tower has 16 heads of 80) and the activation (OpenAI models use QuickGELU,
open_clip models trained without ``-quickgelu`` use GELU): both can be given explicitly.
"""

from __future__ import annotations

import math
import pickle
import re
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from openvocab.errors import InputError, ModelLoadError

OPEN_CLIP_FILES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
# buffers OpenAI / open_clip store that the transformers model does not need (it builds its own masks and ids)
IGNORED_KEYS = frozenset({"input_resolution", "context_length", "vocab_size", "attn_mask"})
ACTIVATIONS = ("quick_gelu", "gelu")
_WRAPPERS = ("state_dict", "model")
_PREFIXES = ("module.", "_orig_mod.")
# per-block sub-keys: OpenAI name -> transformers CLIPEncoderLayer name (in_proj is split separately)
_BLOCK_KEYS = {
    "attn.out_proj.weight": "self_attn.out_proj.weight",
    "attn.out_proj.bias": "self_attn.out_proj.bias",
    "ln_1.weight": "layer_norm1.weight",
    "ln_1.bias": "layer_norm1.bias",
    "ln_2.weight": "layer_norm2.weight",
    "ln_2.bias": "layer_norm2.bias",
    "mlp.c_fc.weight": "mlp.fc1.weight",
    "mlp.c_fc.bias": "mlp.fc1.bias",
    "mlp.c_proj.weight": "mlp.fc2.weight",
    "mlp.c_proj.bias": "mlp.fc2.bias",
}
_VIT_KEYS = {
    "visual.class_embedding": "vision_model.embeddings.class_embedding",
    "visual.conv1.weight": "vision_model.embeddings.patch_embedding.weight",
    "visual.positional_embedding": "vision_model.embeddings.position_embedding.weight",
    "visual.ln_pre.weight": "vision_model.pre_layrnorm.weight",  # sic: transformers' spelling
    "visual.ln_pre.bias": "vision_model.pre_layrnorm.bias",
    "visual.ln_post.weight": "vision_model.post_layernorm.weight",
    "visual.ln_post.bias": "vision_model.post_layernorm.bias",
}
_TEXT_KEYS = {
    "token_embedding.weight": "text_model.embeddings.token_embedding.weight",
    "positional_embedding": "text_model.embeddings.position_embedding.weight",
    "ln_final.weight": "text_model.final_layer_norm.weight",
    "ln_final.bias": "text_model.final_layer_norm.bias",
    "logit_scale": "logit_scale",
}


@dataclass(frozen=True)
class CheckpointArch:
    """The architecture of an OpenAI-layout CLIP checkpoint, read from its tensor shapes."""

    kind: str  # "vit" or "resnet"
    image_size: int
    embed_dim: int
    vision_width: int
    vision_layers: int | tuple[int, ...]  # blocks (ViT) or blocks per stage (ResNet)
    vision_heads: int
    patch_size: int | None  # ViT only
    text_width: int
    text_layers: int
    text_heads: int
    context_length: int
    vocab_size: int
    activation: str = "quick_gelu"

    def summary(self) -> str:
        if self.kind == "vit":
            vision = f"ViT-{self.patch_size} vision ({self.vision_layers} layers, width {self.vision_width}, {self.vision_heads} heads)"
        else:
            stages = "-".join(str(n) for n in self.vision_layers)  # type: ignore[union-attr]
            vision = f"ResNet vision (blocks {stages}, width {self.vision_width})"
        text = f"text ({self.text_layers} layers, width {self.text_width}, {self.text_heads} heads, context {self.context_length}, vocab {self.vocab_size})"
        return f"{vision}, {text}, embedding dim {self.embed_dim}, image {self.image_size} px, {self.activation}"


# ---------------------------------------------------------------------------------------------------------- loading
def _resolve_source(path: Path) -> Path:
    if path.is_dir():
        for name in OPEN_CLIP_FILES:
            if (path / name).is_file():
                return path / name
        raise InputError(f"directory holds no {' or '.join(OPEN_CLIP_FILES)}", path=path)
    if not path.exists():
        raise InputError("no such file", path=path)
    return path


def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("constants.pkl") or "/code/" in name for name in archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return False


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    for _ in range(4):  # {"state_dict": {...}}, {"model": {...}}, {"epoch": 3, "state_dict": {...}} ...
        if not isinstance(obj, dict):
            break
        inner = next((obj[k] for k in _WRAPPERS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict):
        raise ModelLoadError(f"not a state dict (the file holds a {type(obj).__name__})", path=path)
    tensors: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not (isinstance(key, str) and isinstance(value, torch.Tensor)):
            continue
        for prefix in _PREFIXES:
            while key.startswith(prefix):
                key = key[len(prefix) :]
        tensors[key] = value
    if not tensors:
        raise ModelLoadError("not a state dict (it holds no named tensors)", path=path)
    return tensors


def load_openai_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The CPU tensors of a CLIP checkpoint in OpenAI/open_clip key layout (see the module docstring for formats).

    Raises :class:`InputError` / :class:`ModelLoadError` (one line naming the file) on any failure.
    """
    source = _resolve_source(Path(path).expanduser())
    if source.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: object = load_file(str(source), device="cpu")
        except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...
            raise ModelLoadError(f"not a readable safetensors file ({type(exc).__name__}: {exc})", path=source) from None
    elif _is_torchscript(source):
        try:  # TorchScript deserialisation: TorchScript code + tensors, no arbitrary Python unpickling
            obj = dict(torch.jit.load(str(source), map_location="cpu").state_dict())
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"not a loadable TorchScript archive ({type(exc).__name__}: {exc})", path=source) from None
    else:
        try:
            obj = torch.load(str(source), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            if "weights only" in str(exc).lower():
                raise ModelLoadError(
                    "refused: the file holds pickled Python objects beyond tensors and containers; openvocab only "
                    "loads checkpoints with torch.load(weights_only=True) (re-save it as a plain state dict or safetensors)",
                    path=source,
                ) from None
            raise ModelLoadError(f"not a PyTorch checkpoint ({exc})", path=source) from None
        except Exception as exc:  # noqa: BLE001 - text files, truncated archives ...
            raise ModelLoadError(f"not a PyTorch checkpoint ({type(exc).__name__}: {exc})", path=source) from None
    state = _unwrap(obj, source)
    if not any(k.startswith("visual.") for k in state):
        sample = ", ".join(sorted(state)[:3])
        raise ModelLoadError(f"no 'visual.' keys: not a CLIP checkpoint in OpenAI/open_clip layout (keys like {sample})", path=source)
    return {k: v.detach().cpu() for k, v in state.items()}


# ---------------------------------------------------------------------------------------------------------- inference
def _count_blocks(state: dict[str, torch.Tensor], prefix: str) -> int:
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    indices = {int(m.group(1)) for k in state if (m := pattern.match(k))}
    if indices and indices != set(range(len(indices))):
        raise ModelLoadError(f"unsupported layout: {prefix}N blocks are not numbered 0..{len(indices) - 1}")
    return len(indices)


def _heads(width: int, given: int | None, what: str) -> int:
    heads = given if given is not None else max(1, width // 64)
    if heads < 1:
        raise InputError(f"{what} attention heads must be at least 1, got {heads}")
    if width % heads:
        raise InputError(f"{what} width {width} is not divisible by {heads} attention heads")
    return heads


def _grid(rows: int, what: str) -> int:
    side = round(math.sqrt(rows - 1))
    if side * side != rows - 1:
        raise ModelLoadError(f"unsupported layout: {what} has {rows} rows, not 1 + a square number")
    return side


def infer_architecture(
    state: dict[str, torch.Tensor], *, activation: str = "quick_gelu", vision_heads: int | None = None, text_heads: int | None = None
) -> CheckpointArch:
    """Read the architecture from tensor shapes (ViT if ``visual.proj`` exists, ResNet if ``visual.layer1`` does)."""
    if activation not in ACTIVATIONS:
        raise InputError(f"activation must be one of {', '.join(ACTIVATIONS)}, got '{activation}'")
    try:
        text_width = state["ln_final.weight"].shape[0]
        text = dict(
            text_width=text_width,
            text_layers=_count_blocks(state, "transformer.resblocks."),
            text_heads=_heads(text_width, text_heads, "text"),
            context_length=state["positional_embedding"].shape[0],
            vocab_size=state["token_embedding.weight"].shape[0],
            embed_dim=state["text_projection"].shape[1],
        )
        if "visual.proj" in state or "visual.class_embedding" in state:
            conv = state["visual.conv1.weight"]
            width, patch = conv.shape[0], conv.shape[-1]
            grid = _grid(state["visual.positional_embedding"].shape[0], "visual.positional_embedding")
            return CheckpointArch(
                kind="vit",
                image_size=patch * grid,
                vision_width=width,
                vision_layers=_count_blocks(state, "visual.transformer.resblocks."),
                vision_heads=_heads(width, vision_heads, "vision"),
                patch_size=patch,
                activation=activation,
                **text,
            )
        if "visual.layer1.0.conv1.weight" in state:
            stages = tuple(_count_blocks(state, f"visual.layer{k}.") for k in range(1, 5))
            width = state["visual.layer1.0.conv1.weight"].shape[0]
            grid = _grid(state["visual.attnpool.positional_embedding"].shape[0], "visual.attnpool.positional_embedding")
            output_dim = state["visual.attnpool.c_proj.weight"].shape[0]
            if output_dim != text["embed_dim"]:
                raise ModelLoadError(f"unsupported layout: the ResNet's output dim {output_dim} differs from the text embedding dim {text['embed_dim']}")
            return CheckpointArch(
                kind="resnet",
                image_size=32 * grid,
                vision_width=width,
                vision_layers=stages,
                vision_heads=_heads(width * 32, vision_heads, "vision"),
                patch_size=None,
                activation=activation,
                **text,
            )
    except KeyError as exc:
        raise ModelLoadError(f"unsupported layout: no {exc.args[0]}") from None
    except (IndexError, ValueError) as exc:
        raise ModelLoadError(f"unsupported layout: unexpected tensor shapes ({exc})") from None
    raise ModelLoadError("unsupported layout: neither a ViT (visual.proj) nor a ResNet (visual.layer1) vision tower")


# ---------------------------------------------------------------------------------------------------------- mapping
def _map_block(rest: str, tensor: torch.Tensor, out_prefix: str, out: dict[str, torch.Tensor]) -> bool:
    if rest in ("attn.in_proj_weight", "attn.in_proj_bias"):
        kind = "weight" if rest.endswith("weight") else "bias"
        if tensor.shape[0] % 3:
            raise ModelLoadError(f"unsupported layout: {rest} has {tensor.shape[0]} rows, not 3 x width")
        for name, part in zip(("q", "k", "v"), tensor.chunk(3, dim=0)):  # nn.MultiheadAttention packs q, k, v
            out[f"{out_prefix}self_attn.{name}_proj.{kind}"] = part.clone()
        return True
    if rest in _BLOCK_KEYS:
        out[out_prefix + _BLOCK_KEYS[rest]] = tensor
        return True
    return False


def map_state_dict(state: dict[str, torch.Tensor], arch: CheckpointArch) -> dict[str, torch.Tensor]:
    """OpenAI key names -> transformers ``CLIPModel`` names (ResNet: ``visual.X -> vision_model.X``).

    Keys it does not know (other than :data:`IGNORED_KEYS`) are an error: nothing is dropped silently.
    """
    out: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    block = re.compile(r"^(visual\.)?transformer\.resblocks\.(\d+)\.(.+)$")
    for key, tensor in state.items():
        if key in IGNORED_KEYS:
            continue
        if key in _TEXT_KEYS:
            out[_TEXT_KEYS[key]] = tensor
        elif key == "text_projection":  # used as x @ P with P (width, embed): a Linear weight is P.T
            out["text_projection.weight"] = tensor.t().contiguous()
        elif arch.kind == "vit" and key in _VIT_KEYS:
            out[_VIT_KEYS[key]] = tensor
        elif arch.kind == "vit" and key == "visual.proj":
            out["visual_projection.weight"] = tensor.t().contiguous()
        elif (m := block.match(key)) and (m.group(1) is None or arch.kind == "vit"):
            tower = "vision_model" if m.group(1) else "text_model"
            if not _map_block(m.group(3), tensor, f"{tower}.encoder.layers.{m.group(2)}.", out):
                unknown.append(key)
        elif arch.kind == "resnet" and key.startswith("visual."):
            out["vision_model." + key[len("visual.") :]] = tensor
        else:
            unknown.append(key)
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise ModelLoadError(f"unsupported layout: {len(unknown)} keys openvocab cannot map: {', '.join(unknown[:5])}{more}")
    return out


# ---------------------------------------------------------------------------------------------------------- models
def _text_config(arch: CheckpointArch) -> dict:
    return dict(
        vocab_size=arch.vocab_size,
        hidden_size=arch.text_width,
        intermediate_size=4 * arch.text_width,
        num_hidden_layers=arch.text_layers,
        num_attention_heads=arch.text_heads,
        max_position_embeddings=arch.context_length,
        hidden_act=arch.activation,
        projection_dim=arch.embed_dim,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )


def build_model(arch: CheckpointArch) -> torch.nn.Module:
    """An (untrained) model of ``arch``: transformers ``CLIPModel`` for ViT, ``ClipResNetModel`` for ResNet."""
    if arch.kind == "vit":
        from transformers import CLIPConfig, CLIPModel

        vision = dict(
            hidden_size=arch.vision_width,
            intermediate_size=4 * arch.vision_width,
            num_hidden_layers=arch.vision_layers,
            num_attention_heads=arch.vision_heads,
            patch_size=arch.patch_size,
            image_size=arch.image_size,
            hidden_act=arch.activation,
            projection_dim=arch.embed_dim,
        )
        config = CLIPConfig(text_config=_text_config(arch), vision_config=vision, projection_dim=arch.embed_dim)
        return CLIPModel(config).eval()
    from transformers import CLIPTextConfig

    from openvocab.models.clip_resnet import (
        ClipResNetConfig,
        ClipResNetModel,
        ClipResNetVisionConfig,
    )

    vision_cfg = ClipResNetVisionConfig(
        layers=tuple(arch.vision_layers), width=arch.vision_width, output_dim=arch.embed_dim, image_size=arch.image_size, heads=arch.vision_heads
    )  # type: ignore[arg-type]
    config = ClipResNetConfig(vision_config=vision_cfg, text_config=CLIPTextConfig(**_text_config(arch)), projection_dim=arch.embed_dim)
    return ClipResNetModel.from_config(config).eval()


def _openai_name(key: str) -> str:
    """The checkpoint-side (OpenAI) name of a transformers key, for error messages."""
    reverse = {v: k for k, v in {**_VIT_KEYS, **_TEXT_KEYS}.items()}
    reverse.update({"text_projection.weight": "text_projection", "visual_projection.weight": "visual.proj"})
    if key in reverse:
        return reverse[key]
    if m := re.match(r"^(text|vision)_model\.encoder\.layers\.(\d+)\.(.+)$", key):
        prefix = ("visual." if m.group(1) == "vision" else "") + f"transformer.resblocks.{m.group(2)}."
        if q := re.match(r"self_attn\.[qkv]_proj\.(weight|bias)$", m.group(3)):
            return f"{prefix}attn.in_proj_{q.group(1)}"
        return prefix + {v: k for k, v in _BLOCK_KEYS.items()}.get(m.group(3), m.group(3))
    return "visual." + key[len("vision_model.") :] if key.startswith("vision_model.") else key


def _load_strict(model: torch.nn.Module, mapped: dict[str, torch.Tensor]) -> None:
    expected = model.state_dict()
    for key, tensor in expected.items():  # BatchNorm counters are bookkeeping, not weights: fill them if absent
        if key not in mapped and key.endswith("num_batches_tracked"):
            mapped[key] = tensor
    missing = list(dict.fromkeys(_openai_name(k) for k in expected if k not in mapped))
    unexpected = list(dict.fromkeys(_openai_name(k) for k in mapped if k not in expected))
    wrong = list(dict.fromkeys(_openai_name(k) for k, t in expected.items() if k in mapped and mapped[k].shape != t.shape))
    shapes = "whose shapes do not fit the architecture read from the others"
    for what, keys in (("missing", missing), ("unexpected", unexpected), (shapes, wrong)):
        if keys:
            more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
            raise ModelLoadError(f"unsupported layout: {len(keys)} checkpoint tensors {what}: {', '.join(keys[:5])}{more}")
    with torch.no_grad():
        model.load_state_dict(mapped, strict=True)  # dtype is cast to the model's (float32) on copy


def convert_state_dict(
    state: dict[str, torch.Tensor], *, activation: str = "quick_gelu", vision_heads: int | None = None, text_heads: int | None = None
) -> tuple[torch.nn.Module, CheckpointArch]:
    """Infer, build and strictly load: an OpenAI-layout state dict -> (model in eval mode, its architecture)."""
    arch = infer_architecture(state, activation=activation, vision_heads=vision_heads, text_heads=text_heads)
    mapped = map_state_dict(state, arch)
    model = build_model(arch)
    _load_strict(model, mapped)
    return model, arch


def convert_checkpoint(
    source: str | Path,
    directory: str | Path,
    *,
    overwrite: bool = False,
    activation: str = "quick_gelu",
    vision_heads: int | None = None,
    text_heads: int | None = None,
    on_architecture: Callable[[CheckpointArch], None] | None = None,
) -> Path:
    """Convert an OpenAI CLIP / open_clip checkpoint into an openvocab model directory (written atomically).

    ``on_architecture`` is called with the inferred :class:`CheckpointArch` (the CLI prints its summary).
    """
    from openvocab.models.create import _write_clip_dir

    target = Path(directory).expanduser()
    if target.exists() and (not target.is_dir() or any(target.iterdir())) and not overwrite:  # fail before loading GBs
        raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target)
    state = load_openai_state_dict(source)
    try:
        model, arch = convert_state_dict(state, activation=activation, vision_heads=vision_heads, text_heads=text_heads)
    except (ModelLoadError, InputError) as exc:
        if exc.path is not None:
            raise
        raise type(exc)(str(exc), path=source) from None
    del state
    if on_architecture is not None:
        on_architecture(arch)
    note = f"converted from {Path(source).expanduser().resolve()} ({arch.summary()})"
    return _write_clip_dir(model, None, target, overwrite=overwrite, marker=None, note=note)
