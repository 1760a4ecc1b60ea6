"""``openvocab evaluate``: zero-shot CLIP or a trained run on a labelled dataset, with the papers' protocols."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import (
    DEFAULT_MODEL,
    LLM_HELP,
    PROMPTS_HELP,
    TEMPLATE_HELP,
    BatchSizeOption,
    DeviceOption,
    FramesOption,
    SamplerOption,
    StrideOption,
    WorkersOption,
    print_error,
    setup_logging,
    write_output,
)
from openvocab.errors import InputError


def evaluate(
    ctx: typer.Context,
    data: Optional[Path] = typer.Argument(None, help="Labelled videos: a manifest (CSV/JSONL), Kinetics CSV, ActivityNet JSON, or UCF101/HMDB51 split folder."),
    recipe: Optional[Path] = typer.Option(
        None, "--recipe", help="YAML with an 'evaluate:' mapping of these options (e.g. configs/text4vis/table4_*.yaml); options given on the command line win."
    ),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help="A CLIP model (zero-shot) or a training run directory."),
    data_format: str = typer.Option("manifest", "--format", help="manifest, kinetics, ucf101, hmdb51, activitynet or vggsound (its CSV's test rows)."),
    root: Optional[Path] = typer.Option(None, "--root", help="Video folder (Kinetics/UCF101/HMDB51/ActivityNet, or relative manifest paths)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file."),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split number (the test list is used)."),
    val_mode: str = typer.Option(
        "segments",
        "--val-mode",
        help="ActivityNet validation: segments (the trimmed annotation windows) or videos (whole untrimmed videos with all their labels, scored multi-label; Text4Vis Table 2).",
    ),
    protocol: str = typer.Option(
        "full", "--protocol", help="full, half (half the classes x --trials, Text4Vis UCF*/HMDB*), k600, or base-novel (MOV Tables 1-3, with --novel-data)."
    ),
    novel_data: Optional[Path] = typer.Option(
        None,
        "--novel-data",
        help="base-novel: the novel-class test videos (same --format/--root); DATA holds the base-class ones. Reports base, novel and harmonic mean.",
    ),
    flow_cache: Optional[Path] = typer.Option(
        None, "--flow-cache", help="MOV runs: the `openvocab flow extract` folder (flow is computed where it has no entry)."
    ),
    mov_beta: Optional[float] = typer.Option(None, "--mov-beta", help="MOV runs: beta of Eq. 12 (default 0.25)."),
    mov_tau_video: Optional[float] = typer.Option(None, "--mov-tau-video", help="MOV runs: tau_v of Eq. 11 (default 0.003; Table 7 ablates it)."),
    trials: int = typer.Option(10, "--trials"),
    seed: int = typer.Option(0, "--seed"),
    split_files: Optional[list[Path]] = typer.Option(None, "--split-files", help="k600: the three files of 160 class names."),
    frames: FramesOption = 8,
    sampler: SamplerOption = "uniform",
    stride: StrideOption = 4,
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops, e.g. 4x3 (per-view probabilities averaged, as in classify)."),
    batch_size: BatchSizeOption = 8,
    workers: WorkersOption = 2,
    device: DeviceOption = "cpu",
    plots: Optional[Path] = typer.Option(
        None,
        "--plots",
        help="Write confusion_matrix.png and class_correlation.png here; multi-label: f1_threshold.png (F1 vs threshold, the calibrated one marked) and precision_recall.png.",
    ),
    multi_label: bool = typer.Option(
        False, "--multi-label", help="Score multi-label (automatic when some video has several labels): AUPR, mAP, peak F1, F1 at the calibrated threshold."
    ),
    calibration: Optional[Path] = typer.Option(
        None, "--calibration", help="Multi-label: the calibration.json to evaluate (default: the run's / model directory's own, else the uncalibrated default)."
    ),
    prompts: Optional[str] = typer.Option(None, "--prompts", help=PROMPTS_HELP + " Default: ensemble for a CLIP model, the run's own for a run."),
    template: Optional[str] = typer.Option(None, "--template", help=TEMPLATE_HELP),
    llm: Optional[str] = typer.Option(None, "--llm", help=LLM_HELP),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the JSON result here (atomically)."),
    predictions: Optional[Path] = typer.Option(
        None, "--predictions", help="Also write one CSV row per scored video: path, true labels, predicted label, score."
    ),
    baseline: Optional[Path] = typer.Option(
        None,
        "--baseline",
        help="A baseline's predictions CSV (from --predictions) on the same videos: add per-class accuracy gains (MOV Fig. 3) to the result.",
    ),
    gain_plot: Optional[Path] = typer.Option(None, "--gain-plot", help="With --baseline: draw the classes with the largest gains and losses to this PNG."),
) -> None:
    """Evaluate zero-shot CLIP or a trained run on a labelled dataset. Example (Text4Vis Table 4, UCF*):

    openvocab evaluate ucfTrainTestlist --format ucf101 --root UCF-101 --model runs/k400 --protocol half

    or, one command per Table 4 row: openvocab evaluate --recipe configs/text4vis/table4_ucf101_half.yaml

    MOV base / novel / harmonic mean (Tables 1-3): openvocab evaluate splits/k700/test.csv --classes
    splits/k700/base_classes.txt --novel-data splits/k700/novel_test.csv --protocol base-novel --model runs/mov_k700

    The full protocol reports top-1, top-5, mean-class accuracy and mAP (ActivityNet's metric). Untrimmed
    ActivityNet validation videos (Table 2): openvocab evaluate activity_net.v1-3.min.json --format activitynet
    --root videos --val-mode videos --frames 16 --model runs/text4vis/table2_anet_vitl14_f16

    Per-class gains over a baseline (MOV Fig. 3): evaluate the baseline with --predictions clip.csv, then
    openvocab evaluate split/novel_test.csv --classes split/novel_classes.txt --model runs/mov --baseline clip.csv
    --gain-plot gains.png

    Multi-label datasets (several labels per video) also get the multi-label paper's metrics on the calibrated
    scores (see `openvocab calibrate`): openvocab evaluate anet_val.csv --model runs/multilabel --plots plots/
    """
    setup_logging(False)
    opts = {
        "data": data,
        "model": model,
        "format": data_format,
        "root": root,
        "classes": classes,
        "split": split,
        "val_mode": val_mode,
        "protocol": protocol,
        "novel_data": novel_data,
        "flow_cache": flow_cache,
        "mov_beta": mov_beta,
        "mov_tau_video": mov_tau_video,
        "trials": trials,
        "seed": seed,
        "split_files": split_files or [],
        "frames": frames,
        "sampler": sampler,
        "stride": stride,
        "views": views,
        "batch_size": batch_size,
        "workers": workers,
        "device": device,
        "calibration": calibration,
        "prompts": prompts,
        "template": template,
        "llm": llm,
    }
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
    where = DataConfig(
        format=opts["format"],
        train=str(opts["data"]),
        val=str(opts["data"]),
        val_mode=opts["val_mode"],
        root=str(opts["root"]) if opts["root"] else None,
        classes=str(opts["classes"]) if opts["classes"] else None,
        split=int(opts["split"]),
    )
    if gain_plot is not None and baseline is None:
        raise InputError("--gain-plot needs --baseline (the predictions CSV to compare against)")
    if baseline is not None:  # refuse a bad baseline before the (long) evaluation
        from openvocab.eval.compare import read_predictions

        read_predictions(baseline)
    m = read_split(where, "val")  # UCF101/HMDB51: the split's test list; ActivityNet: validation (segments or videos)
    for problem in m.problems[:20]:
        print_error(f"warning: {problem}")
    m.require_nonempty()
    novel = None
    if opts["novel_data"] is not None:
        from dataclasses import replace

        novel = read_split(replace(where, train=str(opts["novel_data"]), val=str(opts["novel_data"]), classes=None), "val")
        for problem in novel.problems[:20]:
            print_error(f"warning: {problem}")
        novel.require_nonempty()
    t, c = parse_views(opts["views"])
    spec = SamplerSpec(kind=opts["sampler"], frames=opts["frames"], stride=opts["stride"], temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
    scored = predictions if predictions is not None or baseline is None else _scratch_predictions()  # --baseline compares these
    result = run_evaluation(
        model_source=str(opts["model"]),
        manifest=m,
        protocol=opts["protocol"],
        sampler=spec,
        trials=opts["trials"],
        seed=opts["seed"],
        split_files=[str(p) for p in opts["split_files"]],
        batch_size=opts["batch_size"],
        workers=opts["workers"],
        device=opts["device"],
        plots=plots,
        predictions=scored,
        novel_manifest=novel,
        flow_cache=str(opts["flow_cache"]) if opts["flow_cache"] else None,
        mov_beta=opts["mov_beta"],
        mov_tau_video=opts["mov_tau_video"],
        multi_label=multi_label or None,
        calibration=str(opts["calibration"]) if opts["calibration"] else None,
        prompts=opts["prompts"],
        template=opts["template"],
        llm=opts["llm"],
    )
    if baseline is not None:
        from openvocab.eval.compare import gain_report

        result["class_gains"] = gain_report(scored, baseline, plot=gain_plot)  # improved, worse, mean_gain, plot, ...
    write_output(json.dumps(result, indent=2), output)


def _scratch_predictions() -> Path:
    """A temporary predictions CSV for --baseline without --predictions (removed when the process exits)."""
    import atexit
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="openvocab-predictions-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return Path(folder) / "predictions.csv"
