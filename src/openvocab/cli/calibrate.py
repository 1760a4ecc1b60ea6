"""``openvocab calibrate``: fit a model's multi-label scores ``σ(a·cos + b)`` and one threshold on labelled datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import (
    BatchSizeOption,
    DeviceOption,
    FramesOption,
    SamplerOption,
    StrideOption,
    WorkersOption,
    print_error,
    progress_bars,
    setup_logging,
    write_output,
)
from openvocab.errors import InputError


def calibrate(
    manifests: list[Path] = typer.Argument(..., help="Labelled multi-label datasets (each scored against its own classes), e.g. validation splits."),
    model: str = typer.Option(..., "--model", "-m", help="A training run directory, hub id or model directory."),
    data_format: str = typer.Option("manifest", "--format", help="Format of the datasets: manifest, kinetics, ucf101, hmdb51, activitynet or vggsound."),
    root: Optional[Path] = typer.Option(None, "--root", help="Video folder (official layouts, or relative manifest paths)."),
    val_mode: str = typer.Option("videos", "--val-mode", help="ActivityNet: videos (whole untrimmed videos with all their labels) or segments."),
    frames: FramesOption = 8,
    sampler: SamplerOption = "uniform",
    stride: StrideOption = 4,
    views: str = typer.Option("1x1", "--views", help="Temporal clips x spatial crops, as you will classify with (per-view scores averaged)."),
    batch_size: BatchSizeOption = 8,
    workers: WorkersOption = 2,
    device: DeviceOption = "cpu",
    save: Optional[Path] = typer.Option(
        None, "--save", help="Where to write calibration.json (a file or a folder). Default for a training run: RUN/calibration.json; required otherwise."
    ),
    plots: Optional[Path] = typer.Option(
        None, "--plots", help="Write f1_threshold.png (Fig. 6: F1 vs threshold, the chosen one marked) and precision_recall.png here."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print the calibration as JSON instead of the table."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar, no warnings."),
) -> None:
    """Calibrate multi-label scores: Platt scaling p = sigmoid(a*cos + b) over every video-label pair of the datasets,
    then the threshold that maximises the MINIMUM F1 across them (multi-label paper §4.6). Example:

    openvocab calibrate --model runs/multilabel data/anet_val.csv data/charades_val.csv

    openvocab calibrate --model /models/clip-vit-b-32 val.csv --save /models/clip-vit-b-32/calibration.json

    `openvocab classify --multi-label` and `openvocab evaluate` then use it (RUN/calibration.json, or --calibration).
    """
    setup_logging(quiet)
    from openvocab.calibration import CALIBRATION_FILE
    from openvocab.models.factory import is_run_dir

    if save is None:  # refuse before the (long) scoring
        if not is_run_dir(model):
            raise InputError(f"--save PATH is required: {model} is not a training run directory (a hub id or model directory is not written into)")
        target = Path(model).expanduser() / CALIBRATION_FILE
    else:
        target = save.expanduser() / CALIBRATION_FILE if save.expanduser().is_dir() else save.expanduser()
    if val_mode not in ("segments", "videos"):
        raise InputError(f"--val-mode must be segments or videos, got '{val_mode}'")

    from openvocab.eval.calibrate import calibrate as run_calibration
    from openvocab.eval.calibrate import f1_curves
    from openvocab.io.sampling import SamplerSpec, parse_views
    from openvocab.train.config import DataConfig
    from openvocab.train.data_setup import read_split

    read = []
    for path in manifests:
        where = DataConfig(format=data_format, train=str(path), val=str(path), val_mode=val_mode, root=str(root) if root else None, classes=None, split=1)
        m = read_split(where, "val")
        if not quiet:
            for problem in m.problems[:20]:
                print_error(f"warning: {problem}")
            if len(m.problems) > 20:
                print_error(f"warning: {m.source}: {len(m.problems) - 20} more rows skipped")
        read.append(m.require_nonempty())
    t, c = parse_views(views)
    spec = SamplerSpec(kind=sampler, frames=frames, stride=stride, temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
    with progress_bars(enabled=not quiet) as bars:
        report = run_calibration(model, read, sampler=spec, batch_size=batch_size, workers=workers, device=device, progress=bars.fraction("datasets"))
    if not quiet:
        for note in report.notes:
            print_error(f"warning: {note}")
    for d in report.datasets:
        if d.failed:
            shown = ", ".join(d.failed[:5]) + (f" and {len(d.failed) - 5} more" if len(d.failed) > 5 else "")
            print_error(f"warning: {d.name}: {len(d.failed)} of {len(d.failed) + d.targets.shape[0]} videos could not be decoded and were skipped: {shown}")
    cal = report.calibration
    written = cal.write(target)
    if plots is not None:
        from openvocab.eval.plots import plot_f1_thresholds, plot_precision_recall

        curves = f1_curves(report.datasets, cal)
        plot_f1_thresholds(curves, plots.expanduser() / "f1_threshold.png", threshold=cal.threshold, threshold_label="max-min F1")
        plot_precision_recall(curves, plots.expanduser() / "precision_recall.png")
    if as_json:
        write_output(json.dumps({**cal.to_dict(), "saved": str(written)}, indent=2), None)
    else:
        _print_table(cal)
    print_error(f"saved the calibration to {written}")


def _print_table(cal) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    from openvocab.results import terminal_text

    table = Table(title=f"multi-label calibration: p = sigmoid({cal.scale:.4g} * cos + {cal.bias:.4g}), threshold {cal.threshold:.4g}", title_justify="left")
    for name, justify in (
        ("dataset", "left"),
        ("videos", "right"),
        ("classes", "right"),
        ("AUPR", "right"),
        ("peak F1 @ oracle t", "right"),
        ("F1 @ t", "right"),
    ):
        table.add_column(name, justify=justify, overflow="fold")  # type: ignore[arg-type]
    names = [Path(d.name).name for d in cal.datasets]
    if len(set(names)) < len(names):  # same file names in different folders: the full paths
        names = [d.name for d in cal.datasets]
    for d, name in zip(cal.datasets, names):
        table.add_row(Text(terminal_text(name)), str(d.videos), str(d.classes), f"{d.aupr:.4f}", f"{d.peak_f1:.4f} @ {d.peak_threshold:.4g}", f"{d.f1:.4f}")
    Console(soft_wrap=True).print(table)
