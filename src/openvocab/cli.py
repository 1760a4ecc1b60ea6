"""The ``openvocab`` command line: classify, labels, model.

Every user-caused failure prints one line (``error: <file>: <problem>``) and exits non-zero; batch commands carry on
past bad files, list them at the end and exit 1. Heavy imports happen inside commands so ``--help`` is instant.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import sys
from pathlib import Path
from typing import List, Optional

import typer

from openvocab.errors import InputError, OpenVocabError

DEFAULT_MODEL = os.environ.get("OPENVOCAB_MODEL", "openai/clip-vit-base-patch32")

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Open-vocabulary video classification: any video, any labels.\n\n"
    "Example: openvocab classify my_video.mp4 --labels 'playing guitar, yoga, dog barking' --model /models/clip-vit-b-32",
)
labels_app = typer.Typer(no_args_is_help=True, help="Manage the label bank (cached label embeddings).")
model_app = typer.Typer(no_args_is_help=True, help="Create or inspect model directories.")
app.add_typer(labels_app, name="labels")
app.add_typer(model_app, name="model")


def _register_subapps() -> None:
    from openvocab.data.cli import data_app

    app.add_typer(data_app, name="data", help="Datasets: synthetic benchmark, manifest checks.")


_register_subapps()

_MODEL_HELP = "Hub id or local model directory (env OPENVOCAB_MODEL sets the default)."
_PROMPTS_HELP = "Prompt set: 'ensemble' (CLIP's 28 Kinetics templates), 'single', 'classname', or a templates file."


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _setup_logging(quiet: bool) -> None:
    for level in (logging.INFO, logging.WARNING, logging.ERROR):
        logging.addLevelName(level, logging.getLevelName(level).lower())
    logging.basicConfig(format="%(levelname)s: %(message)s", level=logging.ERROR if quiet else logging.WARNING, stream=sys.stderr, force=True)
    for noisy in ("transformers", "huggingface_hub", "httpx", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    import warnings

    warnings.filterwarnings("ignore")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # openvocab shows its own progress; no per-shard bars on stderr
    hf_logging.set_verbosity_error()


def _gather_labels(labels: Optional[str], labels_file: Optional[Path], extra: Optional[List[str]] = None) -> list[str]:
    from openvocab.text.prompts import parse_labels_arg, read_labels_file

    out: list[str] = list(extra or [])
    if labels is not None:
        out.extend(parse_labels_arg(labels))
    if labels_file is not None:
        out.extend(read_labels_file(labels_file))
    if labels is None and labels_file is None and not extra:
        raise InputError("no labels given: use --labels 'a, b, c' or --labels-file FILE")
    return out


def _write_output(text: str, output: Optional[Path]) -> None:
    """Print, or write atomically so an existing file is never half-overwritten."""
    text = text if text.endswith("\n") else text + "\n"
    if output is None:
        sys.stdout.write(text)
        return
    from openvocab.atomic import atomic_write

    try:
        atomic_write(output.expanduser(), text)
    except OSError as exc:
        raise InputError(f"cannot write results ({exc.strerror or exc})", path=output) from None


def _label_bank_arg(label_bank: Optional[Path], no_label_bank: bool):
    if no_label_bank:
        return False
    return label_bank if label_bank is not None else True


@app.command()
def classify(
    paths: List[str] = typer.Argument(..., help="Video files, folders (searched recursively), frame folders or glob patterns."),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated labels, e.g. 'playing guitar, yoga, dog barking'."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", "-L", help="Labels file: one per line (or .csv with a 'label' column, or a .json list)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=_MODEL_HELP),
    frames: int = typer.Option(8, "--frames", "-f", help="Frames per view."),
    sampler: str = typer.Option("uniform", "--sampler", help="'uniform' (TSN segments over the whole video) or 'dense' (consecutive frames at --stride)."),
    stride: int = typer.Option(4, "--stride", help="Frame stride of the dense sampler (MOV: 16 frames, stride 4)."),
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops, e.g. 1x1 or 4x3 (scores averaged over views)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many ranked labels to report."),
    multi_label: bool = typer.Option(False, "--multi-label", help="Score each label independently (sigmoid); uncalibrated until calibration lands."),
    threshold: float = typer.Option(0.5, "--threshold", help="Multi-label decision threshold on the sigmoid score."),
    segments: Optional[int] = typer.Option(None, "--segments", help="Time windows in the per-segment timeline (default: --frames; 0 disables)."),
    timeline: bool = typer.Option(False, "--timeline", help="Show the per-segment timeline in the table output."),
    fmt: str = typer.Option("table", "--format", help="table, json or csv."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write results to this file (atomically) instead of stdout."),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:1, mps ..."),
    prompts: str = typer.Option("ensemble", "--prompts", help=_PROMPTS_HELP),
    template: Optional[str] = typer.Option(None, "--template", help="The template of --prompts single, with one {} for the label."),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file (default: ~/.cache/openvocab/label_bank.sqlite)."),
    no_label_bank: bool = typer.Option(False, "--no-label-bank", help="Do not cache label embeddings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no warnings."),
) -> None:
    """Rank LABELS for each video. Example:

    openvocab classify clips/ --labels 'playing guitar, yoga, dog barking' --model /models/clip-vit-b-32 --views 4x3 --format json
    """
    _setup_logging(quiet)
    if fmt not in {"table", "json", "csv"}:
        raise InputError(f"--format must be table, json or csv, got '{fmt}'")
    from openvocab.io.discover import expand_inputs

    videos, problems = expand_inputs(paths)
    label_list = _gather_labels(labels, labels_file)
    if not videos:
        for path, why in problems:
            _stderr(f"error: {path}: {why}")
        raise typer.Exit(1)

    import openvocab
    from openvocab.results import render_table, to_csv, to_json

    clf = openvocab.load(model, device=device, label_bank=_label_bank_arg(label_bank, no_label_bank), prompts=prompts, template=template)
    kwargs = dict(frames=frames, sampler=sampler, stride=stride, views=views, top_k=top_k, multi_label=multi_label, threshold=threshold, segments=segments, on_error="skip")
    if quiet or len(videos) == 1:
        results = clf.classify(videos, label_list, **kwargs)
    else:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("classifying"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), TextColumn("{task.description}"), console=Console(stderr=True), transient=True) as bar:
            task = bar.add_task("", total=len(videos))
            results = clf.classify(videos, label_list, progress=lambda i, name: bar.update(task, completed=i, description=Path(name).name), **kwargs)

    if fmt == "json":
        _write_output(to_json(results), output)
    elif fmt == "csv":
        _write_output(to_csv(results), output)
    elif output is not None:
        _write_output(to_json(results), output) if output.suffix == ".json" else _write_output(to_csv(results), output)
    else:
        from rich.console import Console

        Console(soft_wrap=True).print(render_table(results, show_segments=timeline))

    failed = [(r.path, r.error) for r in results if not r.ok] + [(p, w) for p, w in problems]
    for _path, why in failed:
        _stderr(f"error: {why}" if str(why).startswith(str(_path)) else f"error: {_path}: {why}")
    if failed:
        _stderr(f"{len(failed)} of {len(results) + len(problems)} inputs failed; {sum(r.ok for r in results)} classified")
        raise typer.Exit(1)


@labels_app.command("add")
def labels_add(
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated labels."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", "-L", help="Labels file, one per line."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=_MODEL_HELP),
    prompts: str = typer.Option("ensemble", "--prompts", help=_PROMPTS_HELP),
    template: Optional[str] = typer.Option(None, "--template", help="Template for --prompts single."),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode labels into the bank ahead of time (only labels not yet there are encoded). Example:

    openvocab labels add --labels-file kinetics400.txt --model /models/clip-vit-b-16
    """
    _setup_logging(False)
    import openvocab
    from openvocab.text.prompts import clean_labels

    label_list, warnings = clean_labels(_gather_labels(labels, labels_file))
    for w in warnings:
        _stderr(f"warning: {w}")
    clf = openvocab.load(model, device=device, label_bank=label_bank or True, prompts=prompts, template=template)
    clf.label_embeddings(label_list)
    print(f"{len(label_list)} labels in the bank for this model and prompt set; {clf.last_encoded_labels} newly encoded ({clf.label_bank.path})")


@labels_app.command("list")
def labels_list(
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file."),
    fingerprint: Optional[str] = typer.Option(None, "--fingerprint", help="Only this model fingerprint."),
) -> None:
    """List cached labels with their model fingerprint and prompt set. Example: openvocab labels list"""
    from openvocab.text.label_bank import LabelBank

    bank = LabelBank(label_bank or LabelBank.default_path())
    records = bank.list(fingerprint=fingerprint)
    for rec in records:
        print(f"{rec.fingerprint}\t{rec.prompt_key}\t{rec.dim}\t{rec.label}")
    _stderr(f"{len(records)} labels in {bank.path}")


@labels_app.command("export")
def labels_export(
    output: Path = typer.Argument(..., help="Output file: .npz (labels + embeddings), .json or .csv."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=_MODEL_HELP),
    prompts: str = typer.Option("ensemble", "--prompts", help=_PROMPTS_HELP),
    template: Optional[str] = typer.Option(None, "--template"),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file."),
) -> None:
    """Export the cached embeddings of one model and prompt set. Example: openvocab labels export k400.npz -m DIR"""
    _setup_logging(False)
    import openvocab

    clf = openvocab.load(model, label_bank=label_bank or True, prompts=prompts, template=template)
    n = clf.label_bank.export(output, fingerprint=clf.backbone.fingerprint, prompt_key=clf.prompts.key)
    print(f"exported {n} labels to {output}")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": False})
def train(
    recipe: Optional[Path] = typer.Argument(None, help="YAML recipe (configs/...); omit to use the defaults."),
    overrides: Optional[List[str]] = typer.Argument(None, help="section.key=value overrides, e.g. optim.lr=1e-4 data.batch_size=4"),
) -> None:
    """Train a video recogniser (Text4Vis: CLIP vision tower + temporal module + frozen text classifier).

    Example: openvocab train configs/text4vis/synth_tiny.yaml run.out=runs/synth optim.epochs=3

    Re-running the same command resumes from the run directory's latest checkpoint.
    """
    _setup_logging(False)
    logging.getLogger("openvocab").setLevel(logging.INFO)
    from openvocab.train.config import load_config
    from openvocab.train.trainer import train as run_training

    cfg = load_config(recipe, list(overrides or []))
    result = run_training(cfg)
    print(json.dumps(result, indent=2))


@app.command()
def evaluate(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Labelled videos: a manifest (CSV/JSONL), Kinetics CSV, ActivityNet JSON, or UCF101/HMDB51 split folder."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="YAML with an 'evaluate:' mapping of these options (e.g. configs/text4vis/table4_*.yaml); options given on the command line win."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A CLIP model (zero-shot) or a training run directory."),
    data_format: str = typer.Option("manifest", "--format", help="manifest, kinetics, ucf101, hmdb51 or activitynet."),
    root: Optional[Path] = typer.Option(None, "--root", help="Video folder (Kinetics/UCF101/HMDB51/ActivityNet, or relative manifest paths)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file."),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split number (the test list is used)."),
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
    """
    _setup_logging(False)
    opts = {"data": data, "model": model, "format": data_format, "root": root, "classes": classes, "split": split, "protocol": protocol,
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

    where = DataConfig(format=opts["format"], train=str(opts["data"]), val=str(opts["data"]), root=str(opts["root"]) if opts["root"] else None, classes=str(opts["classes"]) if opts["classes"] else None, split=int(opts["split"]))
    m = read_split(where, "val")  # UCF101/HMDB51: the split's test list; ActivityNet: validation
    for problem in m.problems[:20]:
        _stderr(f"warning: {problem}")
    m.require_nonempty()
    t, c = parse_views(opts["views"])
    spec = SamplerSpec(kind=opts["sampler"], frames=opts["frames"], stride=opts["stride"], temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
    result = run_evaluation(model_source=str(opts["model"]), manifest=m, protocol=opts["protocol"], sampler=spec, trials=opts["trials"], seed=opts["seed"], split_files=[str(p) for p in opts["split_files"]], batch_size=opts["batch_size"], workers=opts["workers"], device=opts["device"], plots=plots)
    _write_output(json.dumps(result, indent=2), output)


features_app = typer.Typer(no_args_is_help=True, help="Feature cache: extract frozen frame features once, train heads from them.")
app.add_typer(features_app, name="features")


@features_app.command("extract")
def features_extract(
    manifest: Path = typer.Argument(..., help="Manifest (CSV/JSONL with path,label) of the videos to cache."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache directory (re-running resumes an interrupted extraction)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=_MODEL_HELP),
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
    _setup_logging(False)
    from openvocab.data.manifests import read_manifest
    from openvocab.features.cache import extract_features
    from openvocab.io.sampling import SamplerSpec, parse_views
    from openvocab.models.backbone import ClipBackbone

    m = read_manifest(manifest, root=root, classes=classes)
    for problem in m.problems:
        _stderr(f"warning: {problem}")
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
        _stderr(f"error: {path}: could not be decoded (skipped)")
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
    prompts: str = typer.Option("single", "--prompts", help=_PROMPTS_HELP),
) -> None:
    """Train a temporal module + classifier head on cached features (no video decoding, no backbone). Example:

    openvocab features train-head cache/train --val cache/val --classifier lda --epochs 5
    """
    _setup_logging(False)
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


@model_app.command("create")
def model_create(
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
    arch: str = typer.Option("tiny", "--arch", help="tiny, vit-b-32, vit-b-16 or vit-l-14."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty directory."),
) -> None:
    """Write an architecture-exact CLIP with RANDOM weights and a real CLIP tokenizer (for offline tests and
    speed measurements; its scores are meaningless). Example: openvocab model create --arch vit-b-32 /tmp/vitb32
    """
    _setup_logging(False)
    from openvocab.models.create import create_model_dir

    path = create_model_dir(arch, directory, seed=seed, overwrite=overwrite)
    print(f"wrote a random-weight {arch} CLIP model to {path}")


@model_app.command("export")
def model_export(
    run: Path = typer.Argument(..., help="A training run directory (config.yaml + checkpoints)."),
    directory: Path = typer.Argument(..., help="Where to write the CLIP model directory."),
    overwrite: bool = typer.Option(False, "--overwrite"),
) -> None:
    """Write the fine-tuned CLIP of a training run as a model directory that `openvocab classify --model DIR`,
    `openvocab.load(DIR)` and transformers' CLIPModel.from_pretrained(DIR) load. Example:

    openvocab model export runs/k400_vitb16 ~/models/clip-b16-k400
    """
    _setup_logging(False)
    from openvocab.eval.run import load_run
    from openvocab.models.create import save_model_dir

    model, cfg, _ = load_run(run)
    if cfg.model.temporal != "tap" or cfg.model.token_t1d_blocks:
        _stderr("warning: the exported CLIP scores frames and averages them (TAP); the run's temporal module is not part of it")
    path = save_model_dir(model.backbone, directory, overwrite=overwrite, note=f"fine-tuned by openvocab train ({run})")
    print(f"wrote the fine-tuned CLIP of {run} to {path}")


@model_app.command("info")
def model_info(model: str = typer.Argument(..., help=_MODEL_HELP)) -> None:
    """Show a model's architecture, embedding size, logit scale and label-bank fingerprint.

    Example: openvocab model info /models/clip-vit-b-16
    """
    _setup_logging(False)
    from openvocab.models.backbone import ClipBackbone

    bb = ClipBackbone.from_pretrained(model)
    v = bb.clip.config.vision_config
    print(f"source: {bb.source}\nvision: {v.num_hidden_layers} layers, width {v.hidden_size}, patch {v.patch_size}, image {v.image_size}")
    print(f"embedding dim: {bb.embed_dim}\nlogit scale: {bb.logit_scale:.4f}\nfingerprint: {bb.fingerprint}\nrandom weights: {bb.random_weights}")


def main() -> None:
    """Entry point: run the app, turning any OpenVocabError into one line on stderr and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # click returns the exit code of typer.Exit here
        sys.exit(rc if isinstance(rc, int) else 0)
    except OpenVocabError as exc:
        _stderr(f"error: {exc}")
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        _stderr("interrupted")
        sys.exit(130)
    except Exception as exc:  # usage errors (typer vendors its own click in recent versions; accept both)
        for module in ("typer._click.exceptions", "click.exceptions"):
            try:
                exceptions = importlib.import_module(module)
            except ImportError:
                continue
            if isinstance(exc, exceptions.ClickException):
                exc.show()
                sys.exit(exc.exit_code)
            if isinstance(exc, exceptions.Abort):
                sys.exit(1)
        raise


if __name__ == "__main__":
    main()
