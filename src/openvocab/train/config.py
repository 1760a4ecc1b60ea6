"""Training recipes: typed dataclasses loaded from YAML, with ``key=value`` overrides from the command line.

    openvocab train configs/text4vis/k400_vitb16_8f.yaml data.batch_size=4 optim.epochs=2 run.out=runs/try

Defaults are Text4Vis' (Table A.3): AdamW β (0.9, 0.98), weight decay 0.2, lr 5e-5 → 5e-6 cosine, 5 warm-up
epochs, 30 epochs, 8 frames, single template "a video of a person {}.". Unknown keys and ill-typed values are
refused with one line naming the file (or override) and the key.
"""

from __future__ import annotations

import dataclasses
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from openvocab.errors import InputError


#: Keys of one input stream (a modality's CLIP tower + temporal modelling); the flat ``model.<key>`` form of
#: earlier recipes sets the primary stream's (``model.temporal`` == ``model.rgb.temporal``).
@dataclass
class StreamConfig:
    model: str = "openai/clip-vit-base-patch16"
    input: str = "rgb"  # the input modality this stream reads (models.choices.MODALITIES)
    temporal: str = "tap"  # tap | ttrans (models.choices.TEMPORAL)
    temporal_layers: int = 6
    token_t1d_blocks: list[int] = field(default_factory=list)
    t1d_stages: list[int] = field(default_factory=list)  # CLIP-ResNet T1D in these stages, e.g. [4, 5] = res4-5 (Table 8)
    t1d_init: str = "shift"  # shift (TSM pattern, 1/8 channels each way) | identity (pretrained model unchanged at step 0)
    train_backbone: bool = True
    train_last_blocks: int = 0  # with train_backbone: only the last k vision blocks train (MOV Table 6); 0 = all
    flow_method: str = "tvl1"  # input flow: tvl1 (MOV) | dis | farneback (io.choices.FLOW_METHODS)
    audio_seconds: float = 8.0  # input audio: crop length in seconds (MOV §4.2: 8 s, a 128 x 800 spectrogram)
    branch_blocks: int = 4  # temporal parallel / serial: the branch spans the tower's last T blocks (multi-label §3.2)
    weight_reg: float = 0.5  # temporal parallel / serial: λ of the stochastic weight regularisation (0 = off, Table 3b)


STREAM_KEYS = tuple(f.name for f in dataclasses.fields(StreamConfig))


@dataclass
class ModelConfig:
    """``streams`` by name (the first is the primary one: its CLIP text tower is the ``text`` classifier's); in YAML
    each stream is a mapping under its name (``model: {rgb: {model: ..., temporal: ttrans}}``) and overrides reach
    it as ``model.rgb.temporal=ttrans``; the flat keys of earlier recipes (``model.model``, ``model.temporal`` ...)
    still set the primary stream."""

    streams: dict[str, StreamConfig] = field(default_factory=lambda: {"rgb": StreamConfig()})
    fusion: str = "identity"  # how stream embeddings combine (models.choices.FUSIONS)
    classifier: str = "text"  # text | sentence | normal | orthogonal | lda | linear (models.choices.HEADS)
    prompts: str = "single"  # single | ensemble | classname | path to a templates file
    template: str | None = None
    sentence_encoder: str = "minilm"
    text_online: bool = False  # optim.loss=infonce: train CLIP's text tower too (ActionCLIP "online", Table 9)
    gradient_checkpointing: bool = False
    lda_samples_per_class: int = 60  # Text4Vis §4.3: 60 videos per class
    logit_scale: float | None = None  # temperature of the frozen classifier; default: the CLIP model's (100)
    context_tokens: int = 16  # classifier coop: learned context vectors (CoOp)
    adapter_reduction: int = 4  # classifier adapter: bottleneck reduction (CLIP-Adapter)
    adapter_ratio: float = 0.2  # classifier adapter: residual ratio (CLIP-Adapter)
    llm: str | None = None  # classifier llm-attributes / llm-prompt: a T5 / Flan-T5 hub id or directory (multi-label §3.1)
    llm_prefixes: int = 4  # N learnable LLM prefixes (§4.3)
    llm_attributes: int = 5  # K soft attributes per prefix (§4.3)
    llm_attribute_tokens: int = 5  # L tokens per soft attribute (§4.3)
    llm_connector: str = "transformer"  # transformer | mlp | linear (Table 10)
    llm_adaptation: str = "prefix"  # prefix | lora (Table 10)
    llm_lora_rank: int = 2
    # a previous `openvocab train` run (or one of its step_* checkpoints) whose video side -- vision tower, temporal
    # module, TokenT1D/T1D -- initialises this run before step 0 (not a resume: fresh optimiser, schedule, head)
    init_from: str | None = None

    @property
    def primary(self) -> StreamConfig:
        return next(iter(self.streams.values()))

    @property
    def model(self) -> str:
        """The primary stream's CLIP model."""
        return self.primary.model


@dataclass
class DataConfig:
    format: str = "manifest"  # manifest | kinetics | ucf101 | hmdb51 | activitynet | vggsound
    train: str = ""  # manifest / Kinetics CSV / split directory / ActivityNet JSON
    val: str | None = None
    val_mode: str = "segments"  # activitynet val: segments (trimmed annotations) | videos (untrimmed, all labels)
    root: str | None = None  # video root (relative manifest paths, Kinetics, UCF, HMDB)
    classes: str | None = None  # fixed vocabulary file (one class a line)
    split: int = 1  # UCF101 / HMDB51 split number
    classes_subset: list[int] = field(default_factory=list)  # train on these class indices only (base classes)
    frames: int = 8
    sampler: str = "uniform"  # uniform | dense
    stride: int = 4
    views: str = "1x1"  # evaluation views
    batch_size: int = 8
    workers: int = 2
    shots: int = 0  # > 0: K-shot C-way few-shot training, samples repeated to keep epoch length (B.1)
    augment: bool = True
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0])  # RandomResizedCrop area range (Table A.3)
    gray_p: float = 0.2
    flip_p: float = 0.5
    randaugment_n: int = 2
    randaugment_m: int = 9
    size: int = 0  # 0 = the model's input size
    flow_cache: str | None = None  # `openvocab flow extract` output; flow is computed on the fly where absent
    min_class_count: int = 0  # training vocabulary: drop classes with fewer training videos (multi-label §4.1)
    block_list: str | None = None  # training vocabulary: a file of class names to drop (one a line; §4.1 video game titles)
    classes_per_video: int = 4  # optim.loss=bce: each batch scores this many classes per video (4B, multi-label §3.3)


@dataclass
class OptimConfig:
    lr: float = 5e-5
    min_lr: float = 5e-6
    weight_decay: float = 0.2
    betas: list[float] = field(default_factory=lambda: [0.9, 0.98])
    epochs: int = 30
    warmup_epochs: float = 5.0
    accumulation: int = 1
    head_lr: float | None = None  # lr of the temporal module and head (default: lr)
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | fp32 | bf16 | fp16
    loss: str = "ce"  # ce (frozen classifier, Eq. 3) | infonce (contrastive baseline, Eq. 2 / Algorithm 1)
    max_grad_norm: float = 0.0
    mov_alpha: float = 0.5  # MOV Eq. 9: weight of the fused-video term (fusion mov / score)
    bce_tau: float = 0.07  # optim.loss=bce: τ of p = σ(s/τ) (multi-label Eq. 2)
    negative_weight: float = 1.0  # optim.loss=bce: w, the weight of the negative terms (Eq. 2)
    reg_weight: float = 1e-6  # temporal parallel / serial: weight of the prediction-matching term (multi-label K.2)


@dataclass
class RunConfig:
    out: str = "runs/text4vis"
    seed: int = 0
    device: str = "auto"
    save_every_steps: int = 0  # 0: at the end of every epoch
    keep_last: int = 3
    eval_every_epochs: int = 1
    max_steps: int = 0  # 0: no limit (epochs decide)
    resume: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def to_dict(self) -> dict:
        """The recipe as YAML writes it: streams nested under their names in ``model``."""
        d = dataclasses.asdict(self)
        streams = d["model"].pop("streams")
        d["model"] = {**streams, **d["model"]}
        return d

    def recognizer_spec(self, num_classes: int):
        """The :class:`~openvocab.models.spec.RecognizerSpec` this recipe trains (``num_classes`` training classes)."""
        from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec

        m = self.model
        streams = {
            name: StreamSpec(
                model=s.model,
                input=s.input,
                temporal=s.temporal,
                temporal_layers=s.temporal_layers,
                token_t1d_blocks=tuple(s.token_t1d_blocks),
                t1d_stages=tuple(s.t1d_stages),
                t1d_init=s.t1d_init,
                frames=self.data.frames,
                train_backbone=s.train_backbone,
                train_last_blocks=s.train_last_blocks,
                flow_method=s.flow_method,
                audio_seconds=s.audio_seconds,
                branch_blocks=s.branch_blocks,
                weight_reg=s.weight_reg,
            )
            for name, s in m.streams.items()
        }
        head = HeadSpec(
            classifier=m.classifier,
            num_classes=num_classes,
            train_text=m.text_online and self.optim.loss in ("infonce", "bce"),
            prompts=m.prompts,
            template=m.template,
            sentence_encoder=m.sentence_encoder,
            # the BCE's p = σ(s/τ) (multi-label Eq. 2): the head's scale is 1/τ, so scores and loss share one temperature
            logit_scale=m.logit_scale if m.logit_scale is not None or self.optim.loss != "bce" else 1.0 / self.optim.bce_tau,
            context_tokens=m.context_tokens,
            adapter_reduction=m.adapter_reduction,
            adapter_ratio=m.adapter_ratio,
            multi_label=self.optim.loss == "bce",
            llm=m.llm,
            llm_prefixes=m.llm_prefixes,
            llm_attributes=m.llm_attributes,
            llm_attribute_tokens=m.llm_attribute_tokens,
            llm_connector=m.llm_connector,
            llm_adaptation=m.llm_adaptation,
            llm_lora_rank=m.llm_lora_rank,
        )
        return RecognizerSpec(streams=streams, head=head, fusion=m.fusion)


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if value is None and (annotation is type(None) or type(None) in args):
        return None
    if origin is typing.Union or str(origin) == "types.UnionType" or (args and type(None) in args):
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except InputError:
                continue
        raise InputError(f"{where}: {value!r} is not a valid {annotation}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(v, args[0], where) for v in value] if args else list(value)
    if annotation is bool:
        if isinstance(value, bool):
            return value
        raise InputError(f"{where}: expected true/false, got {value!r}")
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise InputError(f"{where}: expected an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise InputError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise InputError(f"{where}: expected a string, got {value!r}")
        return str(value)
    return value


_STREAM_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


def _apply_model(section: ModelConfig, values: dict, where: str) -> None:
    """The ``model`` section: flat stream keys set the primary stream; ``NAME: {...}`` / ``NAME.key`` a named one.
    A mapping that names its streams and none of them ``rgb`` (a flow-only or audio-only recipe, MOV Table 5) has no
    default ``rgb`` stream."""
    plain: dict = {}
    named: list[str] = []
    flat = False
    for key, value in values.items():
        name, _, sub = str(key).partition(".")
        if key in STREAM_KEYS:
            flat = True
            _apply_fields(section.primary, {key: value}, where)
        elif sub or (isinstance(value, dict) and key not in ("streams",)):
            if not _STREAM_NAME.match(name) or name in {f.name for f in dataclasses.fields(ModelConfig)}:
                raise InputError(f"{where}: '{key}' is neither a model key nor a stream name")
            stream = section.streams.setdefault(name, StreamConfig(model=section.primary.model))
            _apply_fields(stream, {sub: value} if sub else (value or {}), f"{where}: {name}")
            if not sub:
                named.append(name)
        else:
            plain[key] = value
    if named and "rgb" not in named and not flat and next(iter(section.streams)) == "rgb" and section.streams["rgb"] == StreamConfig():
        del section.streams["rgb"]
    if "streams" in plain:
        raise InputError(f"{where}: give streams by name (model.rgb.temporal=ttrans), not as 'streams'")
    _apply_fields(section, plain, where)


def _apply(section: Any, values: dict, where: str) -> None:
    if isinstance(section, ModelConfig):
        _apply_model(section, values, where)
    else:
        _apply_fields(section, values, where)


def _apply_fields(section: Any, values: dict, where: str) -> None:
    hints = typing.get_type_hints(type(section))
    hints.pop("streams", None)
    for key, value in values.items():
        if key not in hints:
            known = ", ".join(hints)
            raise InputError(f"{where}: unknown key '{key}' (known: {known})")
        setattr(section, key, _coerce(value, hints[key], f"{where}: {key}"))


def apply_mapping(cfg: TrainConfig, data: dict, *, where: str) -> TrainConfig:
    for name, values in (data or {}).items():
        if name not in ("model", "data", "optim", "run"):
            raise InputError(f"{where}: unknown section '{name}' (model, data, optim, run)")
        if not isinstance(values, dict):
            raise InputError(f"{where}: section '{name}' must be a mapping")
        _apply(getattr(cfg, name), values, f"{where}: {name}")
    return cfg


def parse_override(text: str) -> tuple[str, str, Any]:
    """``"optim.lr=1e-4"`` -> ``("optim", "lr", 1e-4)``; the value is parsed as YAML (numbers, lists, true/false)."""
    if "=" not in text or "." not in text.split("=", 1)[0]:
        raise InputError(f"override '{text}' must look like section.key=value (e.g. optim.lr=1e-4)")
    dotted, raw = text.split("=", 1)
    section, key = dotted.split(".", 1)
    try:
        value = yaml.safe_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return section, key, _floatify(value)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Defaults, then the YAML file (after the recipe it names as ``base:``, if any), then the overrides."""
    cfg = TrainConfig()
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise InputError("no such recipe file", path=p)
        try:
            data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            line = getattr(getattr(exc, "problem_mark", None), "line", None)
            raise InputError(f"not valid YAML{f' (line {line + 1})' if line is not None else ''}", path=p) from None
        if not isinstance(data, dict):
            raise InputError("a recipe must be a mapping of sections (model, data, optim, run)", path=p)
        data = _floatify(data)
        base = data.pop("base", None)
        if base is not None:  # a recipe may extend another one (paths relative to the recipe)
            cfg = load_config(p.parent / str(base))
        apply_mapping(cfg, data, where=str(p))
    for text in overrides:
        section, key, value = parse_override(text)
        apply_mapping(cfg, {section: {key: value}}, where=f"override '{text}'")
    return validate(cfg, where=str(path) if path is not None else "recipe")


_SCIENTIFIC = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _floatify(data: Any) -> Any:
    """PyYAML (YAML 1.1) reads ``5e-5`` as a string; turn such strings back into floats."""
    if isinstance(data, dict):
        return {k: _floatify(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_floatify(v) for v in data]
    if isinstance(data, str) and _SCIENTIFIC.match(data.strip()):
        return float(data)
    return data


def _choices() -> dict[tuple[str, str], tuple[str, ...]]:
    """Every recipe key with a fixed set of values; the model ones come from the registries of ``models.choices``."""
    from openvocab.io.choices import SAMPLERS
    from openvocab.models.choices import FUSIONS, HEADS

    return {
        ("model", "classifier"): HEADS.names(),
        ("model", "fusion"): FUSIONS.names(),
        ("data", "format"): ("manifest", "kinetics", "ucf101", "hmdb51", "activitynet", "vggsound", "rareact"),
        ("data", "sampler"): SAMPLERS.names(),
        ("data", "val_mode"): ("segments", "videos"),
        ("optim", "precision"): ("auto", "fp32", "bf16", "fp16"),
        ("optim", "loss"): ("ce", "infonce", "bce"),
        ("model", "llm_connector"): ("transformer", "mlp", "linear"),
        ("model", "llm_adaptation"): ("prefix", "lora"),
    }


def _stream_choices() -> dict[str, tuple[str, ...]]:
    from openvocab.io.choices import FLOW_METHODS
    from openvocab.models.choices import MODALITIES, TEMPORAL

    return {"temporal": TEMPORAL.names(), "input": MODALITIES.names(), "t1d_init": ("shift", "identity"), "flow_method": FLOW_METHODS.names()}


def validate(cfg: TrainConfig, *, where: str) -> TrainConfig:
    """Refuse unknown choices and impossible numbers with one line naming the key."""
    for (section, key), allowed in _choices().items():
        value = getattr(getattr(cfg, section), key)
        if value not in allowed:
            raise InputError(f"{where}: {section}.{key} must be one of {', '.join(allowed)}, got '{value}'")
    primary = next(iter(cfg.model.streams))
    for name, stream in cfg.model.streams.items():
        for key, allowed in _stream_choices().items():
            value = getattr(stream, key)
            if value not in allowed:
                label = f"model.{key}" if name == primary else f"model.{name}.{key}"
                raise InputError(f"{where}: {label} must be one of {', '.join(allowed)}, got '{value}'")
    if len(cfg.model.streams) > 1 and cfg.model.fusion == "identity":
        raise InputError(f"{where}: {len(cfg.model.streams)} streams ({', '.join(cfg.model.streams)}) need a fusion that combines them (model.fusion: mean)")
    positive = [
        ("data", "frames"),
        ("data", "batch_size"),
        ("data", "stride"),
        ("optim", "epochs"),
        ("optim", "accumulation"),
        ("run", "keep_last"),
        ("run", "eval_every_epochs"),
    ]
    for section, key in positive:
        if getattr(getattr(cfg, section), key) < 1:
            raise InputError(f"{where}: {section}.{key} must be >= 1")
    if cfg.optim.lr <= 0 or cfg.optim.min_lr < 0 or cfg.optim.min_lr > cfg.optim.lr:
        raise InputError(f"{where}: need 0 <= optim.min_lr <= optim.lr and optim.lr > 0")
    if cfg.model.classifier.startswith("llm-") and not cfg.model.llm:
        raise InputError(f"{where}: model.classifier={cfg.model.classifier} needs model.llm (a T5 / Flan-T5 hub id or directory)")
    if cfg.optim.bce_tau <= 0 or cfg.optim.negative_weight <= 0 or cfg.data.classes_per_video < 1:
        raise InputError(f"{where}: need optim.bce_tau > 0, optim.negative_weight > 0 and data.classes_per_video >= 1")
    if cfg.data.val_mode == "videos" and cfg.data.format != "activitynet":
        raise InputError(f"{where}: data.val_mode=videos needs data.format=activitynet (got '{cfg.data.format}')")
    return cfg


def save_config(cfg: TrainConfig, path: str | Path) -> None:
    from openvocab.atomic import atomic_write

    atomic_write(path, yaml.safe_dump(cfg.to_dict(), sort_keys=False))
