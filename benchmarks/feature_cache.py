"""Head training per epoch: from the feature cache vs. recomputing frames through the frozen backbone.

Same process, same model (ViT-B/32 architecture, random weights), same videos, same head (T-Trans, 1 layer, +
frozen orthogonal classifier), same batches:

* baseline -- every step decodes the batch's videos, preprocesses them and runs the frozen vision tower (no grad),
  then trains the head: what a training script without a cache does when only the head learns;
* cached -- ``openvocab features extract`` once (timed separately), then every step reads cached frame features.

    python benchmarks/feature_cache.py [--videos 24] [--epochs 2] [--frames 8]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--arch", default="vit-b-32")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
    from openvocab.data.manifests import read_manifest
    from openvocab.data.synth import SynthSpec, generate
    from openvocab.features.cache import FeatureCache, extract_features
    from openvocab.io.sampling import SamplerSpec
    from openvocab.models.backbone import ClipBackbone
    from openvocab.models.recognizer import RecognizerSpec, VideoRecognizer, build_head
    from openvocab.train.schedule import build_adamw

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        per_class = max(1, args.videos // 4)
        spec = SynthSpec(
            shapes=("circle", "square"),
            colours=("red", "blue"),
            motions=("left",),
            label_factors=("colour", "shape"),
            clips_per_class=per_class,
            frames=32,
            size=128,
            novel_fraction=0.0,
            val_fraction=0.0,
            test_fraction=0.0,
        )
        data = generate(spec, tmp / "synth", seed=0)
        m = read_manifest(data / "train.csv", classes=data / "classes.txt")
        backbone = ClipBackbone.from_pretrained(f"random:{args.arch}")
        sampler = SamplerSpec(frames=args.frames)
        names = m.class_names()

        def fresh_model() -> VideoRecognizer:
            torch.manual_seed(0)
            rs = RecognizerSpec(
                model=backbone.source,
                num_classes=len(names),
                classifier="orthogonal",
                temporal="ttrans",
                temporal_layers=1,
                frames=args.frames,
                train_backbone=False,
            )
            return VideoRecognizer(backbone=backbone, head=build_head(rs, backbone=backbone, class_names=names), spec=rs)

        batch = 8
        # baseline: decode + frozen backbone every step
        model = fresh_model()
        opt = build_adamw([(n, p) for n, p in model.trainable_named_parameters() if not n.startswith("backbone.")], lr=1e-3)
        img = backbone.image_spec
        ds = VideoClipDataset(m.records, sampler=sampler, clip=img)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            for b in DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0, collate_fn=collate_skip_failed):
                px = b["inputs"]["rgb"][:, 0, 0]
                with torch.no_grad():
                    feats = model.primary_stream.frame_features(px)
                loss = F.cross_entropy(model.logits_from_frame_features(feats), b["target"])
                opt.zero_grad()
                loss.backward()
                opt.step()
        baseline = (time.perf_counter() - t0) / args.epochs

        t0 = time.perf_counter()
        extract_features(backbone=backbone, records=m.records, classes=m.classes, out_dir=tmp / "cache", sampler=sampler, workers=0)
        extract_s = time.perf_counter() - t0
        cache = FeatureCache(tmp / "cache")
        model = fresh_model()
        opt = build_adamw([(n, p) for n, p in model.trainable_named_parameters() if not n.startswith("backbone.")], lr=1e-3)
        t0 = time.perf_counter()
        for _ in range(args.epochs):
            order = torch.randperm(len(cache))
            for s in range(0, len(cache), batch):
                idx = order[s : s + batch]
                loss = F.cross_entropy(model.logits_from_frame_features(cache.frames[idx, 0]), cache.targets[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
        cached = (time.perf_counter() - t0) / args.epochs

    row = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "model": f"{args.arch} architecture (random weights), frozen",
        "videos": len(m.records),
        "frames": args.frames,
        "epoch_s_recompute": round(baseline, 3),
        "epoch_s_cached": round(cached, 4),
        "one_time_extract_s": round(extract_s, 3),
        "speedup_per_epoch": round(baseline / cached, 1),
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
