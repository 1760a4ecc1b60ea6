"""The model factory: every recogniser in openvocab is built here (classify, evaluate, features, the trainer).

* :func:`create_recognizer` -- a :class:`~openvocab.models.recognizer.VideoRecognizer` from a
  :class:`~openvocab.models.spec.RecognizerSpec` (each stream's encoder from the ``MODALITIES`` entry of its input
  -- a CLIP image tower for rgb, flow and audio; later streams on the same model are copies of the first --, temporal
  modules, fusion and head from the registries of :mod:`openvocab.models.choices`);
* :func:`load_recognizer` -- from a source: a hub id, a model directory or ``random:ARCH`` (zero-shot CLIP: one
  frozen RGB stream, TAP, a CLIP-text head scoring any labels), or an ``openvocab train`` run directory (its spec
  and latest checkpoint, also run directories written before streams existed).
"""

from __future__ import annotations

import copy
import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch

from openvocab.errors import InputError
from openvocab.models.backbone import ClipBackbone
from openvocab.models.choices import FUSIONS, HEADS, MODALITIES, TEMPORAL
from openvocab.models.recognizer import Stream, VideoRecognizer
from openvocab.models.spec import HeadSpec, RecognizerSpec

log = logging.getLogger(__name__)

#: Head settings that run directories written before ``extra.spec`` existed keep in ``config.yaml``'s ``model:``.
_LEGACY_HEAD_SETTINGS = ("prompts", "template", "sentence_encoder", "logit_scale")


def create_recognizer(
    spec: RecognizerSpec,
    *,
    class_names: Sequence[str] = (),
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    lda: tuple | None = None,
    seed: int = 0,
    backbones: Mapping[str, ClipBackbone] | None = None,
    from_checkpoint: bool = False,
    gradient_checkpointing: bool = False,
    source: str | None = None,
) -> VideoRecognizer:
    """Build the recogniser ``spec`` describes.

    ``class_names``: the training classes (the head's ``W̃`` rows; none for zero-shot). ``lda``: ``(features,
    labels)`` for the LDA head. ``seed``: the random normal / orthogonal heads. ``backbones``: already-loaded towers
    by stream name (the others load from ``StreamSpec.model``). ``from_checkpoint``: the head's ``W̃`` will be
    loaded from a checkpoint, so it is allocated instead of computed (no text encoding, no LDA fit).
    """
    names = list(class_names)
    if spec.head.num_classes and spec.head.num_classes != len(names):
        raise ValueError(f"{len(names)} class names for {spec.head.num_classes} classes")
    FUSIONS.check(spec.fusion, where="model.fusion")
    HEADS.check(spec.head.classifier, where="model.classifier")
    if spec.fusion in MOV_FUSIONS:
        spec = _mov_spec(spec)
    streams: dict[str, Stream] = {}
    uses = Counter(s.model for s in spec.streams.values())
    pristine: dict[str, ClipBackbone] = {}  # towers used by several streams, copied before a Stream hooks into them
    for name, stream_spec in spec.streams.items():
        MODALITIES.check(stream_spec.input, where=f"model.{name}.input")
        TEMPORAL.check(stream_spec.temporal, where=f"model.{name}.temporal")
        backbone = (backbones or {}).get(name)
        if backbone is None and stream_spec.model in pristine:  # MOV §3.1: every modality's tower starts from the same weights
            backbone = copy.deepcopy(pristine[stream_spec.model])
        if backbone is None:
            backbone = MODALITIES.build(stream_spec.input, source=stream_spec.model, dtype=dtype)
        if uses[stream_spec.model] > 1 and stream_spec.model not in pristine:
            pristine[stream_spec.model] = copy.deepcopy(backbone)
        streams[name] = Stream(backbone=backbone, spec=stream_spec)
    pristine.clear()
    fusion = FUSIONS.build(spec.fusion, dims={n: s.dim for n, s in streams.items()}, inputs={n: s.input for n, s in spec.streams.items()})
    primary = streams[spec.primary].backbone
    head = HEADS.build(
        spec.head.classifier, spec=spec.head, dim=fusion.dim, backbone=primary, class_names=names, lda=lda, seed=seed, from_checkpoint=from_checkpoint
    )
    model = VideoRecognizer(streams=streams, fusion=fusion, head=head, spec=spec)
    model._class_names = names
    model.source = source or spec.model
    model.trained = bool(names)
    if gradient_checkpointing:
        model.enable_gradient_checkpointing()
    try:
        return model.to(device)
    except (RuntimeError, AssertionError) as exc:
        raise InputError(f"cannot move the model to device '{device}' ({exc})") from None


#: Fusions that give MOV's three embeddings (models.fusion.MovStreamFusion).
MOV_FUSIONS = ("mov", "score")


def _mov_spec(spec: RecognizerSpec) -> RecognizerSpec:
    """A MOV spec as built: its streams keep ``temporal: tap`` (the fusion's temporal transformers replace theirs), and
    the head's scale is ``1/τ`` with MOV's ``τ = 0.01`` (Eq. 9-10) unless the recipe sets ``model.logit_scale``."""
    from openvocab.scoring import MOV_TAU

    if spec.head.classifier not in ("text", "sentence"):
        raise InputError(f"model.fusion={spec.fusion} scores against frozen label embeddings (MOV Eq. 9-12): use model.classifier text or sentence")
    for name, stream in spec.streams.items():
        if stream.temporal != "tap":
            raise InputError(f"model.{name}.temporal={stream.temporal}: fusion '{spec.fusion}' has its own temporal transformers (Eq. 2-4); use tap")
    if spec.head.logit_scale is None:
        spec = spec.with_head(logit_scale=1.0 / MOV_TAU)
    return spec


def is_run_dir(source: str | Path) -> bool:
    """Whether ``source`` names an ``openvocab train`` run directory: ``config.yaml`` and a ``latest`` checkpoint, or
    ``step_*`` checkpoints whose ``latest`` file went missing (read from the newest intact one, with a warning)."""
    from openvocab.models.checkpoint_choice import list_checkpoints

    try:
        p = Path(source).expanduser()
        return p.is_dir() and (p / "config.yaml").is_file() and ((p / "latest").is_file() or bool(list_checkpoints(p)))
    except (OSError, ValueError):  # an unreadable directory, a name the system refuses: not a run directory
        return False


def load_recognizer(
    source: str | Path,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    prompts: str | None = None,
    template: str | None = None,
    llm: str | None = None,
) -> VideoRecognizer:
    """A recogniser from a hub id, model directory, ``random:ARCH`` or training run directory (module docstring).

    ``prompts`` / ``template`` choose the CLIP-text label encoder's prompt set (:func:`openvocab.text.prompts.
    resolve_prompts`); ``None`` means ``"ensemble"`` for a CLIP model and the run's own prompts for a run.
    ``llm`` (a T5 / Flan-T5 hub id or directory): zero-shot CLIP scores labels by LLM-written attributes (head
    ``llm-attributes``, open-vocabulary multi-label §3.1); for a run with an LLM head, where its LLM is now.
    """
    if is_run_dir(source):
        return _load_run(Path(source).expanduser(), device=device, dtype=dtype, prompts=prompts, template=template, llm=llm)
    p = Path(str(source)).expanduser()
    if p.is_dir() and (p / "config.yaml").is_file() and not (p / "config.json").is_file():
        raise InputError("looks like a training run directory but has no checkpoint yet (no 'latest' file, no step_* directory)", path=p)
    if p.is_dir() and (p / "trainer_state.json").is_file():
        raise InputError("is a checkpoint step directory; pass the run directory above it", path=p)
    spec = RecognizerSpec.zero_shot(str(source), prompts=prompts or "ensemble", template=template)
    if llm is not None:
        spec = spec.with_head(classifier="llm-attributes", llm=str(llm))
    return create_recognizer(spec, device=device, dtype=dtype, source=str(source))


def run_spec(run: str | Path) -> tuple[RecognizerSpec, list[str], Path]:
    """``(spec, class names, step directory)`` of a run's latest checkpoint (its newest intact one when that is
    damaged: :mod:`openvocab.models.checkpoint_choice`), without building the model."""
    from openvocab.models.checkpoint import read_trainer_state

    run_dir = Path(run).expanduser()
    step_dir, state = read_trainer_state(run_dir)
    extra = state.get("extra") or {}
    class_names = extra.get("class_names")
    if not class_names:
        raise InputError("checkpoint carries no class names", path=step_dir)
    try:
        if extra.get("spec"):
            spec = RecognizerSpec.from_dict(extra["spec"])
        else:  # written before streams: a flat arch, head settings in config.yaml
            spec = RecognizerSpec.from_dict(state.get("arch") or {}, head_settings=_legacy_head_settings(run_dir / "config.yaml"))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InputError(f"checkpoint describes a model this openvocab cannot build ({type(exc).__name__}: {exc})", path=step_dir) from None
    return spec, list(class_names), step_dir


def _legacy_head_settings(config: Path) -> dict:
    import yaml

    try:
        data = yaml.safe_load(config.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        raise InputError("unreadable run recipe", path=config) from None
    model = data.get("model") or {}
    return {k: model[k] for k in _LEGACY_HEAD_SETTINGS if k in model}


def _load_run(run_dir: Path, *, device, dtype: torch.dtype | None, prompts: str | None, template: str | None, llm: str | None = None) -> VideoRecognizer:
    from openvocab.models.checkpoint import load_checkpoint

    spec, class_names, step_dir = run_spec(run_dir)
    if llm is not None:
        if spec.head.classifier not in ("llm-attributes", "llm-prompt"):
            log.warning("%s: --llm is used only by an 'llm-attributes' / 'llm-prompt' classifier; this run's is '%s'", run_dir, spec.head.classifier)
        else:
            spec = spec.with_head(llm=str(llm))
    if prompts is not None:
        if spec.head.classifier != "text":
            log.warning("%s: --prompts is used only by a 'text' classifier; this run's is '%s'", run_dir, spec.head.classifier)
        else:
            spec = spec.with_head(prompts=prompts, template=template)
    if dtype is not None and dtype != torch.float32:
        log.warning("%s: a training run is loaded in float32 (dtype %s ignored)", run_dir, dtype)
    model = create_recognizer(spec, class_names=class_names, device=device, from_checkpoint=True, source=str(run_dir))
    load_checkpoint(step_dir, model=model, arch=spec.arch(), restore_rng=False)
    model.run_dir = str(run_dir)
    return model.eval()


__all__ = ["HeadSpec", "RecognizerSpec", "create_recognizer", "is_run_dir", "load_recognizer", "run_spec"]
