"""``openvocab data ...``: generate the synthetic benchmark (single- or multi-label), write base/novel splits, filter
a training vocabulary and check dataset manifests.

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
    help="Datasets: generate the synthetic shapes/colours/motions/tones benchmark, split classes into base/novel, filter a training vocabulary, "
    "check manifests.\n\n"
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
    out: Path = typer.Argument(..., help="Output folder (created): videos/, classes.txt, train/val/test/novel_test.csv (--multi-label: .jsonl), splits.json."),
    shapes: Optional[str] = typer.Option(
        None, "--shapes", help="Comma-separated shapes: circle, square, triangle, cross, star, ring [default: circle,square; --multi-label: all six]."
    ),
    colours: Optional[str] = typer.Option(
        None,
        "--colours",
        "--colors",
        help="Comma-separated colours: red, green, blue, yellow, purple, orange, cyan, white [default: red,blue; --multi-label: the first six].",
    ),
    motions: Optional[str] = typer.Option(
        None,
        "--motions",
        help="Comma-separated motions: left, right, up, down, rotate, grow, shrink, still [default: left,right; --multi-label: left,right,up,down].",
    ),
    tones: Optional[str] = typer.Option(
        None, "--tones", help="Comma-separated audio tones: low, middle, high, very high (used by --tone-by tone) [default: low,high]."
    ),
    label_factors: Optional[str] = typer.Option(
        None,
        "--label-factors",
        help="Factors that define the classes (the others are random nuisances), e.g. 'motion' or 'colour,shape'; 'tone' puts the label in the audio only "
        "[default: colour,shape,motion].",
    ),
    clips_per_class: Optional[int] = typer.Option(None, "--clips-per-class", "-n", help="Clips per class [default: 10]."),
    frames: int = typer.Option(16, "--frames", help="Frames per clip."),
    size: int = typer.Option(64, "--size", help="Frame width and height in pixels (even)."),
    fps: float = typer.Option(8.0, "--fps", help="Frames per second."),
    noise: float = typer.Option(0.0, "--noise", help="Gaussian pixel noise, std as a fraction of 255 (e.g. 0.05)."),
    clutter: int = typer.Option(0, "--clutter", help="Static distractor blobs per clip."),
    audio: bool = typer.Option(False, "--audio/--no-audio", help="Write a sine-tone audio track (mono 16 kHz)."),
    tone_by: str = typer.Option("class", "--tone-by", help="What the tone encodes with --audio: class, colour, shape, motion or tone."),
    novel_fraction: Optional[float] = typer.Option(
        None, "--novel-fraction", help="Fraction of classes held out as novel (novel_test.csv only) [default: 0.25]."
    ),
    multi_label: bool = typer.Option(
        False,
        "--multi-label",
        help="Multi-label clips: 1-3 objects each, labelled with every concept present ('circle', 'red object', 'moving left'); "
        "held-out concepts only in novel_test.jsonl.",
    ),
    objects: Optional[str] = typer.Option(None, "--objects", help="--multi-label: objects per clip, N or MIN-MAX [default: 1-3]."),
    held_out_shapes: Optional[int] = typer.Option(None, "--held-out-shapes", help="--multi-label: shapes held out (seeded choice) [default: 1]."),
    held_out_colours: Optional[int] = typer.Option(None, "--held-out-colours", "--held-out-colors", help="--multi-label: colours held out [default: 1]."),
    held_out_motions: Optional[int] = typer.Option(None, "--held-out-motions", help="--multi-label: motions held out [default: 0]."),
    train_clips: Optional[int] = typer.Option(None, "--train-clips", help="--multi-label: training clips [default: 160]."),
    val_clips: Optional[int] = typer.Option(None, "--val-clips", help="--multi-label: validation clips [default: 40]."),
    test_clips: Optional[int] = typer.Option(None, "--test-clips", help="--multi-label: test clips (seen concepts) [default: 40]."),
    novel_clips: Optional[int] = typer.Option(None, "--novel-clips", help="--multi-label: novel_test clips (each shows a held-out concept) [default: 60]."),
    seed: int = typer.Option(0, "--seed", help="Random seed: the same seed writes the same data."),
    workers: int = typer.Option(_DEFAULT_WORKERS, "--workers", "-j", help="Clips drawn and encoded in parallel (threads)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Generate a synthetic video benchmark with known answers. Examples:

    openvocab data synth /tmp/synth --label-factors motion --motions left,right,up,down,rotate,grow --clips-per-class 20

    openvocab data synth /tmp/synth_ml --multi-label --objects 1-3 --held-out-shapes 1 --held-out-colours 1
    """
    multi_only = {
        "--objects": objects, "--held-out-shapes": held_out_shapes, "--held-out-colours": held_out_colours,
        "--held-out-motions": held_out_motions, "--train-clips": train_clips, "--val-clips": val_clips,
        "--test-clips": test_clips, "--novel-clips": novel_clips,
    }  # fmt: skip
    single_only = {
        "--label-factors": label_factors, "--clips-per-class": clips_per_class, "--novel-fraction": novel_fraction,
        "--tones": tones, "--audio": audio or None,
    }  # fmt: skip
    try:
        if multi_label:
            given = [name for name, value in single_only.items() if value is not None]
            if given:
                raise InputError(f"{given[0]} does not apply with --multi-label (see --objects, --held-out-*, --*-clips)")
            _synth_multilabel(out, shapes, colours, motions, objects, held_out_shapes, held_out_colours, held_out_motions, train_clips,
                              val_clips, test_clips, novel_clips, frames, size, fps, noise, clutter, seed, workers, quiet)  # fmt: skip
            return
        given = [name for name, value in multi_only.items() if value is not None]
        if given:
            raise InputError(f"{given[0]} needs --multi-label")
        from openvocab.data.synth import SynthSpec, generate

        factors = _items(label_factors or "colour,shape,motion")
        tone_mode = tone_by.strip().lower() if audio else None
        if "tone" in factors and tone_mode in (None, "class"):
            tone_mode = "tone"  # the label lives in the tone: the audio must carry it
        spec = SynthSpec(
            shapes=_items(shapes or _DEFAULT_SHAPES), colours=_items(colours or _DEFAULT_COLOURS), motions=_items(motions or _DEFAULT_MOTIONS),
            tones=_items(tones or _DEFAULT_TONES), label_factors=factors, clips_per_class=10 if clips_per_class is None else clips_per_class,
            frames=frames, fps=fps, size=size, noise=noise, clutter=clutter, audio=tone_mode,
            novel_fraction=0.25 if novel_fraction is None else novel_fraction,
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


def _object_range(text: str | None) -> tuple[int, int]:
    if text is None:
        return 1, 3
    parts = [p.strip() for p in text.split("-")]
    if len(parts) in (1, 2) and all(p.isdigit() for p in parts):
        return int(parts[0]), int(parts[-1])
    raise InputError(f"--objects must be N or MIN-MAX (e.g. 1-3), got '{text}'")


def _synth_multilabel(out, shapes, colours, motions, objects, held_shapes, held_colours, held_motions, train_clips, val_clips, test_clips, novel_clips,
                      frames, size, fps, noise, clutter, seed, workers, quiet) -> None:  # fmt: skip
    """``data synth --multi-label``: build the spec from the options given (the others keep MultiLabelSpec's defaults)."""
    import json

    from openvocab.data.synth_multilabel import MultiLabelSpec, generate_multilabel

    lo, hi = _object_range(objects)
    given = {
        "shapes": _items(shapes) if shapes is not None else None, "colours": _items(colours) if colours is not None else None,
        "motions": _items(motions) if motions is not None else None, "held_out_shapes": held_shapes, "held_out_colours": held_colours,
        "held_out_motions": held_motions, "train_clips": train_clips, "val_clips": val_clips, "test_clips": test_clips, "novel_clips": novel_clips,
    }  # fmt: skip
    spec = MultiLabelSpec(
        min_objects=lo, max_objects=hi, frames=frames, size=size, fps=fps, noise=noise, clutter=clutter,
        **{k: v for k, v in given.items() if v is not None},
    )  # fmt: skip
    total = sum(spec.split_counts().values())
    started = time.perf_counter()
    if quiet:
        generate_multilabel(spec, out, seed=seed, workers=workers)
    else:
        with progress_bar("generating", total) as update:
            generate_multilabel(spec, out, seed=seed, workers=workers, progress=lambda done, _total: update(done))
    elapsed = time.perf_counter() - started
    meta = json.loads((out / "splits.json").read_text(encoding="utf-8"))
    counts, per_clip = meta["counts"], meta["labels_per_clip"]
    held = ", ".join(meta["novel"]) or "none"
    print(
        f"wrote {total} multi-label clips of {len(meta['classes'])} concepts ({len(meta['base'])} seen, {len(meta['novel'])} held out: {held}) "
        f"to {out} in {elapsed:.1f} s: train {counts['train']}, val {counts['val']}, test {counts['test']}, novel_test {counts['novel_test']}; "
        f"{per_clip['train']:.1f} labels per training clip"
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


@data_app.command("filter")
def filter_command(
    manifest: Path = typer.Argument(..., help="Training data: a manifest (.csv/.jsonl), or another dataset's annotations with --format."),
    out: Path = typer.Argument(..., help="Output JSONL manifest (written atomically; paths below its folder are written relative to it)."),
    min_count: int = typer.Option(0, "--min-count", help="Drop classes carried by fewer than N videos (0: off)."),
    block_list: Optional[Path] = typer.Option(
        None, "--block-list", help="File of class names to drop, one a line ('#' comment lines; case and spacing do not matter)."
    ),
    data_format: str = typer.Option("manifest", "--format", help="manifest, kinetics, vggsound, ucf101, hmdb51, activitynet or rareact."),
    root: Optional[Path] = typer.Option(None, "--root", "--video-root", help="Video folder (manifest default: its folder; needed by the other formats)."),
    classes: Optional[Path] = typer.Option(None, "--classes", help="Fixed vocabulary file to read the data with (other labels are skipped rows)."),
    classes_out: Optional[Path] = typer.Option(None, "--classes-out", help="Also write the kept classes here, one a line, in index order."),
    no_check_files: bool = typer.Option(False, "--no-check-files", help="Do not look for the video files (manifest format)."),
    show: int = typer.Option(20, "--show", help="How many skipped rows to list."),
) -> None:
    """Filter a training vocabulary (multi-label §4.1): drop block-listed classes (e.g. video-game titles) and classes
    with fewer than --min-count videos; videos left without labels are dropped. Writes a JSONL manifest. Example:

    openvocab data filter yt8m_train.jsonl yt8m_train_filtered.jsonl --min-count 10 --block-list video_games.txt
    """
    from openvocab.data.manifests import read_manifest, write_manifest_jsonl
    from openvocab.data.vocabulary import filter_vocabulary, read_block_list

    try:
        if min_count < 0:
            raise InputError(f"--min-count must be >= 0, got {min_count}")
        blocked = read_block_list(block_list) if block_list is not None else []
        if data_format == "manifest":
            data = read_manifest(manifest, root=root, classes=classes, check_files=not no_check_files)
        else:
            from openvocab.train.config import DataConfig, _choices
            from openvocab.train.data_setup import read_split

            formats = _choices()[("data", "format")]
            if data_format not in formats:
                raise InputError(f"--format must be one of {', '.join(formats)}, got '{data_format}'")
            if no_check_files:
                raise InputError("--no-check-files works with --format manifest only")
            where = DataConfig(format=data_format, train=str(manifest), root=str(root) if root else None, classes=str(classes) if classes else None)
            data = read_split(where, "train")
        for problem in data.problems[: max(show, 0)]:
            print_error(f"skipped: {problem}")
        if len(data.problems) > show > 0:
            print_error(f"... and {len(data.problems) - show} more in {data.source}")
        data.require_nonempty()
        filtered, report = filter_vocabulary(data, min_count=min_count, block_list=blocked)
        if not filtered.records:
            raise InputError(f"no videos left after filtering {manifest} ({report.summary()})")
        write_manifest_jsonl(filtered, out)
        if classes_out is not None:
            from openvocab.atomic import atomic_write

            atomic_write(classes_out, "".join(f"{name}\n" for name in filtered.classes))
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        print_error(f"error: {out}: cannot write ({exc.strerror or exc})")
        raise typer.Exit(2) from None
    print(f"wrote {out}: {len(filtered):,} videos, {len(filtered.classes):,} classes, {filtered.labels_per_video():.2f} labels per video; {report.summary()}")


@data_app.command("check")
def check(
    path: Path = typer.Argument(..., help="Manifest (.csv/.jsonl), Kinetics, VGGSound or RareAct CSV, ActivityNet JSON, or UCF101/HMDB51 split folder."),
    kind: str = typer.Option("manifest", "--kind", help="manifest, kinetics, vggsound, ucf101, hmdb51, activitynet or rareact."),
    video_root: Optional[Path] = typer.Option(None, "--video-root", "--root", help="Folder the video paths are relative to (manifest default: its folder)."),
    classes: Optional[Path] = typer.Option(
        None, "--classes", help="Fixed vocabulary file (manifest, kinetics, vggsound, activitynet, rareact): other labels are problems."
    ),
    split: Optional[str] = typer.Option(None, "--split", help="Kinetics: split column value; VGGSound: train or test; UCF101/HMDB51: 1, 2 or 3."),
    subset: str = typer.Option("train", "--subset", help="UCF101/HMDB51: train or test."),
    no_check_files: bool = typer.Option(False, "--no-check-files", help="Do not look for the video files."),
    show: int = typer.Option(20, "--show", help="How many skipped rows to list."),
) -> None:
    """Read a dataset list, print its summary and the rows it skips (exit 1 when any). Example:

    openvocab data check ucfTrainTestlist --kind ucf101 --video-root UCF-101 --split 1 --subset test
    """
    from openvocab.data import read_activitynet, read_hmdb51, read_kinetics_csv, read_manifest, read_rareact, read_ucf101, read_vggsound_csv

    check_files = not no_check_files
    try:
        if kind == "manifest":
            manifest = read_manifest(path, root=video_root, classes=classes, check_files=check_files)
        elif kind in ("kinetics", "vggsound", "ucf101", "hmdb51", "activitynet", "rareact") and video_root is None:
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
        elif kind == "rareact":
            manifest = read_rareact(path, video_root=video_root, classes=classes, check_files=check_files)
        else:
            raise InputError(f"--kind must be manifest, kinetics, vggsound, ucf101, hmdb51, activitynet or rareact, got '{kind}'")
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
