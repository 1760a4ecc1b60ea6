"""``openvocab classify``: the main job -- rank labels for each video, per clip and per segment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer

from openvocab.cli.common import (
    DEFAULT_MODEL,
    LLM_HELP,
    MODEL_HELP,
    PROMPTS_HELP,
    DeviceOption,
    FramesOption,
    LabelBankOption,
    LabelsFileOption,
    LabelsOption,
    SamplerOption,
    StrideOption,
    TemplateOption,
    gather_labels,
    label_bank_arg,
    note_model,
    print_error,
    progress_bars,
    setup_logging,
    write_output,
)
from openvocab.errors import InputError
from openvocab.results import TIMELINE_NOTE

if TYPE_CHECKING:  # pragma: no cover
    pass


def classify(
    paths: list[str] = typer.Argument(..., help="Video files, folders (searched recursively), frame folders or glob patterns."),
    labels: LabelsOption = None,
    labels_file: LabelsFileOption = None,
    model: str = typer.Option(
        DEFAULT_MODEL,
        "--model",
        "-m",
        help=MODEL_HELP + " Or a training run directory of `openvocab train` (config.yaml + checkpoints): its temporal modules and classifier are used.",
    ),
    frames: FramesOption = 8,
    sampler: SamplerOption = "uniform",
    stride: StrideOption = 4,
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops, e.g. 1x1 or 4x3 (scores averaged over views)."),
    top_k: int = typer.Option(5, "--top-k", "-k", help="How many ranked labels to report."),
    multi_label: bool = typer.Option(
        False, "--multi-label", help="Score each label independently, sigmoid(a*cos + b) with the model's calibration (see `openvocab calibrate`)."
    ),
    threshold: Optional[float] = typer.Option(None, "--threshold", help="Multi-label decision threshold on the score (default: the calibration's)."),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Multi-label: a calibration.json of `openvocab calibrate` (default: the run's / model directory's own, if any)."
    ),
    segments: Optional[int] = typer.Option(None, "--segments", help="Time windows in the per-segment timeline (default: --frames; 0 disables)."),
    timeline: bool = typer.Option(False, "--timeline", help="Show the per-segment timeline in the table output."),
    fmt: str = typer.Option("table", "--format", help="table, json, csv or jsonl (one line per video, written as each finishes)."),
    output: Optional[Path] = typer.Option(
        None, "--output", "-o", help="Write results to this file (atomically; '-' is stdout). A .jsonl file gets one line per finished video."
    ),
    resume: bool = typer.Option(False, "--resume", help="With -o FILE.jsonl: skip the videos FILE already holds and append the others."),
    device: DeviceOption = "cpu",
    prompts: Optional[str] = typer.Option(None, "--prompts", help=PROMPTS_HELP + " Default: 'ensemble'; for a training run, the run's own."),
    template: TemplateOption = None,
    llm: Optional[str] = typer.Option(None, "--llm", help=LLM_HELP),
    label_bank: LabelBankOption = None,
    no_label_bank: bool = typer.Option(False, "--no-label-bank", help="Do not cache label embeddings."),
    modalities: Optional[str] = typer.Option(
        None,
        "--modalities",
        help="Inputs to use, e.g. rgb,audio (default: every stream of the model). A MOV run computes flow and audio from the video file; without them it scores from the video alone.",
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no warnings."),
) -> None:
    """Rank LABELS for each video. Example:

    openvocab classify clips/ --labels 'playing guitar, yoga, dog barking' --model /models/clip-vit-b-32 --views 4x3 --format json

    openvocab classify clip.mp4 --labels 'red circle, blue square' --model runs/synth_tiny

    openvocab classify clip.mp4 --labels 'dog barking, playing drums' --model runs/mov_vggsound --modalities rgb,audio

    openvocab classify clips/ --labels-file tags.txt --model runs/multilabel --multi-label --format json
    """
    setup_logging(quiet)
    if fmt == "table" and output is not None and output.suffix.lower() == ".jsonl":
        fmt = "jsonl"
    if fmt not in {"table", "json", "csv", "jsonl"}:
        raise InputError(f"--format must be table, json, csv or jsonl, got '{fmt}'")
    stream = fmt == "jsonl" and output is not None and str(output) != "-"
    if resume and not stream:
        raise InputError("--resume continues a JSON-lines output: give -o FILE.jsonl (or --format jsonl -o FILE)")
    from openvocab.io.discover import expand_inputs

    videos, problems = expand_inputs(paths)
    label_list = gather_labels(labels, labels_file)
    done: set[str] = set()
    if stream:
        from openvocab.cli.jsonl_output import prepare_jsonl_output

        done = prepare_jsonl_output(output, resume=resume)
        skipped = [v for v in videos if str(v) in done]
        videos = [v for v in videos if str(v) not in done]
        if skipped and not quiet:
            print_error(f"resuming {output}: {len(skipped)} video(s) already there, {len(videos)} to do")
        if not videos and not problems:
            return
    if not videos:
        for path, why in problems:
            print_error(f"error: {path}: {why}")
        raise typer.Exit(1)

    import openvocab
    from openvocab.results import render_table, to_csv, to_json

    clf = openvocab.load(
        model,
        device=device,
        label_bank=label_bank_arg(label_bank, no_label_bank),
        prompts=prompts,
        template=template,
        modalities=modalities,
        llm=llm,
        calibration=calibration,
    )
    if not quiet and calibration is not None and not multi_label:
        print_error("warning: --calibration applies to --multi-label scores only")
    if not quiet and multi_label and not clf.recognizer.fused_outputs and not clf.calibration.fitted:
        print_error(f"warning: multi-label scores of {model} are not calibrated ({clf.calibration.source})")
    kwargs = dict(
        frames=frames,
        sampler=sampler,
        stride=stride,
        views=views,
        top_k=top_k,
        multi_label=multi_label,
        threshold=threshold,
        segments=segments,
        on_error="skip",
    )
    sink = None
    if fmt == "jsonl":
        from openvocab.cli.jsonl_output import JsonlSink

        sink = JsonlSink(output if stream else None)
    finished: list = []

    def on_result(result) -> None:
        finished.append(result)
        if sink is not None and result.ok:  # failed videos are reported, not written: a --resume retries them
            sink.write(result)

    try:
        with progress_bars(enabled=not quiet) as bars:  # label encoding (new labels only), then the videos
            label_update = bars.fraction("encoding labels")
            results = clf.classify(
                videos,
                label_list,
                progress=bars.counter("classifying", len(videos), show_item=True),
                label_progress=label_update,
                on_result=on_result,
                **kwargs,
            )
    except KeyboardInterrupt:
        where = f"; written to {output}, continue with --resume" if stream else ""
        print_error(f"interrupted: {sum(r.ok for r in finished)} of {len(videos)} video(s) classified{where}")
        raise typer.Exit(130) from None
    finally:
        if sink is not None:
            sink.close()
    if any(r.ok for r in results):
        note_model(clf, model)  # so that `labels list` can name the model

    shows_segments = fmt != "table" or output is not None or timeline
    if not quiet:  # each warning once (label warnings repeat in every result); timeline notes only with a timeline
        for w in dict.fromkeys(w for r in results for w in r.warnings):
            if shows_segments or TIMELINE_NOTE not in w:
                print_error(f"warning: {w}")

    if fmt == "jsonl":
        pass  # written as each video finished
    elif fmt == "json":
        write_output(to_json(results), output)
    elif fmt == "csv":
        write_output(to_csv(results), output)
    elif output is not None:
        write_output(to_json(results), output) if output.suffix == ".json" else write_output(to_csv(results), output)
    else:
        from rich.console import Console, Group

        Console(soft_wrap=True).print(Group(*render_table(results, show_segments=timeline)))

    failed = [(r.path, r.error) for r in results if not r.ok] + [(p, w) for p, w in problems]
    for _path, why in failed:
        print_error(f"error: {why}" if str(why).startswith(str(_path)) else f"error: {_path}: {why}")
    if failed:
        print_error(f"{len(failed)} of {len(results) + len(problems)} inputs failed; {sum(r.ok for r in results)} classified")
        raise typer.Exit(1)
