"""Optical flow on CPU at 224x224 (MOV §4.1): TV-L1 against the faster options, speed and accuracy.

Same process, same frame pairs (real clips from ../shared/data, 224x224):

* the cricket clip of DeepMind's i3d release (already a 224x224 centre crop),
* ``arm_wrestling.mp4`` and ``yoga.mp4`` decoded with the short side at 224, centre-cropped to 224x224,

``--pairs`` consecutive-frame pairs spread evenly over each clip. Every method in ``FLOW_METHODS`` (``tvl1``,
``dis``, ``farneback``) runs one warm-up pair, then all pairs; the table gives pairs per second, the speed-up
over TV-L1, and the mean end-point error (EPE, ``|flow - flow_tvl1|`` in pixels) against TV-L1 on the same pairs,
over all pixels and over the moving ones (TV-L1 magnitude > 1 px, where the flow images carry signal), the latter
also after clamping both fields to the +-20 px that flow images keep (MOV §4.1), and the worst pair's mean EPE
(a scene cut or fade makes the fast methods return huge vectors). The flow is what
``openvocab.io.flow.compute_flow`` returns (grayscale frames, the settings in that module).

    python benchmarks/flow.py [--pairs 16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "videos"
CLIPS = ("cricket_shot_rgb.gif", "arm_wrestling.mp4", "yoga.mp4")
SIZE = 224


def load_pairs(pairs_per_clip: int) -> tuple[list[np.ndarray], list[str]]:
    """(2, 224, 224, 3) uint8 frame pairs (i, i+1), ``pairs_per_clip`` per clip, spread evenly; and their clips."""
    from openvocab.io.decode import open_video

    out, names = [], []
    for name in CLIPS:
        source = open_video(SHARED / name)
        n = source.info.num_frames
        starts = np.linspace(0, n - 2, pairs_per_clip + 2).round().astype(np.int64)[1:-1]
        idx = np.stack([starts, starts + 1], axis=1).ravel()
        frames = source.read(idx, max_short_side=SIZE).frames
        h, w = frames.shape[1:3]
        top, left = (h - SIZE) // 2, (w - SIZE) // 2
        frames = np.ascontiguousarray(frames[:, top : top + SIZE, left : left + SIZE])
        out.extend(frames[k : k + 2] for k in range(0, len(frames), 2))
        names.extend([name] * (len(frames) // 2))
    return out, names


def run(method: str, pairs: list[np.ndarray]) -> tuple[float, list[np.ndarray]]:
    from openvocab.io.flow import compute_flow

    compute_flow(pairs[0], method=method)  # warm-up (first call builds the estimator, loads code)
    t0 = time.perf_counter()
    flows = [compute_flow(p, method=method)[0] for p in pairs]
    return time.perf_counter() - t0, flows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=16, help="frame pairs per clip (3 clips)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args()
    if not all((SHARED / name).is_file() for name in CLIPS):
        print(f"skipped: the real clips are not in {SHARED} (a fresh clone without ../shared)")
        return

    import cv2

    from openvocab.io.flow import FLOW_BOUND, FLOW_METHODS

    pairs, names = load_pairs(args.pairs)
    results = {}
    for method in FLOW_METHODS.names():
        seconds, flows = run(method, pairs)
        results[method] = {"seconds": seconds, "flows": flows}
    ref = results["tvl1"]["flows"]
    moving = [np.hypot(f[..., 0], f[..., 1]) > 1.0 for f in ref]
    rows = []
    for method, r in results.items():
        err = [np.hypot(*np.moveaxis(f - g, -1, 0)) for f, g in zip(r["flows"], ref)]
        b = FLOW_BOUND  # what the flow images keep: both fields clamped to [-20, 20]
        clamped = [np.hypot(*np.moveaxis(np.clip(f, -b, b) - np.clip(g, -b, b), -1, 0)) for f, g in zip(r["flows"], ref)]
        rows.append(
            {
                "method": method,
                "pairs_per_s": round(len(pairs) / r["seconds"], 2),
                "speedup_vs_tvl1": round(results["tvl1"]["seconds"] / r["seconds"], 1),
                "epe_px": round(float(np.mean([e.mean() for e in err])), 3),
                "epe_moving_px": round(float(np.mean([e[m].mean() for e, m in zip(err, moving) if m.any()])), 3),
                "epe_moving_clamped_px": round(float(np.mean([e[m].mean() for e, m in zip(clamped, moving) if m.any()])), 3),
                "worst_pair_epe_px": round(float(max(e.mean() for e in err)), 2),
                "epe_moving_px_by_clip": {
                    clip: round(float(np.mean([e[m].mean() for e, m, c in zip(err, moving, names) if c == clip and m.any()])), 3) for clip in CLIPS
                },
            }
        )
    report = {
        "machine": f"{platform.machine()}, OpenCV {cv2.__version__}, {cv2.getNumThreads()} OpenCV threads",
        "pairs": len(pairs),
        "size": f"{SIZE}x{SIZE}",
        "moving_fraction": round(float(np.mean([m.mean() for m in moving])), 3),
        "rows": rows,
    }
    print(json.dumps(report, indent=2))
    print("\n| method | pairs/s | speed-up vs tvl1 | EPE, px | EPE moving, px | EPE moving, clamped +-20, px | worst pair EPE, px |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        cells = [r["pairs_per_s"], f"{r['speedup_vs_tvl1']}x", r["epe_px"], r["epe_moving_px"], r["epe_moving_clamped_px"], r["worst_pair_epe_px"]]
        print(f"| {r['method']} | " + " | ".join(str(c) for c in cells) + " |")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
