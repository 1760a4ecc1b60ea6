"""``openvocab features ...``: the feature cache -- extract frozen rgb / flow / audio features once, train heads (MOV too) from them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import (
    DEFAULT_MODEL,
    PROMPTS_HELP,
    BatchSizeOption,
    DeviceOption,
    FramesOption,
    ModelOption,
    OverwriteOption,
    SamplerOption,
    StrideOption,
    WorkersOption,
    print_error,
    progress_bar,
    prompt_set_of,
    setup_logging,
)
from openvocab.errors import InputError
from openvocab.io.choices import FLOW_METHODS
from openvocab.models.choices import FUSIONS, HEADS, MODALITIES, TEMPORAL

features_app = typer.Typer(no_args_is_help=True, help="Feature cache: extract frozen rgb / flow / audio features once, train heads from them.")

HEAD_FORMAT = "openvocab-head"
HEAD_TENSORS = "head.safetensors"
HEAD_JSON = "head.json"


#: The modalities a cache holds, in stream order (``openvocab.features.cache.CACHE_MODALITIES``, without its imports).
CACHE_MODALITIES = MODALITIES.names()
MODALITY_HELP = (
    "Input modality to cache: rgb (frames), flow (optical-flow images of the same sampled frames, MOV §4.1) or audio "
    "(a log-mel spectrogram image per temporal view, MOV §4.2: one feature per view, T = 1)."
)


@features_app.command("extract")
def features_extract(
    manifest: Path = typer.Argument(..., help="Manifest (CSV/JSONL with path,label) of the videos to cache."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache directory (re-running resumes an interrupted extraction)."),
    model: ModelOption = DEFAULT_MODEL,
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file (one class a line)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder that relative paths in the manifest start from."),
    frames: FramesOption = 8,
    sampler: SamplerOption = "uniform",
    stride: StrideOption = 4,
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops to cache, e.g. 4x3."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Also cache CLS+patch tokens of these vision layers, e.g. '6,12' (rgb and flow)."),
    modality: str = typer.Option("rgb", "--modality", help=MODALITY_HELP),
    flow_method: str = typer.Option("tvl1", "--flow-method", help=f"--modality flow: {FLOW_METHODS.help_text()}."),
    flow_cache: Optional[Path] = typer.Option(
        None, "--flow-cache", help="--modality flow: an `openvocab flow extract` folder of the same method (flow is computed for videos it lacks)."
    ),
    audio_seconds: float = typer.Option(8.0, "--audio-seconds", help="--modality audio: seconds per spectrogram window (MOV: 8)."),
    batch_size: BatchSizeOption = 8,
    workers: WorkersOption = 2,
    device: DeviceOption = "cpu",
) -> None:
    """Cache frozen per-frame features of a manifest's videos as sharded safetensors, one modality per cache. Example:

    openvocab features extract data/synth/train.csv --out cache/train --model /models/clip-b16 --views 4x3

    openvocab features extract data/synth/train.csv --out cache/train_audio --model /models/clip-b16 --views 4x3 --modality audio

    Caches of several modalities of one manifest, extracted with the same --views (and --classes), are aligned video by
    video and view by view: 'features train-head' trains a MOV head from them.
    """
    setup_logging(False)
    if modality not in CACHE_MODALITIES:
        raise InputError(f"--modality {modality!r}: choose {', '.join(CACHE_MODALITIES)}")
    if modality == "flow":
        FLOW_METHODS.check(flow_method, where="--flow-method")
    if flow_cache is not None:
        if modality != "flow":
            raise InputError(f"--flow-cache is read for --modality flow, not {modality}")
        if not flow_cache.expanduser().is_dir():
            raise InputError("--flow-cache: no such folder (run `openvocab flow extract` first, or leave it out to compute flow)", path=flow_cache)
    from openvocab.data.manifests import read_manifest
    from openvocab.features.cache import extract_features
    from openvocab.io.sampling import SamplerSpec, parse_views
    from openvocab.models.backbone import ClipBackbone

    m = read_manifest(manifest, root=root, classes=classes)
    for problem in m.problems:
        print_error(f"warning: {problem}")
    m.require_nonempty()
    t, c = parse_views(views)
    spec = SamplerSpec(kind=sampler, frames=frames, stride=stride, temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
    layer_list = [int(x) for x in layers.split(",")] if layers else []
    backbone = ClipBackbone.from_pretrained(model, device=device)
    with progress_bar(f"extracting {modality}", len(m.records)) as update:
        info = extract_features(
            backbone=backbone,
            records=m.records,
            classes=m.classes,
            out_dir=out,
            sampler=spec,
            layers=layer_list,
            batch_size=batch_size,
            workers=workers,
            progress=lambda done, total: update(done),
            modality=modality,
            flow_method=flow_method,
            flow_cache=flow_cache,
            audio_seconds=audio_seconds,
        )
    for path in info.failed:
        print_error(f"error: {path}: could not be decoded (skipped)")
    per_view = f"{frames} frames" if modality != "audio" else f"1 spectrogram of {audio_seconds:g} s"
    what = {"rgb": "", "flow": f" {flow_method} flow", "audio": " audio"}[modality]
    print(
        f"cached{what} features of {info.count} videos ({len(info.failed)} failed) x {t * c} views x {per_view}, dim {info.dim}, "
        f"in {len(info.shards)} shards at {out}"
    )
    if info.failed:
        raise typer.Exit(1)


def _load_caches(paths: list[Path], *, what: str) -> dict:
    """``{modality: FeatureCache}`` of the given caches in stream order (rgb, flow, audio), one per modality."""
    from openvocab.features.cache import FeatureCache

    caches: dict = {}
    for path in paths:
        cache = FeatureCache(path)
        if cache.modality in caches:
            raise InputError(
                f"{what}: two caches of {cache.modality} features ({caches[cache.modality].directory} and {path}); give one cache per modality", path=path
            )
        caches[cache.modality] = cache
    return {m: caches[m] for m in CACHE_MODALITIES if m in caches}


@features_app.command("train-head")
def features_train_head(
    caches: list[Path] = typer.Argument(
        ...,
        help="Training cache(s) from 'features extract': one, or one per modality of the same videos (e.g. an rgb and an audio cache of one "
        "manifest, same --views); each becomes the stream of its modality, rgb first.",
    ),
    val: Optional[list[Path]] = typer.Option(None, "--val", help="Validation cache(s), one per modality as for training (repeat --val)."),
    classifier: str = typer.Option("text", "--classifier", help=f"Classifier head: {HEADS.help_text()}."),
    temporal: str = typer.Option("tap", "--temporal", help=f"Temporal module: {TEMPORAL.help_text()}."),
    temporal_layers: int = typer.Option(1, "--temporal-layers"),
    fusion: Optional[str] = typer.Option(
        None,
        "--fusion",
        help=f"How streams combine: {FUSIONS.help_text()}. Default: identity for one cache, mov for two. mov/score train with MOV's loss "
        "(Eq. 9); their towers are frozen here, so this is the k = 0 point of MOV Table 6 (no flow/audio tower block fine-tuned; "
        "`openvocab train` fine-tunes them).",
    ),
    logit_scale: Optional[float] = typer.Option(
        None, "--logit-scale", help="The classifier's scale 1/τ (default: the CLIP model's; MOV fusions: 100, τ = 0.01)."
    ),
    mov_alpha: float = typer.Option(0.5, "--mov-alpha", help="MOV fusions: weight α of the fused video term of Eq. 9 (the flow/audio term has 1 − α)."),
    epochs: int = typer.Option(10, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    prompts: str = typer.Option("single", "--prompts", help=PROMPTS_HELP),
    out: Optional[Path] = typer.Option(
        None,
        "--out",
        "-o",
        help=f"Write the head here: {HEAD_TENSORS} (temporal module + classifier tensors) and {HEAD_JSON} (spec, classes, prompts, training settings, result); written to a temporary folder and renamed into place.",
    ),
    overwrite: OverwriteOption = False,
) -> None:
    """Train temporal modules, fusion + classifier head on cached features (no video decoding, no backbone). Example:

    openvocab features train-head cache/train --val cache/val --classifier linear --temporal ttrans --epochs 5 --out heads/linear

    A MOV head (video + audio, cross-attention fusion, MOV's loss) from two aligned caches of the same videos:

    openvocab features train-head cache/train cache/train_audio --val cache/val --val cache/val_audio --fusion mov --classifier text

    Frozen classifiers (text, normal, orthogonal, lda) with the parameter-free 'tap' module have nothing to train:
    the head is built, evaluated and saved as it is ("trained": false, with the reason).
    """
    setup_logging(False)
    if out is not None:
        target = out.expanduser()
        if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
            raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target)
    pset = prompt_set_of(prompts)  # before loading anything: a bad --prompts is one line at once
    fusion_name = fusion if fusion is not None else ("identity" if len(caches) == 1 else "mov")
    FUSIONS.check(fusion_name, where="--fusion")
    mov = fusion_name in ("mov", "score")
    if mov and classifier not in ("text", "sentence"):
        raise InputError(f"--fusion {fusion_name} scores against frozen label embeddings (MOV Eq. 9-12): use --classifier text or sentence")
    if mov and temporal != "tap":
        raise InputError(f"--fusion {fusion_name} has its own temporal transformers (MOV Eq. 2-4): leave --temporal at tap")
    if not 0.0 <= mov_alpha <= 1.0:
        raise InputError(f"--mov-alpha must be between 0 and 1, got {mov_alpha}")
    from openvocab.models.backbone import ClipBackbone
    from openvocab.models.factory import create_recognizer
    from openvocab.models.spec import HeadSpec, RecognizerSpec, StreamSpec
    from openvocab.text.prompts import normalise_class_name
    from openvocab.train.head_training import evaluate_head, stream_caches, train_head

    train_caches = _load_caches(caches, what="training caches")
    if mov and list(train_caches)[:1] != ["rgb"]:
        raise InputError(f"--fusion {fusion_name} fuses an rgb cache with a flow or audio cache; got {', '.join(train_caches)} caches")
    primary = next(iter(train_caches.values()))
    names = [normalise_class_name(c) for c in primary.info.classes]
    for modality, cache in train_caches.items():
        if cache.info.classes != primary.info.classes:
            raise InputError(
                f"the {modality} cache has other classes than the {primary.modality} cache (extract both with the same --classes)", path=cache.directory
            )
    backbones: dict = {}  # one frozen tower per model: the towers are never run here, streams of one model share it
    for cache in train_caches.values():
        if cache.info.model not in backbones:
            backbones[cache.info.model] = ClipBackbone.from_pretrained(cache.info.model)
        if backbones[cache.info.model].fingerprint != cache.info.fingerprint:
            raise InputError(f"the cache was extracted with other weights than '{cache.info.model}' has now", path=cache.directory)
    streams = {
        modality: StreamSpec(
            model=cache.info.model,
            input=modality,
            temporal=temporal,
            temporal_layers=temporal_layers,
            frames=int(cache.frames.shape[2]),
            train_backbone=False,
            flow_method=cache.info.inputs.get("flow_method", "tvl1"),
            audio_seconds=float(cache.info.inputs.get("audio_seconds", 8.0)),
        )
        for modality, cache in train_caches.items()
    }
    spec = RecognizerSpec(
        streams=streams, head=HeadSpec(classifier=classifier, num_classes=len(names), prompts=prompts, logit_scale=logit_scale), fusion=fusion_name
    )
    lda = (primary.video_embeddings(), primary.targets.numpy()) if classifier == "lda" else None
    try:
        model = create_recognizer(
            spec, class_names=names, lda=lda, seed=seed, backbones={modality: backbones[c.info.model] for modality, c in train_caches.items()}
        )
    except ValueError as exc:  # a fusion refusing its streams (one line)
        raise InputError(f"--fusion {fusion_name}: {exc}") from None
    spec = model.spec  # as built (a MOV fusion sets the head's scale)
    stream_caches(model, train_caches)  # aligned, right modality and width: one line before any training
    groups = model.parameter_groups()
    trainable = [n for n, _ in groups["head"] + groups["label_encoder"]]
    history = train_head(model, train_caches, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed, mov_alpha=mov_alpha) if trainable else []
    result: dict = {"train_loss": [round(x, 4) for x in history], "trained": bool(trainable)}
    if not trainable:
        result["reason"] = (
            f"nothing to train: the '{classifier}' classifier is frozen and the '{temporal}' temporal module has no "
            "parameters (--classifier linear or sentence, or --temporal ttrans, have some); the head is used as built"
        )
    if val:
        val_caches = _load_caches(val, what="--val")
        if list(val_caches) != list(train_caches):
            raise InputError(f"--val gives {', '.join(val_caches)} caches; the head reads {', '.join(train_caches)}")
        for cache in val_caches.values():
            if cache.info.classes != primary.info.classes:
                raise InputError("has other classes than the training cache (extract both with the same --classes)", path=cache.directory)
        result["val"] = evaluate_head(model, val_caches)
    if out is not None:
        settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
        if mov:
            settings["mov_alpha"] = mov_alpha
        path = _save_head(
            out.expanduser(),
            model,
            spec=spec,
            classes=list(primary.info.classes),
            class_names=names,
            prompts=pset if classifier == "text" else None,
            caches={modality: cache.directory for modality, cache in train_caches.items()},
            cache_info=primary.info,
            settings=settings,
            result=result,
            overwrite=overwrite,
        )
        result["saved"] = str(path)
    print(json.dumps(result, indent=2))
    if out is not None:
        print_error(f"wrote the head to {result['saved']} ({HEAD_TENSORS}, {HEAD_JSON})")


def _save_head(
    target: Path, model, *, spec, classes: list[str], class_names: list[str], prompts, caches: dict, cache_info, settings: dict, result: dict, overwrite: bool
) -> Path:
    """The head's tensors (everything of ``model`` but the frozen backbone, under their state-dict names) as
    safetensors, and what built it as JSON, in a folder that appears complete or not at all."""
    from safetensors.torch import save_file

    from openvocab.atomic import atomic_dir

    frozen_tower = {f"streams.{name}.backbone." for name in model.streams}
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items() if not k.startswith(tuple(frozen_tower))}
    document = {
        "format": HEAD_FORMAT,
        "version": 1,
        "spec": spec.to_dict(),
        "classes": classes,
        "class_names": class_names,
        "prompts": None if prompts is None else {"name": prompts.name, "key": prompts.key, "templates": list(prompts.templates)},
        "backbone": {"model": cache_info.model, "fingerprint": cache_info.fingerprint},
        "cache": str(Path(next(iter(caches.values()))).expanduser().resolve()),  # the primary stream's
        "caches": {name: str(Path(path).expanduser().resolve()) for name, path in caches.items()},
        "training": {**settings, "trained": result["trained"], "reason": result.get("reason"), "train_loss": result["train_loss"]},
        "val": result.get("val"),
    }
    try:
        with atomic_dir(target, overwrite=overwrite) as tmp:
            save_file(tensors, str(tmp / HEAD_TENSORS), metadata={"format": HEAD_FORMAT})
            (tmp / HEAD_JSON).write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    except FileExistsError:
        raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target) from None
    except OSError as exc:
        raise InputError(f"cannot write the head ({exc.strerror or exc})", path=target) from None
    return target
