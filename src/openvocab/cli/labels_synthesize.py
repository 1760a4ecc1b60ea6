"""``openvocab labels synthesize``: labels for videos from captions, an LLM and a text encoder (the synthetic label
pipeline of open-vocabulary multi-label, appendix I; :mod:`openvocab.labelling.synthesis`).

Registered by :mod:`openvocab.cli` on the ``labels`` group. Writes, atomically, into ``OUT``: ``labels.jsonl`` (a
multi-label manifest ``openvocab train`` reads: path, labels, and the captions and concepts behind them),
``vocabulary.txt`` (the de-duplicated labels), ``clusters.json`` (each label's near-duplicates, Table 13) and, when
some videos could not be captioned, ``failures.csv`` (exit code 1; the other videos are labelled).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Optional

import typer

from openvocab.cli.common import DEFAULT_MODEL, DeviceOption, print_error, progress_bar, setup_logging
from openvocab.errors import InputError

EXAMPLE = (
    "Example: openvocab labels synthesize videos/ -o synth_labels --captions captions.jsonl --llm google/flan-t5-xl --text-encoder openai/clip-vit-base-patch32"
)


def _videos(inputs: list[str], manifest: Optional[Path]) -> tuple[list[str], dict[str, list[str]], list[tuple[str, str]]]:
    """Videos to label (paths as strings), the labels a manifest already gives them, and input problems."""
    from openvocab.io.discover import expand_inputs

    existing: dict[str, list[str]] = {}
    videos: list[str] = []
    if manifest is not None:
        from openvocab.data.manifests import read_manifest

        m = read_manifest(manifest, check_files=False)
        for record in m.records:
            videos.append(record.path)
            existing[record.path] = [m.classes[i] for i in record.labels]
    found, problems = expand_inputs(inputs) if inputs else ([], [])
    videos += [str(p) for p in found if str(p) not in existing]
    return videos, existing, problems


def _embedder(text_encoder: str, device: str):
    """``texts -> (N, D)``: a CLIP model's text tower on the raw text, or ``minilm`` (a sentence encoder)."""
    from openvocab.text.label_encoders import ClipTextEncoder, SentenceLabelEncoder
    from openvocab.text.prompts import prompt_set

    if text_encoder == "minilm":
        return SentenceLabelEncoder("minilm").encode
    from openvocab.models.backbone import ClipBackbone

    return ClipTextEncoder(ClipBackbone.from_pretrained(text_encoder, device=device), prompt_set("classname")).encode


def synthesize(
    inputs: Optional[list[str]] = typer.Argument(None, help="Videos, folders or glob patterns to label (or give --manifest)."),
    out: Path = typer.Option(..., "--out", "-o", help="Output folder (labels.jsonl, vocabulary.txt, clusters.json)."),
    manifest: Optional[Path] = typer.Option(None, "--manifest", help="A manifest whose videos to label; its own labels are kept beside the new ones."),
    captions: Optional[Path] = typer.Option(None, "--captions", help="Captions you have: JSONL {path, captions} rows or a CSV with path,caption."),
    captioner: Optional[str] = typer.Option(None, "--captioner", help="An image-to-text model (hub id or directory: BLIP, GIT ...) to caption frames."),
    caption_frames: int = typer.Option(8, "--caption-frames", help="Frames captioned per video (--captioner)."),
    llm: str = typer.Option(..., "--llm", help="The LLM that extracts concepts from captions (T5 / Flan-T5 hub id or directory)."),
    kinds: str = typer.Option("actions", "--kinds", help="Concepts to extract: actions, objects or actions,objects."),
    text_encoder: str = typer.Option(
        DEFAULT_MODEL, "--text-encoder", help="CLIP model (hub id or directory) whose text tower clusters and assigns; or 'minilm'."
    ),
    clusters: Optional[int] = typer.Option(None, "--clusters", help="k of the k-means de-duplication (default: half the distinct concepts)."),
    min_videos: int = typer.Option(1, "--min-videos", help="Drop concepts found in fewer videos."),
    min_similarity: float = typer.Option(0.25, "--min-similarity", help="Assign a label when a caption's cosine with 'a video of {label}' reaches this."),
    max_labels: int = typer.Option(10, "--max-labels", help="At most this many synthetic labels per video."),
    seed: int = typer.Option(0, "--seed"),
    device: DeviceOption = "cpu",
    quiet: bool = typer.Option(False, "--quiet", "-q"),
) -> None:
    """Label videos from their captions (appendix I): caption -> LLM concepts -> k-means de-duplication -> assignment."""
    from openvocab.atomic import atomic_write
    from openvocab.labelling.captioners import CaptionFile, FrameCaptioner
    from openvocab.labelling.synthesis import INSTRUCTIONS
    from openvocab.labelling.synthesis import synthesize as run

    setup_logging(quiet)
    if (captions is None) == (captioner is None):
        raise InputError("give exactly one of --captions FILE and --captioner MODEL")
    chosen = [k.strip() for k in kinds.split(",") if k.strip()]
    bad = [k for k in chosen if k not in INSTRUCTIONS]
    if not chosen or bad:
        raise InputError(f"--kinds must list {', '.join(INSTRUCTIONS)}, got '{kinds}'")
    if max_labels < 1 or min_videos < 1 or not -1.0 <= min_similarity <= 1.0:
        raise InputError("need --max-labels >= 1, --min-videos >= 1 and -1 <= --min-similarity <= 1")
    videos, existing, problems = _videos(list(inputs or []), manifest)
    if not videos:
        raise InputError("no videos to label" + (f" ({problems[0][0]}: {problems[0][1]})" if problems else " (give videos or --manifest)"))
    caption = CaptionFile(captions) if captions is not None else FrameCaptioner(str(captioner), frames=caption_frames, device=device)
    from openvocab.text.llm_attributes import load_llm

    model = load_llm(llm, device=device)
    with progress_bar("captioning", len(videos), enabled=not quiet) as advance:
        result = run(
            videos,
            caption=caption,
            generate=model.generate,
            embed=_embedder(text_encoder, device),
            kinds=chosen,
            clusters=clusters,
            min_videos=min_videos,
            min_similarity=min_similarity,
            max_labels=max_labels,
            seed=seed,
            progress=lambda done, total: advance(done),
        )
    rows = []
    for video in videos:
        if video in result.failed:
            continue
        synthetic = result.labels.get(video, [])
        labels = list(dict.fromkeys(existing.get(video, []) + synthetic))
        if not labels:
            continue
        rows.append(
            json.dumps(
                {"path": video, "labels": labels, "synthetic_labels": synthetic, "captions": result.captions[video], "concepts": result.concepts[video]},
                ensure_ascii=False,
            )
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "labels.jsonl", "".join(r + "\n" for r in rows))
    atomic_write(out / "vocabulary.txt", "".join(label + "\n" for label in result.vocabulary.labels))
    clusters_doc = [
        {"label": members[0], "concepts": members, "videos": [result.vocabulary.counts[c] for c in members]} for members in result.vocabulary.clusters
    ]
    atomic_write(out / "clusters.json", json.dumps(clusters_doc, indent=1, ensure_ascii=False) + "\n")
    failed = [*problems, *result.failed.items()]
    unlabelled = sum(1 for v in videos if v not in result.failed) - len(rows)
    print(
        f"labelled {len(rows)} of {len(videos)} videos with {len(result.vocabulary.labels)} labels "
        f"({sum(len(members) for members in result.vocabulary.clusters)} concepts) -> {out}" + (f"; {unlabelled} got no label" if unlabelled else "")
    )
    if failed:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "problem"])
        writer.writerows(failed)
        atomic_write(out / "failures.csv", buffer.getvalue())
        for path, problem in failed[:10]:
            print_error(f"error: {path}: {problem}")
        print_error(f"{len(failed)} video(s) failed; see {out / 'failures.csv'}")
        raise typer.Exit(1)
