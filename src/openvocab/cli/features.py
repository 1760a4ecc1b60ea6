"""``openvocab features ...``: the feature cache -- extract frozen frame features once, train heads from them."""

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
from openvocab.models.choices import HEADS, TEMPORAL

features_app = typer.Typer(no_args_is_help=True, help="Feature cache: extract frozen frame features once, train heads from them.")

HEAD_FORMAT = "openvocab-head"
HEAD_TENSORS = "head.safetensors"
HEAD_JSON = "head.json"


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
    layers: Optional[str] = typer.Option(None, "--layers", help="Also cache CLS+patch tokens of these vision layers, e.g. '6,12'."),
    batch_size: BatchSizeOption = 8,
    workers: WorkersOption = 2,
    device: DeviceOption = "cpu",
) -> None:
    """Cache frozen per-frame features of a manifest's videos as sharded safetensors. Example:

    openvocab features extract data/synth/train.csv --out cache/train --model /models/clip-b16 --views 4x3
    """
    setup_logging(False)
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
    with progress_bar("extracting", len(m.records)) as update:
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
        )
    for path in info.failed:
        print_error(f"error: {path}: could not be decoded (skipped)")
    print(f"cached {info.count} videos ({len(info.failed)} failed) x {t * c} views x {frames} frames, dim {info.dim}, in {len(info.shards)} shards at {out}")
    if info.failed:
        raise typer.Exit(1)


@features_app.command("train-head")
def features_train_head(
    cache: Path = typer.Argument(..., help="Training cache (from 'features extract')."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation cache to evaluate on."),
    classifier: str = typer.Option("text", "--classifier", help=f"Classifier head: {HEADS.help_text()}."),
    temporal: str = typer.Option("tap", "--temporal", help=f"Temporal module: {TEMPORAL.help_text()}."),
    temporal_layers: int = typer.Option(1, "--temporal-layers"),
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
    """Train a temporal module + classifier head on cached features (no video decoding, no backbone). Example:

    openvocab features train-head cache/train --val cache/val --classifier linear --temporal ttrans --epochs 5 --out heads/linear

    Frozen classifiers (text, normal, orthogonal, lda) with the parameter-free 'tap' module have nothing to train:
    the head is built, evaluated and saved as it is ("trained": false, with the reason).
    """
    setup_logging(False)
    if out is not None:
        target = out.expanduser()
        if target.exists() and not overwrite and (not target.is_dir() or any(target.iterdir())):
            raise InputError("already exists and is not empty (use --overwrite to replace it)", path=target)
    pset = prompt_set_of(prompts)  # before loading anything: a bad --prompts is one line at once
    from openvocab.features.cache import FeatureCache
    from openvocab.models.backbone import ClipBackbone
    from openvocab.models.factory import RecognizerSpec, create_recognizer
    from openvocab.text.prompts import normalise_class_name
    from openvocab.train.head_training import evaluate_head, train_head

    train_cache = FeatureCache(cache)
    names = [normalise_class_name(c) for c in train_cache.info.classes]
    backbone = ClipBackbone.from_pretrained(train_cache.info.model)
    if backbone.fingerprint != train_cache.info.fingerprint:
        raise InputError(f"the cache was extracted with other weights than '{train_cache.info.model}' has now", path=cache)
    spec = RecognizerSpec.single(
        model=train_cache.info.model,
        num_classes=len(names),
        classifier=classifier,
        temporal=temporal,
        temporal_layers=temporal_layers,
        frames=int(train_cache.frames.shape[2]),
        train_backbone=False,
        prompts=prompts,
    )
    lda = (train_cache.video_embeddings(), train_cache.targets.numpy()) if classifier == "lda" else None
    model = create_recognizer(spec, class_names=names, lda=lda, seed=seed, backbones={"rgb": backbone})
    groups = model.parameter_groups()
    trainable = [n for n, _ in groups["head"] + groups["label_encoder"]]
    history = train_head(model, train_cache, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed) if trainable else []
    result: dict = {"train_loss": [round(x, 4) for x in history], "trained": bool(trainable)}
    if not trainable:
        result["reason"] = (
            f"nothing to train: the '{classifier}' classifier is frozen and the '{temporal}' temporal module has no "
            "parameters (--classifier linear or sentence, or --temporal ttrans, have some); the head is used as built"
        )
    if val is not None:
        result["val"] = evaluate_head(model, FeatureCache(val))
    if out is not None:
        settings = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed}
        path = _save_head(
            out.expanduser(),
            model,
            spec=spec,
            classes=list(train_cache.info.classes),
            class_names=names,
            prompts=pset if classifier == "text" else None,
            cache=cache,
            cache_info=train_cache.info,
            settings=settings,
            result=result,
            overwrite=overwrite,
        )
        result["saved"] = str(path)
    print(json.dumps(result, indent=2))
    if out is not None:
        print_error(f"wrote the head to {result['saved']} ({HEAD_TENSORS}, {HEAD_JSON})")


def _save_head(
    target: Path, model, *, spec, classes: list[str], class_names: list[str], prompts, cache: Path, cache_info, settings: dict, result: dict, overwrite: bool
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
        "cache": str(Path(cache).expanduser().resolve()),
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
