"""CLIP with a ResNet image encoder (OpenAI's "ModifiedResNet"), written from the architecture description.

Radford et al. 2021 (CLIP, §2.4) replace the ViT by a ResNet-50 with three changes: a stem of three 3x3 convolutions
with an average pool instead of one 7x7 convolution and a max pool; anti-aliased strided convolutions (an average
pool before the strided block's last 1x1 convolution and before its shortcut convolution, so every convolution has
stride 1); and an attention-pooling head in place of global average pooling, a single multi-head attention layer
whose only query is the spatially averaged feature. Text4Vis (Table A.5) lists the sizes: RN50 = blocks (3, 4, 6, 3),
width 64, embedding 1024, input 224, text transformer 12 layers x width 512 x 8 heads.

:class:`ClipResNetModel` has the attribute names of ``transformers.CLIPModel`` (``vision_model``,
``visual_projection``, ``text_model``, ``text_projection``, ``logit_scale``, ``config``) so the rest of openvocab can
use it unchanged; the text tower IS transformers' ``CLIPTextModel``. The state-dict keys of :class:`ModifiedResNet`
are those of OpenAI's checkpoints under ``visual.`` (``conv1.weight``, ``layer1.0.downsample.0.weight``,
``attnpool.positional_embedding`` ...), so a released checkpoint converts by renaming ``visual.`` to ``vision_model.``.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from openvocab.atomic import atomic_path, atomic_write
from openvocab.errors import InputError, ModelLoadError

if TYPE_CHECKING:  # transformers is imported when a model or config is built: `import openvocab` stays fast
    from transformers import CLIPTextConfig
    from transformers.modeling_outputs import BaseModelOutputWithPooling

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
_TOTAL_STRIDE = 32  # stem (2 x 2) x layer2..4 (2 x 2 x 2)


# ---------------------------------------------------------------------------------------------------- configs
@dataclass(kw_only=True)
class ClipResNetVisionConfig:
    """Sizes of a ModifiedResNet: Bottleneck blocks per stage, stem width, output (embedding) dim, input size.

    ``heads`` defaults to ``width * 32 // 64`` (64-dim heads over the ``width * 32`` channels of the last stage).
    """

    layers: tuple[int, int, int, int]
    output_dim: int
    width: int = 64
    image_size: int = 224
    heads: int | None = None

    def __post_init__(self) -> None:
        self.layers = tuple(int(n) for n in self.layers)  # type: ignore[assignment]
        if len(self.layers) != 4 or min(self.layers) < 1:
            raise InputError(f"vision_config.layers must be four positive block counts, got {list(self.layers)}")
        if self.width < 2 or self.width % 2 or self.output_dim < 1:
            raise InputError(f"vision_config.width must be even and positive and output_dim positive, got {self.width}, {self.output_dim}")
        if self.image_size < _TOTAL_STRIDE or self.image_size % _TOTAL_STRIDE:
            raise InputError(f"vision_config.image_size must be a multiple of {_TOTAL_STRIDE}, got {self.image_size}")
        self.heads = self.hidden_size // 64 if self.heads is None else int(self.heads)
        if self.heads < 1 or self.hidden_size % self.heads:
            raise InputError(f"vision_config.heads ({self.heads}) must divide the {self.hidden_size} channels of the last stage")

    @property
    def hidden_size(self) -> int:
        """Channels of the last stage's map (``width * 32``), the attention pool's width."""
        return self.width * 32

    @property
    def num_hidden_layers(self) -> int:
        """Number of Bottleneck blocks."""
        return sum(self.layers)

    @property
    def patch_size(self) -> int:
        """The total stride (32); a ResNet has no patches, this is for display next to the ViTs."""
        return _TOTAL_STRIDE

    @property
    def grid(self) -> int:
        """Side of the last stage's map at the native input size."""
        return self.image_size // _TOTAL_STRIDE

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipResNetVisionConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(f"unknown vision_config field(s): {', '.join(unknown)}")
        try:
            return cls(**data)
        except TypeError as exc:
            raise InputError(f"bad vision_config ({exc})") from None


@dataclass(kw_only=True)
class ClipResNetConfig:
    """A whole CLIP-ResNet: vision tower sizes, transformers' ``CLIPTextConfig`` and the joint embedding size."""

    model_type: ClassVar[str] = "openvocab-clip-resnet"
    vision_config: ClipResNetVisionConfig
    text_config: CLIPTextConfig
    projection_dim: int

    def __post_init__(self) -> None:
        if self.vision_config.output_dim != self.projection_dim:
            raise InputError(f"vision_config.output_dim ({self.vision_config.output_dim}) must equal projection_dim ({self.projection_dim})")

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (what ``config.json`` holds)."""
        return {
            "model_type": self.model_type,
            "projection_dim": int(self.projection_dim),
            "vision_config": self.vision_config.to_dict(),
            "text_config": self.text_config.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ClipResNetConfig:
        if not isinstance(data, dict):
            raise InputError("the config must be a JSON object")
        if data.get("model_type", cls.model_type) != cls.model_type:
            raise InputError(f"model_type is '{data.get('model_type')}', expected '{cls.model_type}'")
        missing = [k for k in ("vision_config", "text_config", "projection_dim") if k not in data]
        if missing:
            raise InputError(f"config lacks {', '.join(missing)}")
        if not isinstance(data["vision_config"], dict) or not isinstance(data["text_config"], dict):
            raise InputError("vision_config and text_config must be JSON objects")
        from transformers import CLIPTextConfig

        text = CLIPTextConfig.from_dict(data["text_config"])
        vision = ClipResNetVisionConfig.from_dict(data["vision_config"])
        return cls(vision_config=vision, text_config=text, projection_dim=int(data["projection_dim"]))


@dataclass(frozen=True)
class ClipResNetArch:
    """Sizes of one released CLIP-ResNet (Radford et al. 2021, Table 19; Text4Vis Table A.5)."""

    layers: tuple[int, int, int, int]
    width: int
    embed_dim: int
    image_size: int
    text_width: int
    text_layers: int
    text_heads: int


RESNET_ARCHITECTURES: dict[str, ClipResNetArch] = {
    "rn50": ClipResNetArch(layers=(3, 4, 6, 3), width=64, embed_dim=1024, image_size=224, text_width=512, text_layers=12, text_heads=8),
    "rn101": ClipResNetArch(layers=(3, 4, 23, 3), width=64, embed_dim=512, image_size=224, text_width=512, text_layers=12, text_heads=8),
    "rn50x4": ClipResNetArch(layers=(4, 6, 10, 6), width=80, embed_dim=640, image_size=288, text_width=640, text_layers=12, text_heads=10),
    # a ~4 MB model with CLIP's real interfaces (224 px input, 77-token context, 49,408 vocabulary): for tests
    "tiny-rn": ClipResNetArch(layers=(1, 1, 1, 1), width=8, embed_dim=64, image_size=224, text_width=64, text_layers=2, text_heads=2),
}


def clip_resnet_config(arch: str) -> ClipResNetConfig:
    """The :class:`ClipResNetConfig` of an architecture name (see :data:`RESNET_ARCHITECTURES`)."""
    if arch not in RESNET_ARCHITECTURES:
        raise InputError(f"unknown CLIP-ResNet architecture '{arch}'; choose one of {', '.join(RESNET_ARCHITECTURES)}")
    from transformers import CLIPTextConfig

    a = RESNET_ARCHITECTURES[arch]
    text = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=a.text_width,
        intermediate_size=4 * a.text_width,
        num_hidden_layers=a.text_layers,
        num_attention_heads=a.text_heads,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        projection_dim=a.embed_dim,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    vision = ClipResNetVisionConfig(layers=a.layers, width=a.width, output_dim=a.embed_dim, image_size=a.image_size)
    return ClipResNetConfig(vision_config=vision, text_config=text, projection_dim=a.embed_dim)


# ---------------------------------------------------------------------------------------------------- vision tower
def _conv_bn(in_channels: int, out_channels: int, kernel: int, *, stride: int = 1) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride=stride, padding=kernel // 2, bias=False)
    return conv, nn.BatchNorm2d(out_channels)


class Bottleneck(nn.Module):
    """ResNet bottleneck (1x1 -> 3x3 -> 1x1, expansion 4) with anti-aliased striding: every convolution has stride 1
    and an ``AvgPool2d(stride)`` sits before ``conv3`` and at the head of the shortcut (CLIP §2.4, after Zhang 2019)."""

    expansion: ClassVar[int] = 4

    def __init__(self, *, in_channels: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = planes * self.expansion
        self.conv1, self.bn1 = _conv_bn(in_channels, planes, 1)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(planes, planes, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = _conv_bn(planes, out_channels, 1)
        self.relu3 = nn.ReLU(inplace=True)
        self.stride = stride
        self.downsample: nn.Sequential | None = None
        if stride > 1 or in_channels != out_channels:
            conv, bn = _conv_bn(in_channels, out_channels, 1)
            self.downsample = nn.Sequential(OrderedDict([("-1", nn.AvgPool2d(stride)), ("0", conv), ("1", bn)]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(self.avgpool(out)))
        return self.relu3(out + identity)


class AttentionPool2d(nn.Module):
    """CLIP's attention pooling: one multi-head attention whose single query is the mean of the map's positions.

    The map ``(N, C, H, W)`` becomes ``H*W`` tokens; their mean is prepended, a learned positional embedding of
    ``grid*grid + 1`` rows is added, and the mean token attends to all ``1 + H*W`` tokens (separate q/k/v projections);
    ``c_proj`` maps the result to ``output_dim``. Returns ``(N, output_dim)``.
    """

    def __init__(self, *, grid: int, embed_dim: int, heads: int, output_dim: int) -> None:
        super().__init__()
        self.grid = grid
        self.heads = heads
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, embed_dim) / embed_dim**0.5)
        self.q_proj = nn.Linear(embed_dim, embed_dim)
        self.k_proj = nn.Linear(embed_dim, embed_dim)
        self.v_proj = nn.Linear(embed_dim, embed_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)

    def positions(self, height: int, width: int) -> torch.Tensor:
        """The positional embedding for a ``height x width`` map: the stored one at the native grid, otherwise its
        spatial rows bicubic-interpolated (the first, mean-token row kept as is). ``(1 + height*width, C)``."""
        pos = self.positional_embedding
        if (height, width) == (self.grid, self.grid):
            return pos
        spatial = pos[1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2).float()
        spatial = F.interpolate(spatial, size=(height, width), mode="bicubic", align_corners=False)
        spatial = spatial.permute(0, 2, 3, 1).reshape(height * width, -1).to(pos.dtype)
        return torch.cat([pos[:1], spatial])

    def forward(self, x: torch.Tensor, *, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        n, c, h, w = x.shape
        if (h, w) != (self.grid, self.grid) and not interpolate_pos_encoding:
            raise InputError(
                f"the input gives a {h}x{w} feature map but the model's positional embedding is {self.grid}x{self.grid} "
                f"(input {self.grid * _TOTAL_STRIDE}x{self.grid * _TOTAL_STRIDE}); pass interpolate_pos_encoding=True"
            )
        tokens = x.flatten(2).transpose(1, 2)  # (N, HW, C)
        tokens = torch.cat([tokens.mean(dim=1, keepdim=True), tokens], dim=1) + self.positions(h, w).to(x.dtype)
        head_dim = c // self.heads
        q = self.q_proj(tokens[:, :1]).view(n, 1, self.heads, head_dim).transpose(1, 2)
        k = self.k_proj(tokens).view(n, -1, self.heads, head_dim).transpose(1, 2)
        v = self.v_proj(tokens).view(n, -1, self.heads, head_dim).transpose(1, 2)
        out = F.scaled_dot_product_attention(q, k, v)  # (N, heads, 1, head_dim), scale head_dim**-0.5
        return self.c_proj(out.transpose(1, 2).reshape(n, c))


@contextlib.contextmanager
def _keep_batchnorm_statistics(module: nn.Module) -> Iterator[None]:
    """Undo the running-statistics update of BatchNorm layers in ``module`` on exit: the recomputation of a
    checkpointed block in backward must not count the batch a second time."""
    saved = [
        (buf, buf.clone())
        for m in module.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.training and m.track_running_stats
        for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
        if buf is not None
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buf, value in saved:
                buf.copy_(value)


class ModifiedResNet(nn.Module):
    """CLIP's ResNet image encoder: 3-conv stem, four stages of anti-aliased Bottlenecks, attention pooling.

    ``forward`` returns ``BaseModelOutputWithPooling``: ``last_hidden_state`` is the last stage's map
    ``(N, width*32, H/32, W/32)``, ``pooler_output`` the attention pool's ``(N, output_dim)`` embedding (already in
    the joint space: CLIP-ResNet has no separate visual projection), ``hidden_states`` the stem and stage outputs.
    """

    def __init__(self, config: ClipResNetVisionConfig) -> None:
        super().__init__()
        self.config = config
        width = config.width
        self.conv1, self.bn1 = _conv_bn(3, width // 2, 3, stride=2)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = _conv_bn(width // 2, width // 2, 3)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv3, self.bn3 = _conv_bn(width // 2, width, 3)
        self.relu3 = nn.ReLU(inplace=True)
        self.avgpool = nn.AvgPool2d(2)
        channels = width
        stages = []
        for i, (blocks, stride) in enumerate(zip(config.layers, (1, 2, 2, 2))):
            planes = width * 2**i
            stage = [Bottleneck(in_channels=channels, planes=planes, stride=stride)]
            channels = planes * Bottleneck.expansion
            stage += [Bottleneck(in_channels=channels, planes=planes) for _ in range(blocks - 1)]
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.attnpool = AttentionPool2d(grid=config.grid, embed_dim=config.hidden_size, heads=int(config.heads or 1), output_dim=config.output_dim)
        self.gradient_checkpointing = False
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """OpenAI's initialisation: attention-pool projections ~ N(0, C^-0.5) (biases keep PyTorch's default), the
        last BatchNorm of every Bottleneck zeroed (each block starts as its shortcut, Goyal et al. 2017), convolutions
        and other BatchNorms at PyTorch's defaults (Kaiming-uniform; weight 1, bias 0)."""
        pool = self.attnpool
        std = pool.c_proj.in_features**-0.5
        for linear in (pool.q_proj, pool.k_proj, pool.v_proj, pool.c_proj):
            nn.init.normal_(linear.weight, std=std)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            for block in stage:
                nn.init.zeros_(block.bn3.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.bn1(self.conv1(x)))
        x = self.relu2(self.bn2(self.conv2(x)))
        x = self.relu3(self.bn3(self.conv3(x)))
        return self.avgpool(x)

    def _run_stage(self, stage: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        if not (self.gradient_checkpointing and self.training and torch.is_grad_enabled()):
            return stage(x)
        for block in stage:
            x = checkpoint(block, x, use_reentrant=False, context_fn=lambda b=block: (contextlib.nullcontext(), _keep_batchnorm_statistics(b)))
        return x

    def forward(
        self, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False, output_hidden_states: bool = False, return_dict: bool = True
    ) -> BaseModelOutputWithPooling | tuple:
        """``(N, 3, H, W)`` pixels (H, W multiples of 32) -> maps and pooled embedding; a size other than
        ``image_size`` needs ``interpolate_pos_encoding=True`` (bicubic positional embedding)."""
        from transformers.modeling_outputs import BaseModelOutputWithPooling

        if pixel_values.ndim != 4 or pixel_values.shape[1] != 3:
            raise InputError(f"pixel_values must be (N, 3, H, W), got {tuple(pixel_values.shape)}")
        x = self.stem(pixel_values.to(self.conv1.weight.dtype))
        states = [x]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = self._run_stage(stage, x)
            states.append(x)
        pooled = self.attnpool(x, interpolate_pos_encoding=interpolate_pos_encoding)
        hidden = tuple(states) if output_hidden_states else None
        if not return_dict:
            return tuple(v for v in (x, pooled, hidden) if v is not None)
        return BaseModelOutputWithPooling(last_hidden_state=x, pooler_output=pooled, hidden_states=hidden)


# ---------------------------------------------------------------------------------------------------- full model
class ClipResNetModel(nn.Module):
    """CLIP with a ModifiedResNet image tower and transformers' CLIP text tower, laid out like ``CLIPModel``.

    ``visual_projection`` is ``nn.Identity``: the attention pool's ``c_proj`` already maps to the joint space.
    Text initialisation is transformers' own CLIP text init (``CLIPTextModel._init_weights``: embeddings N(0, 0.02),
    attention/MLP scaled by width and depth); ``text_projection`` ~ N(0, text_width^-0.5) as in CLIP and CLIPModel.
    """

    def __init__(self, config: ClipResNetConfig) -> None:
        from transformers import CLIPTextModel

        super().__init__()
        self.config = config
        text_width = int(config.text_config.hidden_size)
        self.vision_model = ModifiedResNet(config.vision_config)
        self.visual_projection = nn.Identity()
        self.text_model = CLIPTextModel._from_config(config.text_config)
        self.text_projection = nn.Linear(text_width, config.projection_dim, bias=False)
        nn.init.normal_(self.text_projection.weight, std=text_width**-0.5)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    @classmethod
    def from_config(cls, config: ClipResNetConfig) -> ClipResNetModel:
        return cls(config)

    def get_image_features(self, pixel_values: torch.Tensor, *, interpolate_pos_encoding: bool = False) -> torch.Tensor:
        """Image embeddings ``(N, projection_dim)`` (not L2-normalised)."""
        out = self.vision_model(pixel_values, interpolate_pos_encoding=interpolate_pos_encoding, return_dict=True)
        return self.visual_projection(out.pooler_output)

    def get_text_features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """Text embeddings ``(M, projection_dim)``: the EOS token's final state, projected (as ``CLIPModel``)."""
        out = self.text_model(input_ids=input_ids, attention_mask=attention_mask, return_dict=True)
        return self.text_projection(out.pooler_output)

    def activation_checkpointing_enable(self) -> None:
        """Recompute each vision Bottleneck in backward instead of storing its activations (training only)."""
        self.vision_model.gradient_checkpointing = True

    # ------------------------------------------------------------------ persistence
    def save_pretrained(self, directory: str | Path) -> Path:
        """Write ``config.json`` and ``model.safetensors`` (every state-dict entry, BatchNorm buffers included)."""
        from safetensors.torch import save_file

        target = Path(directory).expanduser()
        target.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in self.state_dict().items()}
        with atomic_path(target / WEIGHTS_NAME) as tmp:
            save_file(tensors, str(tmp), metadata={"format": "pt"})
        atomic_write(target / CONFIG_NAME, json.dumps(self.config.to_dict(), indent=2, sort_keys=True) + "\n")
        return target

    @classmethod
    def from_pretrained(cls, directory: str | Path, *, dtype: torch.dtype | None = None) -> ClipResNetModel:
        """Load a directory written by :meth:`save_pretrained` (strict). Any problem -> one-line ``ModelLoadError``."""
        from safetensors.torch import load_file

        path = Path(directory).expanduser()
        if not (path / CONFIG_NAME).is_file():
            raise ModelLoadError(f"not a CLIP-ResNet model directory (no {CONFIG_NAME})", path=path)
        try:
            data = json.loads((path / CONFIG_NAME).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise ModelLoadError(f"unreadable {CONFIG_NAME} ({type(exc).__name__}: {exc})", path=path) from None
        if not isinstance(data, dict) or data.get("model_type") != ClipResNetConfig.model_type:
            found = data.get("model_type") if isinstance(data, dict) else None
            raise ModelLoadError(f"{CONFIG_NAME} has model_type '{found}', expected '{ClipResNetConfig.model_type}'", path=path)
        try:
            config = ClipResNetConfig.from_dict(data)
        except Exception as exc:  # noqa: BLE001 - any config problem becomes one line
            raise ModelLoadError(f"bad {CONFIG_NAME}: {exc}", path=path) from None
        if not (path / WEIGHTS_NAME).is_file():
            raise ModelLoadError(f"no {WEIGHTS_NAME}", path=path)
        try:
            state = load_file(str(path / WEIGHTS_NAME))
        except Exception as exc:  # noqa: BLE001 - a corrupt file becomes one line
            raise ModelLoadError(f"unreadable {WEIGHTS_NAME} ({type(exc).__name__}: {exc})", path=path) from None
        try:
            model = cls(config)
        except Exception as exc:  # noqa: BLE001
            raise ModelLoadError(f"cannot build the model of {CONFIG_NAME} ({type(exc).__name__}: {exc})", path=path) from None
        problem = _state_dict_problem(model.state_dict(), state)
        if problem:
            raise ModelLoadError(f"{WEIGHTS_NAME} does not match {CONFIG_NAME}: {problem}", path=path)
        model.load_state_dict(state, strict=True)
        if dtype is not None:
            model = model.to(dtype)
        return model.eval()


def _state_dict_problem(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str | None:
    """The first difference in keys or shapes between two state dicts, as a phrase; ``None`` if they agree."""
    missing = [k for k in expected if k not in found]
    if missing:
        return f"{len(missing)} missing tensor(s), first '{missing[0]}'"
    unexpected = [k for k in found if k not in expected]
    if unexpected:
        return f"{len(unexpected)} unexpected tensor(s), first '{unexpected[0]}'"
    for key, tensor in expected.items():
        if tuple(found[key].shape) != tuple(tensor.shape):
            return f"'{key}' has shape {tuple(found[key].shape)}, expected {tuple(tensor.shape)}"
    return None


def build_random_clip_resnet(arch: str, *, seed: int = 0) -> ClipResNetModel:
    """A :class:`ClipResNetModel` of ``arch`` with seeded random weights (the global RNG state is restored), in eval mode."""
    config = clip_resnet_config(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ClipResNetModel(config)
    return model.eval()
