"""The ``openvocab`` command line: classify, labels, model.

Every user-caused failure prints one line (``error: <file>: <problem>``) and exits non-zero; batch commands carry on
past bad files, list them at the end and exit 1. Heavy imports happen inside commands so ``--help`` is instant.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import List, Optional

import typer

from openvocab.cli_utils import DEFAULT_MODEL, MODEL_HELP, PROMPTS_HELP, setup_logging, print_error, write_output
from openvocab.errors import InputError, OpenVocabError


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


def _label_bank_arg(label_bank: Optional[Path], no_label_bank: bool):
    if no_label_bank:
        return False
    return label_bank if label_bank is not None else True


@app.command()
def classify(
    paths: List[str] = typer.Argument(..., help="Video files, folders (searched recursively), frame folders or glob patterns."),
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated labels, e.g. 'playing guitar, yoga, dog barking'."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", "-L", help="Labels file: one per line (or .csv with a 'label' column, or a .json list)."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP + " Or a training run directory of `openvocab train` (config.yaml + checkpoints): its temporal modules and classifier are used."),
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
    prompts: Optional[str] = typer.Option(None, "--prompts", help=PROMPTS_HELP + " Default: 'ensemble'; for a training run, the run's own."),
    template: Optional[str] = typer.Option(None, "--template", help="The template of --prompts single, with one {} for the label."),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file (default: ~/.cache/openvocab/label_bank.sqlite)."),
    no_label_bank: bool = typer.Option(False, "--no-label-bank", help="Do not cache label embeddings."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no warnings."),
) -> None:
    """Rank LABELS for each video. Example:

    openvocab classify clips/ --labels 'playing guitar, yoga, dog barking' --model /models/clip-vit-b-32 --views 4x3 --format json

    openvocab classify clip.mp4 --labels 'red circle, blue square' --model runs/synth_tiny
    """
    setup_logging(quiet)
    if fmt not in {"table", "json", "csv"}:
        raise InputError(f"--format must be table, json or csv, got '{fmt}'")
    from openvocab.io.discover import expand_inputs

    videos, problems = expand_inputs(paths)
    label_list = _gather_labels(labels, labels_file)
    if not videos:
        for path, why in problems:
            print_error(f"error: {path}: {why}")
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
        write_output(to_json(results), output)
    elif fmt == "csv":
        write_output(to_csv(results), output)
    elif output is not None:
        write_output(to_json(results), output) if output.suffix == ".json" else write_output(to_csv(results), output)
    else:
        from rich.console import Console

        Console(soft_wrap=True).print(render_table(results, show_segments=timeline))

    failed = [(r.path, r.error) for r in results if not r.ok] + [(p, w) for p, w in problems]
    for _path, why in failed:
        print_error(f"error: {why}" if str(why).startswith(str(_path)) else f"error: {_path}: {why}")
    if failed:
        print_error(f"{len(failed)} of {len(results) + len(problems)} inputs failed; {sum(r.ok for r in results)} classified")
        raise typer.Exit(1)


@labels_app.command("add")
def labels_add(
    labels: Optional[str] = typer.Option(None, "--labels", "-l", help="Comma-separated labels."),
    labels_file: Optional[Path] = typer.Option(None, "--labels-file", "-L", help="Labels file, one per line."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    prompts: str = typer.Option("ensemble", "--prompts", help=PROMPTS_HELP),
    template: Optional[str] = typer.Option(None, "--template", help="Template for --prompts single."),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file."),
    device: str = typer.Option("cpu", "--device"),
) -> None:
    """Encode labels into the bank ahead of time (only labels not yet there are encoded). Example:

    openvocab labels add --labels-file kinetics400.txt --model /models/clip-vit-b-16
    """
    setup_logging(False)
    import openvocab
    from openvocab.text.prompts import clean_labels

    label_list, warnings = clean_labels(_gather_labels(labels, labels_file))
    for w in warnings:
        print_error(f"warning: {w}")
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
    print_error(f"{len(records)} labels in {bank.path}")


@labels_app.command("export")
def labels_export(
    output: Path = typer.Argument(..., help="Output file: .npz (labels + embeddings), .json or .csv."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    prompts: str = typer.Option("ensemble", "--prompts", help=PROMPTS_HELP),
    template: Optional[str] = typer.Option(None, "--template"),
    label_bank: Optional[Path] = typer.Option(None, "--label-bank", help="Label bank file."),
) -> None:
    """Export the cached embeddings of one model and prompt set. Example: openvocab labels export k400.npz -m DIR"""
    setup_logging(False)
    import openvocab

    clf = openvocab.load(model, label_bank=label_bank or True, prompts=prompts, template=template)
    n = clf.label_bank.export(output, fingerprint=clf.backbone.fingerprint, prompt_key=clf.prompts.key)
    print(f"exported {n} labels to {output}")


@model_app.command("create")
def model_create(
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
    arch: str = typer.Option("tiny", "--arch", help="tiny, vit-b-32, vit-b-16, vit-l-14 (ViT) or tiny-rn, rn50, rn101, rn50x4 (CLIP-ResNet)."),
    seed: int = typer.Option(0, "--seed"),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty directory."),
) -> None:
    """Write an architecture-exact CLIP with RANDOM weights and a real CLIP tokenizer (for offline tests and
    speed measurements; its scores are meaningless). Example: openvocab model create --arch vit-b-32 /tmp/vitb32
    """
    setup_logging(False)
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
    `openvocab.load(DIR)` (and, for ViT towers, transformers' CLIPModel.from_pretrained(DIR)) load. Example:

    openvocab model export runs/k400_vitb16 ~/models/clip-b16-k400
    """
    setup_logging(False)
    from openvocab.eval.run import load_run
    from openvocab.models.create import save_model_dir

    model, cfg, _ = load_run(run)
    if cfg.model.temporal != "tap" or cfg.model.token_t1d_blocks or cfg.model.t1d_stages:
        print_error("warning: the exported CLIP scores frames and averages them (TAP); the run's temporal module is not part of it")
    path = save_model_dir(model.backbone, directory, overwrite=overwrite, note=f"fine-tuned by openvocab train ({run})")
    print(f"wrote the fine-tuned CLIP of {run} to {path}")


@model_app.command("convert")
def model_convert(
    source: Path = typer.Argument(..., help="OpenAI CLIP archive (RN50.pt, ViT-B-16.pt), open_clip .safetensors/.bin (or a directory holding one), or a state dict."),
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing non-empty directory."),
    activation: str = typer.Option("quick_gelu", "--activation", help="quick_gelu (OpenAI models, open_clip '-quickgelu' ones) or gelu (most other open_clip models)."),
    vision_heads: Optional[int] = typer.Option(None, "--vision-heads", help="Vision attention heads (default: width // 64, as in every OpenAI model)."),
    text_heads: Optional[int] = typer.Option(None, "--text-heads", help="Text attention heads (default: width // 64)."),
) -> None:
    """Convert an OpenAI CLIP / open_clip checkpoint (OpenAI key layout) into a model directory that
    `openvocab classify --model DIR` loads. The architecture is read from the weights' shapes; pickles are never
    unpickled beyond tensors (torch.load weights_only=True). Example:

    openvocab model convert ~/Downloads/ViT-B-16.pt ~/models/clip-vit-b-16
    """
    setup_logging(False)
    from openvocab.models.convert import convert_checkpoint

    path = convert_checkpoint(
        source, directory, overwrite=overwrite, activation=activation, vision_heads=vision_heads, text_heads=text_heads,
        on_architecture=lambda arch: print(f"architecture: {arch.summary()}"),
    )
    print(f"wrote the converted CLIP model to {path}")


@model_app.command("info")
def model_info(model: str = typer.Argument(..., help=MODEL_HELP)) -> None:
    """Show a model's architecture, embedding size, logit scale and label-bank fingerprint.

    Example: openvocab model info /models/clip-vit-b-16
    """
    setup_logging(False)
    from openvocab.models.backbone import ClipBackbone

    bb = ClipBackbone.from_pretrained(model)
    print(f"source: {bb.source}\nvision: {bb.describe()}")
    print(f"embedding dim: {bb.embed_dim}\nlogit scale: {bb.logit_scale:.4f}\nfingerprint: {bb.fingerprint}\nrandom weights: {bb.random_weights}")


def _register_research_commands() -> None:
    from openvocab.train.cli import register

    register(app)


_register_subapps()
_register_research_commands()


def main() -> None:
    """Entry point: run the app, turning any OpenVocabError into one line on stderr and exit code 2."""
    try:
        rc = app(standalone_mode=False)  # click returns the exit code of typer.Exit here
        sys.exit(rc if isinstance(rc, int) else 0)
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        sys.exit(2)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print_error("interrupted")
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
