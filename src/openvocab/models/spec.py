"""What fixes a recogniser: one :class:`StreamSpec` per input stream (modality), a fusion and a :class:`HeadSpec`.

``RecognizerSpec.to_dict()`` is saved with every checkpoint (``trainer_state.json``: ``arch`` holds
:meth:`RecognizerSpec.arch`, the architecture fields compared on resume; ``extra.spec`` the whole spec) and
round-trips through :meth:`RecognizerSpec.from_dict`, which also reads the flat, single-stream ``arch`` of run
directories written before streams existed (``{"model": ..., "temporal": ..., "classifier": ...}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

#: Keys of the flat single-stream spec (checkpoints written before multimodal recognisers): which go to the stream.
LEGACY_STREAM_KEYS = ("model", "temporal", "temporal_layers", "token_t1d_blocks", "t1d_stages", "t1d_init", "frames", "train_backbone")
LEGACY_HEAD_KEYS = ("num_classes", "classifier", "classifier_dim", "train_text")
#: State-dict prefixes of the single-stream recogniser, now under ``streams.<primary>.``.
LEGACY_STATE_PREFIXES = ("backbone.", "temporal.", "token_t1d.", "t1d.")


@dataclass(frozen=True)
class StreamSpec:
    """One input stream: a CLIP encoder for one modality plus its temporal modelling (Text4Vis §4.3 / Table 8)."""

    model: str  # hub id, model directory or random:ARCH of this stream's CLIP tower
    input: str = "rgb"  # the key of the input mapping this stream reads (models.choices.MODALITIES)
    temporal: str = "tap"  # models.choices.TEMPORAL
    temporal_layers: int = 6
    token_t1d_blocks: tuple[int, ...] = ()
    t1d_stages: tuple[int, ...] = ()  # CLIP-ResNet stages with T1D (4, 5 = res4-5)
    t1d_init: str = "shift"
    frames: int = 8
    train_backbone: bool = True
    # with train_backbone: fine-tune only the last k vision blocks (+ the final LayerNorm and projection); 0 = all
    # blocks (MOV Table 6 "trainable layers")
    train_last_blocks: int = 0
    # how the stream's input is made from a plain video file (input flow / audio; ignored for rgb)
    flow_method: str = "tvl1"  # io.choices.FLOW_METHODS
    audio_seconds: float = 8.0  # MOV §4.2: an 8 s crop, a 128 x 800 spectrogram
    # temporal parallel / serial (open-vocabulary multi-label §3.2, Fig. 4): the branch runs beside the last
    # ``branch_blocks`` (T) blocks of the frozen vision tower; ``weight_reg`` is λ of the stochastic weight
    # regularisation θ = α·θ_ft + (1 − α)·θ_frozen, α ~ U(0, λ), on its spatial layers (0 = off, Table 3b)
    branch_blocks: int = 4
    weight_reg: float = 0.5

    def __post_init__(self) -> None:
        object.__setattr__(self, "token_t1d_blocks", tuple(int(b) for b in self.token_t1d_blocks))
        object.__setattr__(self, "t1d_stages", tuple(int(s) for s in self.t1d_stages))


@dataclass(frozen=True)
class HeadSpec:
    """The classifier head (models.choices.HEADS) and its label encoder's settings."""

    classifier: str = "text"
    num_classes: int = 0  # 0: no training classes (zero-shot CLIP scores any labels)
    classifier_dim: int = 0
    train_text: bool = False  # the contrastive baseline with CLIP's text tower online (ActionCLIP; Table 9)
    # label-encoder settings (not architecture: W̃ is stored in checkpoints)
    prompts: str = "single"
    template: str | None = None
    sentence_encoder: str = "minilm"
    logit_scale: float | None = None
    # CoOp (learned prompt context, MOV Table 1-2 baseline): number of context vectors
    context_tokens: int = 16
    # CLIP-Adapter (MOV Table 1-2 baseline): bottleneck reduction of the adapters and the residual ratio
    adapter_reduction: int = 4
    adapter_ratio: float = 0.2
    # trained with the multi-label loss (open-vocabulary multi-label Eq. 2, p = σ(s/τ) with 1/τ = logit_scale): the
    # run's own multi-label scores are σ(logit_scale · cos) until `openvocab calibrate` saves a calibration
    multi_label: bool = False
    # LLM-guided label encoders (classifier llm-attributes / llm-prompt, §3.1): the T5 / Flan-T5 hub id or directory,
    # N learnable prefixes, K soft attributes of L tokens, the LLM -> CLIP connector and how the LLM is adapted
    llm: str | None = None
    llm_prefixes: int = 4
    llm_attributes: int = 5
    llm_attribute_tokens: int = 5
    llm_connector: str = "transformer"  # transformer (the prompt transformer) | mlp | linear (Table 10)
    llm_adaptation: str = "prefix"  # prefix (N learnable prefixes) | lora (Table 10)
    llm_lora_rank: int = 2

    ARCH_FIELDS = (
        "classifier",
        "num_classes",
        "classifier_dim",
        "train_text",
        "llm_prefixes",
        "llm_attributes",
        "llm_attribute_tokens",
        "llm_connector",
        "llm_adaptation",
        "llm_lora_rank",
    )


@dataclass(frozen=True)
class RecognizerSpec:
    """Streams (ordered; the first is the primary one), fusion and head."""

    streams: Mapping[str, StreamSpec]
    head: HeadSpec = field(default_factory=HeadSpec)
    fusion: str = "identity"

    def __post_init__(self) -> None:
        if not self.streams:
            raise ValueError("a recogniser needs at least one stream")
        object.__setattr__(self, "streams", dict(self.streams))

    # ------------------------------------------------------------------ builders
    @classmethod
    def single(cls, *, model: str, num_classes: int = 0, classifier: str = "text", **flat: Any) -> RecognizerSpec:
        """The one-RGB-stream spec from the flat keys (``temporal=``, ``frames=``, ``prompts=`` ...)."""
        return cls.from_dict({"model": model, "num_classes": num_classes, "classifier": classifier, **flat})

    @classmethod
    def zero_shot(cls, model: str, *, prompts: str = "ensemble", template: str | None = None) -> RecognizerSpec:
        """Zero-shot CLIP as a recogniser: TAP over CLIP frame embeddings + CLIP's text tower as label encoder."""
        return cls(streams={"rgb": StreamSpec(model=model, train_backbone=False)}, head=HeadSpec(classifier="text", prompts=prompts, template=template))

    # ------------------------------------------------------------------ access
    @property
    def primary(self) -> str:
        return next(iter(self.streams))

    @property
    def model(self) -> str:
        """The primary stream's encoder (the model a single-stream recogniser is built on)."""
        return self.streams[self.primary].model

    @property
    def num_classes(self) -> int:
        return self.head.num_classes

    @property
    def classifier(self) -> str:
        return self.head.classifier

    @property
    def frames(self) -> int:
        return self.streams[self.primary].frames

    @property
    def train_backbone(self) -> bool:
        return any(s.train_backbone for s in self.streams.values())

    @property
    def train_text(self) -> bool:
        return self.head.train_text

    def input_settings(self, *, flow_cache: str | None = None):
        """What the recogniser reads and how flow / audio are made (:class:`openvocab.io.modalities.InputSettings`)."""
        from openvocab.io.modalities import InputSettings

        flow = next((s for s in self.streams.values() if s.input == "flow"), None)
        audio = next((s for s in self.streams.values() if s.input == "audio"), None)
        return InputSettings(
            modalities=tuple(s.input for s in self.streams.values()),
            flow_method=flow.flow_method if flow else "tvl1",
            flow_cache=flow_cache,
            audio_seconds=audio.audio_seconds if audio else 8.0,
        )

    def with_head(self, **changes: Any) -> RecognizerSpec:
        return replace(self, head=replace(self.head, **changes))

    # ------------------------------------------------------------------ (de)serialisation
    def to_dict(self) -> dict:
        return {
            "streams": {name: _plain(asdict(s)) for name, s in self.streams.items()},
            "fusion": self.fusion,
            "head": _plain(asdict(self.head)),
        }

    def arch(self) -> dict:
        """The architecture: what a checkpoint's tensors depend on (compared on resume and load)."""
        d = self.to_dict()
        d["head"] = {k: d["head"][k] for k in HeadSpec.ARCH_FIELDS}
        return d

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, head_settings: Mapping[str, Any] | None = None) -> RecognizerSpec:
        """Inverse of :meth:`to_dict`; also reads a flat single-stream dict (old ``arch``). ``head_settings`` fill
        label-encoder settings an old arch did not record (prompts, template, sentence_encoder, logit_scale)."""
        if is_legacy(data):
            stream = {k: data[k] for k in LEGACY_STREAM_KEYS if k in data}
            head = {k: data[k] for k in data if k not in LEGACY_STREAM_KEYS}
            data = {"streams": {"rgb": stream}, "fusion": "identity", "head": head}
        head = {**(head_settings or {}), **dict(data.get("head") or {})}
        known = {f.name for f in fields(HeadSpec)}
        unknown = sorted(set(head) - known)
        if unknown:
            raise ValueError(f"unknown head keys {unknown}")
        streams = {}
        stream_fields = {f.name for f in fields(StreamSpec)}
        for name, values in dict(data["streams"]).items():
            bad = sorted(set(values) - stream_fields)
            if bad:
                raise ValueError(f"unknown keys {bad} in stream '{name}'")
            streams[str(name)] = StreamSpec(**values)
        return cls(streams=streams, head=HeadSpec(**head), fusion=str(data.get("fusion", "identity")))


def is_legacy(arch: Mapping[str, Any]) -> bool:
    """Whether ``arch`` is the flat single-stream description written before streams existed."""
    return isinstance(arch, Mapping) and "streams" not in arch and "model" in arch


def legacy_state_key(key: str, *, primary: str = "rgb") -> str:
    """A state-dict key of the single-stream recogniser in today's layout (``backbone.x`` -> ``streams.rgb.backbone.x``)."""
    return f"streams.{primary}.{key}" if key.startswith(LEGACY_STATE_PREFIXES) else key


def _plain(d: dict) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}
