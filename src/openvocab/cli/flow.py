"""``openvocab flow ...``: precompute optical flow for a dataset (MOV §4.1 "Kinetics-700 optical flow").

Registered by :mod:`openvocab.cli` as ``app.add_typer(flow_app, name="flow")``. ``extract`` writes one flow cache file
per video (:mod:`openvocab.io.flow_cache`) that training and evaluation read instead of computing TV-L1 on the fly.
User-caused failures (a bad manifest, a bad option) print one line (``error: ...``) and exit 2; videos that fail
are listed at the end and in ``OUT/failures.csv``, and the command exits 1.
"""

from __future__ import annotations

import csv
import io
import os
import time
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import print_error, progress_bar
from openvocab.errors import InputError, OpenVocabError
from openvocab.io.choices import FLOW_METHODS

flow_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help="Optical flow: precompute the flow of every frame pair of a dataset's videos (MOV §4.1).\n\n"
    "Example: openvocab flow extract data/train.csv cache/flow --workers 8",
)

FORMATS = ("manifest", "kinetics", "ucf101", "hmdb51", "activitynet")
FAILURES_FILE = "failures.csv"
_DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))


def _read_records(manifest: Path, fmt: str, root: Optional[Path], split: Optional[str], subset: str):
    """The manifest's records in its format; missing videos of a generic manifest are left to the extraction, which
    reports them as failures (the official formats need the files to find them)."""
    from openvocab.data.manifests import read_activitynet, read_hmdb51, read_kinetics_csv, read_manifest, read_ucf101

    if fmt == "manifest":
        return read_manifest(manifest, root=root, check_files=False)
    if root is None:
        raise InputError(f"--format {fmt} needs --root (the folder holding the videos)")
    if fmt == "kinetics":
        return read_kinetics_csv(manifest, video_root=root, split=split)
    if fmt in ("ucf101", "hmdb51"):
        if split is not None and not split.isdigit():
            raise InputError(f"--split for {fmt} must be 1, 2 or 3, got '{split}'")
        reader = read_ucf101 if fmt == "ucf101" else read_hmdb51
        return reader(manifest, video_root=root, split=int(split or 1), subset=subset)  # type: ignore[arg-type]
    if fmt == "activitynet":
        anet_subset = {"train": "training", "test": "validation", "val": "validation"}.get(subset, subset)
        return read_activitynet(manifest, video_root=root, subset=anet_subset)  # type: ignore[arg-type]
    raise InputError(f"--format must be one of {', '.join(FORMATS)}, got '{fmt}'")


def _failures_csv(failed: list[tuple[str, str]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["path", "reason"])
    writer.writerows(failed)
    return buffer.getvalue()


@flow_app.command("extract")
def extract(
    manifest: Path = typer.Argument(..., help="The videos: a manifest (CSV/JSONL with a path column) or an official list (see --format)."),
    out: Path = typer.Argument(..., help="Cache folder: one <video path>.flow.safetensors per video, mirroring the video folders."),
    root: Optional[Path] = typer.Option(
        None, "--root", help="Folder the video paths are relative to (manifest default: its folder); cache keys are paths relative to it."
    ),
    fmt: str = typer.Option("manifest", "--format", help=f"Manifest format: {', '.join(FORMATS)}."),
    split: Optional[str] = typer.Option(None, "--split", help="Kinetics: split column value; UCF101/HMDB51: 1, 2 or 3."),
    subset: str = typer.Option("train", "--subset", help="UCF101/HMDB51/ActivityNet: train or test."),
    method: str = typer.Option("tvl1", "--method", help=f"Flow method: {FLOW_METHODS.help_text()}."),
    short_side: int = typer.Option(256, "--short-side", help="Decode with the short side shrunk to at most this many pixels (the recipe crops later)."),
    codec: str = typer.Option("jpeg", "--codec", help="How flow images are stored: jpeg (quality 95, ~3 MB per 10 s clip) or png (lossless, 2-2.7x larger)."),
    workers: int = typer.Option(_DEFAULT_WORKERS, "--workers", "-j", help="Videos processed in parallel (processes)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Only the first N videos of the manifest."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Compute the optical flow of every consecutive frame pair of each video and cache it. Re-running resumes:
    videos already cached with the same settings are skipped. Example:

    openvocab flow extract kinetics700/train.csv cache/k700-flow --format kinetics --root kinetics700/videos --workers 16
    """
    from openvocab.io.flow_cache import FlowCache, extract_manifest

    try:
        if limit is not None and limit < 1:
            raise InputError(f"--limit must be a positive number of videos, got {limit}")
        if workers < 1:
            raise InputError(f"--workers must be at least 1, got {workers}")
        video_root = root if root is not None else (manifest.expanduser().absolute().parent if fmt == "manifest" else None)
        cache = FlowCache(out, method=method, short_side=short_side, video_root=video_root, codec=codec)
        m = _read_records(manifest, fmt, root, split, subset)
        for problem in m.problems:
            print_error(f"warning: {problem}")
        m.require_nonempty()
        videos = list(dict.fromkeys(r.path for r in m.records))[:limit]
        started = time.perf_counter()
        with progress_bar("flow", len(videos), enabled=not quiet) as update:
            report = extract_manifest(videos, cache, workers=workers, progress=lambda done, total: update(done))
        elapsed = time.perf_counter() - started
    except OpenVocabError as exc:
        print_error(f"error: {exc}")
        raise typer.Exit(2) from None
    report_file = cache.root_dir / FAILURES_FILE
    try:
        if report.failed:
            from openvocab.atomic import atomic_write

            atomic_write(report_file, _failures_csv(report.failed))
        else:  # the report describes the latest run
            report_file.unlink(missing_ok=True)
    except OSError as exc:
        print_error(f"error: {report_file}: cannot write the failure report ({exc.strerror or exc})")
    for path, reason in report.failed:
        print_error(f"error: {path}: {reason}")
    print(
        f"{report.total} videos: {len(report.done)} extracted, {len(report.skipped)} already cached (skipped), {len(report.failed)} failed, "
        f"in {elapsed:.1f} s -> {cache.root_dir} ({method}, short side {short_side}, {codec})"
    )
    if report.failed:
        print_error(f"{len(report.failed)} of {report.total} videos failed; listed in {report_file} (re-running retries them and skips the rest)")
        raise typer.Exit(1)
