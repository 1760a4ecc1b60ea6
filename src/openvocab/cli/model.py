"""``openvocab model ...``: create, export, convert and inspect model directories."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import MODEL_HELP, OverwriteOption, print_error, setup_logging

model_app = typer.Typer(no_args_is_help=True, help="Create or inspect model directories.")


@model_app.command("create")
def model_create(
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
    arch: str = typer.Option(
        "tiny",
        "--arch",
        help="tiny, vit-b-32, vit-b-16, vit-l-14 (ViT) or tiny-rn, rn50, rn101, rn50x4 (CLIP-ResNet) CLIP; "
        "t5-tiny, t5-small, t5-base, flan-t5-small, flan-t5-base, flan-t5-large (a T5 LLM for --llm).",
    ),
    seed: int = typer.Option(0, "--seed"),
    overwrite: OverwriteOption = False,
) -> None:
    """Write an architecture-exact CLIP with RANDOM weights and a real CLIP tokenizer (for offline tests and
    speed measurements; its scores are meaningless), or a random-weight T5 with an offline-trained tokenizer for
    the LLM label encoders (--llm). Example: openvocab model create --arch vit-b-32 /tmp/vitb32
    """
    setup_logging(False)
    from openvocab.models.create import create_model_dir

    path = create_model_dir(arch, directory, seed=seed, overwrite=overwrite)
    print(f"wrote a random-weight {arch} {'T5' if 't5' in arch else 'CLIP'} model to {path}")


@model_app.command("export")
def model_export(
    run: Path = typer.Argument(..., help="A training run directory (config.yaml + checkpoints)."),
    directory: Path = typer.Argument(..., help="Where to write the CLIP model directory."),
    overwrite: OverwriteOption = False,
) -> None:
    """Write the fine-tuned CLIP of a training run as a model directory that `openvocab classify --model DIR`,
    `openvocab.load(DIR)` (and, for ViT towers, transformers' CLIPModel.from_pretrained(DIR)) load. Example:

    openvocab model export runs/k400_vitb16 ~/models/clip-b16-k400
    """
    setup_logging(False)
    from openvocab.eval.run import load_run
    from openvocab.models.create import save_model_dir

    model = load_run(run)
    if len(model.streams) > 1:
        print_error(f"warning: the run has {len(model.streams)} streams ({', '.join(model.streams)}); only the primary one's CLIP is exported")
    stream = model.spec.streams[model.spec.primary]
    if stream.temporal != "tap" or stream.token_t1d_blocks or stream.t1d_stages:
        print_error("warning: the exported CLIP scores frames and averages them (TAP); the run's temporal module is not part of it")
    path = save_model_dir(model.backbone, directory, overwrite=overwrite, note=f"fine-tuned by openvocab train ({run})")
    print(f"wrote the fine-tuned CLIP of {run} to {path}")


@model_app.command("convert")
def model_convert(
    source: Path = typer.Argument(
        ..., help="OpenAI CLIP archive (RN50.pt, ViT-B-16.pt), open_clip .safetensors/.bin (or a directory holding one), or a state dict."
    ),
    directory: Path = typer.Argument(..., help="Where to write the model directory."),
    overwrite: OverwriteOption = False,
    activation: str = typer.Option(
        "quick_gelu", "--activation", help="quick_gelu (OpenAI models, open_clip '-quickgelu' ones) or gelu (most other open_clip models)."
    ),
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
    )  # fmt: skip
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
