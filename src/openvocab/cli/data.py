"""``openvocab data ...``: generate the synthetic benchmark, write base/novel splits and check dataset manifests.

Registered by :mod:`openvocab.cli` as ``app.add_typer(data_app, name="data")``. User-caused failures print one line
(``error: ...``) and exit 2 (also when ``data_app`` runs on its own); ``check`` exits 1 when rows were skipped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import print_error, progress_bar
from openvocab.errors import InputError, OpenVocabError

data_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Datasets: generate the synthetic shapes/colours/motions/tones benchmark, split classes into base/novel, check manifests.\n\n"
    "Example: openvocab data synth /tmp/synth --label-factors motion --clips-per-class 20",
)

_DEFAULT_SHAPES = "circle,square"
_DEFAULT_COLOURS = "red,blue"
_DEFAULT_MOTIONS = "left,right"
_DEFAULT_TONES = "low,high"
_DEFAULT_WORKERS = min(4, os.cpu_count() or 1)


def _items(text: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in text.split(",") if part.strip())


@data_app.command("synth")
def synth(
    out: Path = typer.Argument(..., help="Output folder (created): videos/, classes.txt, train/val/test/novel_test.csv, splits.json."),
    shapes: str = typer.Option(_DEFAULT_SHAPES, "--shapes", help="Comma-separated shapes: circle, square, triangle, cross, star, ring."),
    colours: str = typer.Option(
        _DEFAULT_COLOURS, "--colours", "--colors", help="Comma-separated colours: red, green, blue, yellow, purple, orange, cyan, white."
    ),
    motions: str = typer.Option(_DEFAULT_MOTIONS, "--motions", help="Comma-separated motions: left, right, up, down, rotate, grow, shrink, still."),
    tones: str = typer.Option(_DEFAULT_TONES, "--tones", help="Comma-separated audio tones: low, middle, high, very high (used by --tone-by tone)."),
    label_factors: str = typer.Option(
        "colour,shape,motion",
        "--label-factors",
        help="Factors that define the classes (the others are random nuisances), e.g. 'motion' or 'colour,shape'; 'tone' puts the label in the audio only.",
    ),
    clips_per_class: int = typer.Option(10, "--clips-per-class", "-n", help="Clips per class."),
    frames: int = typer.Option(16, "--frames", help="Frames per clip."),
    size: int = typer.Option(64, "--size", help="Frame width and height in pixels (even)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second."),
    noise: float = typer.Option(0.0, "--noise", help="Gaussian pixel noise, std as a fraction of 255 (e.g. 0.05)."),
    clutter: int = typer.Option(0, "--clutter", help="Static distractor blobs per clip."),
    audio: bool = typer.Option(False, "--audio/--no-audio", help="Write a sine-tone audio track (mono 16 kHz)."),
    tone_by: str = typer.Option("class", "--tone-by", help="What the tone encodes with --audio: class, colour, shape, motion or tone."),
    novel_fraction: float = typer.Option(0.25, "--novel-fraction", help="Fraction of classes held out as novel (novel_test.csv only)."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same data."),
    workers: int = typer.Option(_DEFAULT_WORKERS, "--workers", "-j", help="Clips drawn and encoded in parallel (threads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a synthetic video benchmark with known answers. Example:

    openvocab data synth /tmp/synth --label-factors motion --motions left,right,up,down,rotate,grow --clips-per-class 20
    """
    try:
        from openvocab.data.synth import SynthSpec, generate

        factors = _items(label_factors)
        tone_mode = tone_by.strip().lower() if audio else None
        if "tone" in factors and tone_mode in (None, "class"):
            tone_mode = "tone"  # the label lives in the tone: the audio must carry it
        spec = SynthSpec(
            shapes=_items(shapes), colours=_items(colours), motions=_items(motions), tones=_items(tones),
            label_factors=factors, clips_per_class=clips_per_class, frames=frames, fps=fps, size=size, noise=noise,
            clutter=clutter, audio=tone_mode, novel_fraction=novel_fraction,
        )  # fmt: skip
        started = time.perf_counter()
        if quiet:
            generate(spec, out, seed=seed, workers=workers)
        else:
            with progress_bar("generating", spec.num_classes * spec.clips_per_class) as update:
                generate(spec, out, seed=seed, workers=workers, progress=lambda done, _total: update(done))
        elapsed = time.perf_counter() - started
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        print_error(f"error: {out}: cannot write ({exc.strerror or exc})")
        raise typer.Exit(2) from None
    import json

    meta = json.loads((out / "splits.json").read_text(encoding="utf-8"))
    counts = meta["counts"]
    print(
        f"wrote {sum(counts.values())} clips of {len(meta['classes'])} classes ({len(meta['base'])} base, "
        f"{len(meta['novel'])} novel) to {out} in {elapsed:.1f} s: train {counts['train']}, val {counts['val']}, "
        f"test {counts['test']}, novel_test {counts['novel_test']}" + (", with audio" if spec.audio else "")
    )


@data_app.command("split")
def split_command(
    train: Path = typer.Argument(..., help="Training data: a manifest, Kinetics CSV, VGGSound CSV, UCF101/HMDB51 split folder or ActivityNet JSON."),
    test: Path = typer.Argument(..., help="Test (or validation) data in the same format (VGGSound: the same CSV; its test rows are used)."),
    out: Path = typer.Argument(..., help="Output folder: classes.txt, base_classes.txt, novel_classes.txt, train.csv, test.csv, novel_test.csv, splits.json."),
    novel: Optional[int] = typer.Option(None, "--novel", help="Number of novel classes (MOV §4.1: 300 of Kinetics-700, 155 of VGGSound)."),
    novel_fraction: Optional[float] = typer.Option(None, "--novel-fraction", help="Fraction of novel classes instead of --novel, e.g. 0.5."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed gives the same split."),
    data_format: str = typer.Option("manifest", "--format", help="manifest, kinetics, vggsound, ucf101, hmdb51 or activitynet."),
    root: Optional[Path] = typer.Option(None, "--root", "--video-root", help="Video folder (needed by every format but manifest)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file (manifest, kinetics, vggsound, activitynet)."),
    split: int = typer.Option(1, "--split", help="UCF101/HMDB51 split number."),
    show: int = typer.Option(20, "--show", help="How many skipped rows to list."),
) -> None:
    """Split a dataset's classes into base and novel (MOV §4.1) and write the benchmark as manifests. Example:

    openvocab data split vggsound.csv vggsound.csv splits/vggsound --format vggsound --root vggsound/video --novel 155

    train.csv holds the train rows of base classes, test.csv / novel_test.csv the test rows of base / novel classes
    (the same layout as 'openvocab data synth'); read them with 'openvocab evaluate OUT/novel_test.csv --classes
    OUT/novel_classes.txt' or a recipe's data.train / data.val.
    """
    try:
        from openvocab.data.splits import write_base_novel_split
        from openvocab.train.config import DataConfig, _choices
        from openvocab.train.data_setup import read_split

        formats = _choices()[("data", "format")]
        if data_format not in formats:
            raise InputError(f"--format must be one of {', '.join(formats)}, got '{data_format}'")
        where = DataConfig(
            format=data_format, train=str(train), val=str(test), root=str(root) if root else None,
            classes=str(classes) if classes else None, split=split,
        )  # fmt: skip
        manifests = {which: read_split(where, which) for which in ("train", "val")}
        for manifest in manifests.values():
            for problem in manifest.problems[: max(show, 0)]:
                print_error(f"skipped: {problem}")
            if len(manifest.problems) > show > 0:
                print_error(f"... and {len(manifest.problems) - show} more in {manifest.source}")
            manifest.require_nonempty()
        meta = write_base_novel_split(
            manifests["train"], manifests["val"], out, novel=novel, novel_fraction=novel_fraction, seed=seed,
            sources={"format": data_format, "train_path": train.absolute(), "test_path": test.absolute(), "root": root.absolute() if root else None},
        )  # fmt: skip
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from None
    counts, sizes = meta["counts"], meta["num_classes"]
    skipped = sum(meta["skipped_rows"].values())
    print(
        f"wrote a base/novel split of {sizes['all']} classes ({sizes['base']} base, {sizes['novel']} novel, seed {seed}) to {out}: "
        f"train {counts['train']}, test {counts['test']}, novel_test {counts['novel_test']}"
        + (f"; {skipped} row{'s' if skipped != 1 else ''} skipped" if skipped else "")
    )


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="Manifest (.csv/.jsonl), Kinetics or VGGSound CSV, or UCF101/HMDB51 split folder."),
    kind: str = typer.Option("manifest", "--kind", help="manifest, kinetics, vggsound, ucf101, hmdb51 or activitynet."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", "--root", help="Folder the video paths are relative to (manifest default: its folder)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file (manifest, kinetics, vggsound): other labels are problems."),
    split: Optional[str] = typer.Option(None, "--split", help="Kinetics: split column value; VGGSound: train or test; UCF101/HMDB51: 1, 2 or 3."),
    subset: str = typer.Option("train", "--subset", help="UCF101/HMDB51: train or test."),
    no_check_files: bool = typer.Option(False, "--no-check-files", help="Do not look for the video files."),
    show: int = typer.Option(20, "--show", help="How many skipped rows to list."),
) -> None:
    """Read a dataset list, print its summary and the rows it skips (exit 1 when any). Example:

    openvocab data check ucfTrainTestlist --kind ucf101 --video-root UCF-101 --split 1 --subset test
    """
    from openvocab.data import read_activitynet, read_hmdb51, read_kinetics_csv, read_manifest, read_ucf101, read_vggsound_csv

    check_files = not no_check_files
    try:
        if kind == "manifest":
            manifest = read_manifest(path, root=video_root, classes=classes, check_files=check_files)
        elif kind in ("kinetics", "vggsound", "ucf101", "hmdb51", "activitynet") and video_root is None:
            raise InputError(f"--kind {kind} needs --video-root")
        elif kind == "kinetics":
            manifest = read_kinetics_csv(path, video_root=video_root, split=split, classes=classes, check_files=check_files)
        elif kind == "vggsound":
            manifest = read_vggsound_csv(path, root=video_root, split=split, classes=classes, check_files=check_files)
        elif kind in ("ucf101", "hmdb51"):
            if split is not None and not split.isdigit():
                raise InputError(f"--split for {kind} must be 1, 2 or 3, got '{split}'")
            reader = read_ucf101 if kind == "ucf101" else read_hmdb51
            manifest = reader(path, video_root=video_root, split=int(split or 1), subset=subset, check_files=check_files)  # type: ignore[arg-type]
        elif kind == "activitynet":
            anet_subset = {"train": "training", "test": "validation", "val": "validation"}.get(subset, subset)
            manifest = read_activitynet(path, video_root=video_root, subset=anet_subset, classes=classes, check_files=check_files)  # type: ignore[arg-type]
        else:
            raise InputError(f"--kind must be manifest, kinetics, vggsound, ucf101, hmdb51 or activitynet, got '{kind}'")
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from None
    for problem in manifest.problems[: max(show, 0)]:
        print_error(f"skipped: {problem}")
    if len(manifest.problems) > show > 0:
        print_error(f"... and {len(manifest.problems) - show} more")
    print(manifest.summary())
    if manifest.problems:
        raise typer.Exit(1)
