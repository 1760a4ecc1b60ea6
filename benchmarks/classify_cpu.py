"""Classify one 10 s 640x360 clip, 8 frames, ViT-B/32 architecture, warm: openvocab vs a naive baseline.

Both run in this process on the same model weights, clip and labels:

* baseline -- what paper demo scripts do: decode EVERY frame to a PIL image, pick 8 uniformly, ``CLIPProcessor``
  on each frame separately, one model call per frame, and re-encode all label prompts (28 templates x labels)
  through the text tower on every call;
* openvocab -- ``VideoClassifier.classify``: decode once and convert only the 8 sampled frames (resized by swscale
  while decoding), batched torch preprocessing, one batched model call, label embeddings from the label bank.

A third row (openvocab with the label bank disabled) shows how much of the gain is the label cache.
Both sides' top label must agree (same sampled frames, same weights) -- the script checks it.

    python benchmarks/classify_cpu.py [--model DIR] [--repeats 5] [--labels 5]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

LABELS = [
    "playing guitar",
    "yoga",
    "dog barking",
    "arm wrestling",
    "cleaning pool",
    "hitting baseball",
    "applauding",
    "cricket shot",
    "sign language",
    "riding a bike",
]


def make_clip(path: Path, *, seconds: float = 10.0, fps: int = 25, width: int = 640, height: int = 360) -> Path:
    from openvocab.io.encode import write_video

    n = int(seconds * fps)
    yy, xx = np.mgrid[0:height, 0:width]
    frames = np.empty((n, height, width, 3), dtype=np.uint8)
    for i in range(n):
        cx, cy = (40 + 5 * i) % width, height // 2 + int(80 * np.sin(i / 10))
        disc = (xx - cx) ** 2 + (yy - cy) ** 2 < 50**2
        frames[i, ..., 0] = (xx * 255 // width + i) % 256
        frames[i, ..., 1] = (yy * 255 // height) % 256
        frames[i, ..., 2] = 128
        frames[i][disc] = (250, 40, 40)
    return write_video(path, frames, fps=fps)


def baseline(model, processor, video: Path, labels: list[str], templates: tuple[str, ...], frames: int) -> int:
    import av

    from openvocab.io.sampling import uniform_segments

    with av.open(str(video)) as container:
        images = [f.to_image() for f in container.decode(video=0)]  # every frame to PIL
    picks = uniform_segments(len(images), frames)
    with torch.inference_mode():
        feats = []
        for i in picks:  # CLIPProcessor and one model call per frame
            pixel = processor(images=images[int(i)], return_tensors="pt")["pixel_values"]
            feats.append(model.get_image_features(pixel_values=pixel).pooler_output)
        video_emb = torch.cat(feats).mean(0, keepdim=True)
        prompts = [t.format(label) for label in labels for t in templates]  # prompts re-encoded every call
        tok = processor.tokenizer(prompts, padding=True, return_tensors="pt")
        text = model.get_text_features(**tok).pooler_output
        text = text / text.norm(dim=-1, keepdim=True)
        text = text.reshape(len(labels), len(templates), -1).mean(1)
        text = text / text.norm(dim=-1, keepdim=True)
        video_emb = video_emb / video_emb.norm(dim=-1, keepdim=True)
        probs = (model.logit_scale.exp() * video_emb @ text.T).softmax(-1)
    return int(probs.argmax())


def timed(fn, repeats: int) -> tuple[float, object]:
    out = fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model dir (default: a fresh random vit-b-32)")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--labels", type=int, default=5, help="how many labels (28 prompts each)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    from transformers import CLIPModel, CLIPProcessor

    import openvocab
    from openvocab.models.create import create_model_dir

    labels = LABELS[: args.labels]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        model_dir = args.model or create_model_dir("vit-b-32", tmp / "vit-b-32")
        video = make_clip(tmp / "clip_640x360_10s.mp4")
        clf = openvocab.load(model_dir, label_bank=tmp / "bank.sqlite")
        clf_nobank = openvocab.load(model_dir, label_bank=False)
        model = CLIPModel.from_pretrained(str(model_dir)).eval()
        processor = CLIPProcessor.from_pretrained(str(model_dir))
        templates = clf.prompts.templates

        t_base, top_base = timed(lambda: baseline(model, processor, video, labels, templates, args.frames), args.repeats)
        t_ours, res = timed(lambda: clf.classify(video, labels, frames=args.frames, segments=0), args.repeats)
        t_nobank, _ = timed(lambda: clf_nobank.classify(video, labels, frames=args.frames, segments=0), args.repeats)
        agree = labels[top_base] == res.top.label

    row = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "clip": "10 s 640x360 25 fps h264",
        "model": "ViT-B/32 architecture (random weights)",
        "frames": args.frames,
        "labels": len(labels),
        "prompts_per_label": len(templates),
        "baseline_s": round(t_base, 3),
        "openvocab_s": round(t_ours, 3),
        "openvocab_no_label_bank_s": round(t_nobank, 3),
        "speedup": round(t_base / t_ours, 2),
        "speedup_without_label_bank": round(t_base / t_nobank, 2),
        "top1_agrees": agree,
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")
    if not agree:
        raise SystemExit("top-1 labels of baseline and openvocab disagree")


if __name__ == "__main__":
    main()
