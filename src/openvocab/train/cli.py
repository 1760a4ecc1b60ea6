"""The research commands of the ``openvocab`` CLI: ``train``, ``evaluate`` and ``features`` (Text4Vis and later
recipes). Registered on the main app by :func:`register`; shared helpers live in :mod:`openvocab.cli_utils`."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import List, Optional

import typer

from openvocab.cli_utils import DEFAULT_MODEL, MODEL_HELP, PROMPTS_HELP, setup_logging, print_error, write_output
from openvocab.errors import InputError


def train(
    recipe: Optional[Path] = typer.Argument(None, help="YAML recipe (configs/...); omit to use the defaults."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. optim.lr=1e-4 data.batch_size=4"),
) -> None:
    """Train a video recogniser (Text4Vis: CLIP vision tower + temporal module + frozen text classifier).

    Example: openvocab train configs/text4vis/synth_tiny.yaml run.out=runs/synth optim.epochs=3

    Re-running the same command resumes from the run directory's latest checkpoint.
    """
    setup_logging(False)
    logging.getLogger("openvocab").setLevel(logging.INFO)
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train as run_training

    cfg = load_config(recipe, list(overrides or []))
    result = run_training(cfg)
    print(json.dumps(result, indent=2))


def evaluate(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Labelled videos: a manifest (CSV/JSONL), Kinetics CSV, ActivityNet JSON, or UCF101/HMDB51 split folder."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="YAML with an 'evaluate:' mapping of these options (e.g. configs/text4vis/table4_*.yaml); options given on the command line win."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A CLIP model (zero-shot) or a training run directory."),
    data_format: str = typer.Option("manifest", "--format", help="manifest, kinetics, ucf101, hmdb51 or activitynet."),
    root: Optional[Path] = typer.Option(None, "--root", help="Video folder (Kinetics/UCF101/HMDB51/ActivityNet, or relative manifest paths)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file."),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split number (the test list is used)."),
    val_mode: str = typer.Option("segments", "--val-mode", help="ActivityNet validation: segments (the trimmed annotation windows) or videos (whole untrimmed videos with all their labels, scored multi-label; Text4Vis Table 2)."),
    protocol: str = typer.Option("full", "--protocol", help="full, half (half the classes x --trials, Text4Vis UCF*/HMDB*) or k600."),
    trials: int = typer.Option(10, "--trials"),
    seed: int = typer.Option(0, "--seed"),
    split_files: Optional[List[Path]] = typer.Option(None, "--split-files", help="k600: the three files of 160 class names."),
    frames: int = typer.Option(8, "--frames", "-f"),
    sampler: str = typer.Option("uniform", "--sampler"),
    stride: int = typer.Option(4, "--stride"),
    views: str = typer.Option("1x1", "--views", help="e.g. 4x3 (view embeddings averaged)."),
    batch_size: int = typer.Option(8, "--batch-size"),
    workers: int = typer.Option(2, "--workers"),
    device: str = typer.Option("cpu", "--device"),
    plots: Optional[Path] = typer.Option(None, "--plots", help="Write confusion_matrix.png and class_correlation.png here."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON result here (atomically)."),
) -> None:
    """Evaluate zero-shot CLIP or a trained run on a labelled dataset. Example (Text4Vis Table 4, UCF*):

    openvocab evaluate ucfTrainTestlist --format ucf101 --root UCF-101 --model runs/k400 --protocol half

    or, one command per Table 4 row: openvocab evaluate --recipe configs/text4vis/table4_ucf101_half.yaml

    The full protocol reports top-1, top-5, mean-class accuracy and mAP (ActivityNet's metric). Untrimmed
    ActivityNet validation videos (Table 2): openvocab evaluate activity_net.v1-3.min.json --format activitynet
    --root videos --val-mode videos --frames 16 --model runs/text4vis/table2_anet_vitl14_f16
    """
    setup_logging(False)
    opts = {"data": data, "model": model, "format": data_format, "root": root, "classes": classes, "split": split, "val_mode": val_mode, "protocol": protocol,
            "trials": trials, "seed": seed, "split_files": split_files or [], "frames": frames, "sampler": sampler, "stride": stride,
            "views": views, "batch_size": batch_size, "workers": workers, "device": device}
    if recipe is not None:
        from openvocab.eval.run import load_eval_recipe

        param_of = {"format": "data_format"}
        for key, value in load_eval_recipe(recipe).items():
            source = ctx.get_parameter_source(param_of.get(key, key))
            if source is None or source.name != "COMMANDLINE":
                opts[key] = value
    if opts["data"] is None:
        raise InputError("no dataset given: pass DATA or --recipe")
    from openvocab.eval.run import evaluate as run_evaluation
    from openvocab.io.sampling import SamplerSpec, parse_views
    from openvocab.train.config import DataConfig
    from openvocab.train.data_setup import read_split

    if opts["val_mode"] not in ("segments", "videos"):
        raise InputError(f"--val-mode must be segments or videos, got '{opts['val_mode']}'")
    if opts["val_mode"] == "videos" and opts["format"] != "activitynet":
        raise InputError(f"--val-mode videos needs --format activitynet (got '{opts['format']}')")
    where = DataConfig(format=opts["format"], train=str(opts["data"]), val=str(opts["data"]), val_mode=opts["val_mode"], root=str(opts["root"]) if opts["root"] else None, classes=str(opts["classes"]) if opts["classes"] else None, split=int(opts["split"]))
    m = read_split(where, "val")  # UCF101/HMDB51: the split's test list; ActivityNet: validation (segments or videos)
    for problem in m.problems[:20]:
        print_error(f"warning: {problem}")
    m.require_nonempty()
    t, c = parse_views(opts["views"])
    spec = SamplerSpec(kind=opts["sampler"], frames=opts["frames"], stride=opts["stride"], temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
    result = run_evaluation(model_source=str(opts["model"]), manifest=m, protocol=opts["protocol"], sampler=spec, trials=opts["trials"], seed=opts["seed"], split_files=[str(p) for p in opts["split_files"]], batch_size=opts["batch_size"], workers=opts["workers"], device=opts["device"], plots=plots)
    write_output(json.dumps(result, indent=2), output)


features_app = typer.Typer(no_args_is_help=True, help="Feature cache: extract frozen frame features once, train heads from them.")


@features_app.command("extract")
def features_extract(
    manifest: Path = typer.Argument(..., help="Manifest (CSV/JSONL with path,label) of the videos to cache."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache directory (re-running resumes an interrupted extraction)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file (one class a line)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Folder that relative paths in the manifest start from."),
    frames: int = typer.Option(8, "--frames", "-f"),
    sampler: str = typer.Option("uniform", "--sampler"),
    stride: int = typer.Option(4, "--stride"),
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops to cache, e.g. 4x3."),
    layers: Optional[str] = typer.Option(None, "--layers", help="Also cache CLS+patch tokens of these vision layers, e.g. '6,12'."),
    batch_size: int = typer.Option(8, "--batch-size"),
    workers: int = typer.Option(2, "--workers"),
    device: str = typer.Option("cpu", "--device"),
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
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("extracting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("", total=len(m.records))
        info = extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=out, sampler=spec, layers=layer_list, batch_size=batch_size, workers=workers, progress=lambda done, total: bar.update(task, completed=done))
    for path in info.failed:
        print_error(f"error: {path}: could not be decoded (skipped)")
    print(f"cached {info.count} videos ({len(info.failed)} failed) x {t * c} views x {frames} frames, dim {info.dim}, in {len(info.shards)} shards at {out}")
    if info.failed:
        raise typer.Exit(1)


@features_app.command("train-head")
def features_train_head(
    cache: Path = typer.Argument(..., help="Training cache (from 'features extract')."),
    val: Optional[Path] = typer.Option(None, "--val", help="Validation cache to evaluate on."),
    classifier: str = typer.Option("text", "--classifier", help="text, sentence, normal, orthogonal, lda or linear (a linear probe)."),
    temporal: str = typer.Option("tap", "--temporal", help="tap or ttrans."),
    temporal_layers: int = typer.Option(1, "--temporal-layers"),
    epochs: int = typer.Option(10, "--epochs"),
    lr: float = typer.Option(1e-3, "--lr"),
    batch_size: int = typer.Option(64, "--batch-size"),
    seed: int = typer.Option(0, "--seed"),
    prompts: str = typer.Option("single", "--prompts", help=PROMPTS_HELP),
) -> None:
    """Train a temporal module + classifier head on cached features (no video decoding, no backbone). Example:

    openvocab features train-head cache/train --val cache/val --classifier lda --epochs 5
    """
    setup_logging(False)
    from openvocab.features.cache import FeatureCache
    from openvocab.features.head_training import evaluate_head, train_head
    from openvocab.models.backbone import ClipBackbone
    from openvocab.models.recognizer import RecognizerSpec, VideoRecognizer, build_head
    from openvocab.text.prompts import normalise_class_name, prompt_set

    train_cache = FeatureCache(cache)
    names = [normalise_class_name(c) for c in train_cache.info.classes]
    backbone = ClipBackbone.from_pretrained(train_cache.info.model)
    if backbone.fingerprint != train_cache.info.fingerprint:
        raise InputError(f"the cache was extracted with other weights than '{train_cache.info.model}' has now", path=cache)
    spec = RecognizerSpec(model=train_cache.info.model, num_classes=len(names), classifier=classifier, temporal=temporal, temporal_layers=temporal_layers, frames=int(train_cache.frames.shape[2]), train_backbone=False)
    lda = (train_cache.video_embeddings(), train_cache.targets.numpy()) if classifier == "lda" else (None, None)
    head = build_head(spec, backbone=backbone, class_names=names, prompts=prompt_set(prompts) if prompts in {"single", "ensemble", "classname"} else None, lda_features=lda[0], lda_labels=lda[1], seed=seed)
    model = VideoRecognizer(backbone=backbone, head=head, spec=spec)
    trainable = [n for n, _ in model.trainable_named_parameters() if not n.startswith("backbone.")]
    history = train_head(model, train_cache, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed) if trainable else []
    result = {"train_loss": [round(x, 4) for x in history], "trained": bool(trainable)}
    if val is not None:
        result["val"] = evaluate_head(model, FeatureCache(val))
    print(json.dumps(result, indent=2))


def register(app: typer.Typer) -> None:
    """Attach these commands to the main app (called by :mod:`openvocab.cli` at import)."""
    app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})(train)
    app.command()(evaluate)
    app.add_typer(features_app, name="features")
