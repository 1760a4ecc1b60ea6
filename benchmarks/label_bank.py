"""Encode a real vocabulary x CLIP's 28 prompt templates through the ViT-B/32 text tower: old ways vs openvocab's.

Same process, same model (ViT-B/32 architecture, seeded random weights -- the work is the released checkpoint's),
same prompts (a spread subset of the Kinetics-400 class names in ``../shared/data/labels``, each filled into the 28
templates, label-major as ``encode_labels`` builds them):

* pad-77 -- what CLIP's reference code does (``clip.tokenize`` pads every prompt to the 77-token context), batches
  of 256 in label order: the tokenizer with ``padding="max_length"``;
* previous openvocab -- the code before this change: batches of 256 in label order, each padded to its own longest
  prompt (``openvocab.text.tokenizer.encode_prompts`` per batch);
* openvocab, sorted only -- ``ClipBackbone.encode_prompts(share_prefixes=False)``: one tokenizer call, prompts
  sorted by token count, each batch padded to its own longest, rows put back in input order;
* openvocab -- ``ClipBackbone.encode_prompts`` (the default): the same, plus token prefixes shared by at least 8
  prompts (the templates' "a photo of a person doing", ...) computed once and cached, so only the rest of each
  prompt runs through the tower (``openvocab.models.text_encoding``).

The script checks that all methods give the same embeddings (max abs difference, float32 rounding only), then
times ``encode_prompts`` at several batch sizes (the default, ``TEXT_BATCH_SIZE``, comes from this sweep).
The methods run interleaved, ``--repeats`` rounds, and the best round of each is reported: on a shared machine other
processes only ever add time, so the minimum is the least disturbed measurement.

    python benchmarks/label_bank.py [--labels 20] [--repeats 3] [--vocabulary kinetics_k400] [--sweep 64,128,256,512]

With the defaults it runs 1.5-3 min on 2 cores (20 of the 400 Kinetics classes: 560 prompts; the full vocabulary
is 11,200 prompts, and the script prints the time each method would take for it at the measured rate).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

SHARED_LABELS = Path(__file__).resolve().parents[2] / "shared" / "data" / "labels"
OLD_BATCH = 256  # ClipBackbone.encode_prompts' default before sorting


def pad77_baseline(backbone, prompts: list[str], *, batch_size: int = OLD_BATCH) -> torch.Tensor:
    """CLIP reference style: every prompt padded to the full 77-token context, fixed batches in input order."""
    tok = backbone.tokenizer
    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            batch = tok(prompts[start : start + batch_size], padding="max_length", truncation=True, max_length=backbone.context_length, return_tensors="pt")
            out.append(backbone.encode_text(batch["input_ids"], batch["attention_mask"]).float())
    return torch.cat(out)


def previous_openvocab(backbone, prompts: list[str], *, batch_size: int = OLD_BATCH) -> torch.Tensor:
    """The code before this change, through public pieces: input order, 256 a batch, padded to the batch's longest."""
    from openvocab.text.tokenizer import encode_prompts

    out = []
    with torch.inference_mode():
        for start in range(0, len(prompts), batch_size):
            inputs, _ = encode_prompts(backbone.tokenizer, prompts[start : start + batch_size], context_length=backbone.context_length)
            out.append(backbone.encode_text(inputs["input_ids"], inputs.get("attention_mask")).float())
    return torch.cat(out)


def openvocab_sorted(backbone, prompts: list[str]) -> torch.Tensor:
    return backbone.encode_prompts(prompts, share_prefixes=False)[0]


def openvocab_now(backbone, prompts: list[str], *, batch_size: int | None = None) -> torch.Tensor:
    kwargs = {} if batch_size is None else {"batch_size": batch_size}
    return backbone.encode_prompts(prompts, **kwargs)[0]


def timed(fn) -> tuple[float, torch.Tensor]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vocabulary", default="kinetics_k400", help="a file name (no .txt) in ../shared/data/labels")
    parser.add_argument("--labels", type=int, default=20, help="how many class names (spread over the list; 0 = all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--sweep", default="64,128,256,512", help="batch sizes to time for encode_prompts ('' = none)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    labels_file = SHARED_LABELS / f"{args.vocabulary}.txt"
    if not labels_file.is_file():
        print(f"skipped: {labels_file} not found (../shared/data is not next to this checkout; the benchmark needs a real vocabulary)")
        sys.exit(0)

    from openvocab.models.backbone import TEXT_BATCH_SIZE, ClipBackbone
    from openvocab.text.prompts import build_prompts, normalise_class_name, prompt_set

    names = [normalise_class_name(line.strip()) for line in labels_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if 0 < args.labels < len(names):
        step = len(names) / args.labels
        names = [names[int(i * step)] for i in range(args.labels)]
    templates = prompt_set("ensemble")
    prompts = build_prompts(names, templates)
    backbone = ClipBackbone.from_pretrained("random:vit-b-32")
    lengths = [len(ids) for ids in backbone.tokenizer(prompts)["input_ids"]]
    openvocab_now(backbone, prompts[:64])  # warm-up (allocator, kernels)

    methods = {"pad77": pad77_baseline, "previous": previous_openvocab, "sorted_only": openvocab_sorted, "openvocab": openvocab_now}
    times: dict[str, list[float]] = {k: [] for k in methods}
    outputs: dict[str, torch.Tensor] = {}
    for _ in range(args.repeats):
        for key, fn in methods.items():
            seconds, outputs[key] = timed(lambda fn=fn: fn(backbone, prompts))
            times[key].append(seconds)
            print(f"  {key}: {seconds:.2f} s", file=sys.stderr, flush=True)
    diff = {k: float((outputs[k] - outputs["openvocab"]).abs().max()) for k in ("pad77", "previous", "sorted_only")}

    sweep: dict[int, float] = {}
    sizes = [int(s) for s in args.sweep.split(",") if s.strip()]
    for _ in range(2):  # interleaved, best of two
        for size in sizes:
            seconds, _ = timed(lambda size=size: openvocab_now(backbone, prompts, batch_size=size))
            sweep[size] = max(sweep.get(size, 0.0), round(len(prompts) / seconds, 1))
            print(f"  batch {size}: {len(prompts) / seconds:.1f} prompts/s", file=sys.stderr, flush=True)

    med = {k: min(v) for k, v in times.items()}
    rate = {k: round(len(prompts) / v, 1) for k, v in med.items()}
    row = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "model": "ViT-B/32 text tower (random weights)",
        "vocabulary": f"{args.vocabulary}: {len(names)} class names spread over the list, x {len(templates.templates)} templates",
        "prompts": len(prompts),
        "tokens_per_prompt_mean": round(sum(lengths) / len(lengths), 2),
        "tokens_max": max(lengths),
        "seconds": {k: round(v, 2) for k, v in med.items()},
        "prompts_per_s": rate,
        "openvocab_batch_size": TEXT_BATCH_SIZE,
        "speedup_vs_pad77": round(med["pad77"] / med["openvocab"], 2),
        "speedup_vs_previous_openvocab": round(med["previous"] / med["openvocab"], 2),
        "speedup_sorted_only_vs_previous_openvocab": round(med["previous"] / med["sorted_only"], 2),
        "max_abs_diff_vs_openvocab": diff,
        "batch_size_sweep_prompts_per_s": sweep,
        "kinetics400_full_estimate_s": {k: round(400 * 28 / r) for k, r in rate.items()},
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    if max(diff.values()) > 1e-4:
        raise SystemExit(f"embeddings differ between methods: {diff}")


if __name__ == "__main__":
    main()
