"""Training augmentation (Text4Vis Table A.3) on CPU, against plain test-time preprocessing of the same clip.

Same process, same input: one 8-frame 256x340 uint8 clip (a training clip decoded with its short side at 256).

* baseline -- ``openvocab.io.transforms.preprocess_frames``: resize the short side to 224, centre crop,
  CLIP-normalise (what evaluation and inference do to every clip);
* augment -- ``openvocab.data.augment.VideoAugment()`` with the paper's defaults: random resized crop to 224, flip,
  RandAugment N=2 M=9 (two of 14 ops, drawn per clip), random grayscale, CLIP-normalise. Each call uses a new seed,
  so the median is over many op draws.

The two run interleaved (one call each, ``--clips`` times) and the medians are compared. A second table times each
RandAugment op alone on the 8x3x224x224 crop, to show where the cost of a draw comes from.

    python benchmarks/augment_cpu.py [--clips 60] [--frames 8] [--op-repeats 10]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=60, help="calls of each side (a new augmentation seed each)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--height", type=int, default=256)
    parser.add_argument("--width", type=int, default=340)
    parser.add_argument("--op-repeats", type=int, default=10, help="calls per RandAugment op in the per-op table")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()

    from openvocab.data.augment import RANDAUGMENT_OPS, VideoAugment, apply_op, randaugment_value
    from openvocab.io.transforms import preprocess_frames

    rng = np.random.default_rng(0)
    clip = torch.from_numpy(rng.integers(0, 256, (args.frames, args.height, args.width, 3), dtype=np.uint8))
    augment = VideoAugment()
    size = augment.spec.size

    def baseline() -> torch.Tensor:
        return preprocess_frames(clip, size=size)

    def augmented(seed: int) -> torch.Tensor:
        return augment(clip, generator=torch.Generator().manual_seed(seed))

    baseline(), augmented(0)  # warm-up
    t_base, t_aug = [], []
    for seed in range(args.clips):
        t0 = time.perf_counter()
        baseline()
        t1 = time.perf_counter()
        augmented(seed)
        t2 = time.perf_counter()
        t_base.append(t1 - t0)
        t_aug.append(t2 - t1)

    crop = augment.apply(clip, augment.sample(args.height, args.width, generator=torch.Generator().manual_seed(0)), normalise=False)
    per_op = {}
    for op in RANDAUGMENT_OPS:
        value = randaugment_value(op, augment.spec.randaugment_m, size=size)
        apply_op(crop, op, value)
        times = []
        for _ in range(args.op_repeats):
            t0 = time.perf_counter()
            apply_op(crop, op, value)
            times.append(time.perf_counter() - t0)
        per_op[op] = round(statistics.median(times) * 1000, 2)

    base_ms, aug_ms = statistics.median(t_base) * 1000, statistics.median(t_aug) * 1000
    row = {
        "machine": f"{platform.machine()} {torch.get_num_threads()} threads, torch {torch.__version__}",
        "clip": f"{args.frames}x{args.height}x{args.width} uint8 -> {args.frames}x3x{size}x{size} float32",
        "clips": args.clips,
        "baseline_preprocess_ms": round(base_ms, 2),
        "augment_ms": round(aug_ms, 2),
        "augment_p90_ms": round(float(np.percentile(np.array(t_aug) * 1000, 90)), 2),
        "augment_over_baseline": round(aug_ms / base_ms, 2),
        "per_op_ms_on_224_crop": per_op,
    }
    print(json.dumps(row, indent=2))
    if args.json:
        args.json.write_text(json.dumps(row, indent=2) + "\n")


if __name__ == "__main__":
    main()
