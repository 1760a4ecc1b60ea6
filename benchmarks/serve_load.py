"""Load on ``openvocab serve`` (issue 10, evidence "load test"): a burst of concurrent classify requests against a real
uvicorn server on 127.0.0.1, with a small work queue so that some are refused.

The server runs in a subprocess (``python -m openvocab.cli serve``) on a free port with a tiny random-weight CLIP
(``openvocab.models.create.create_model_dir("tiny")`` unless ``--model``), its temp folder under a private ``TMPDIR``.
After a warm-up, ``--requests`` client threads (urllib) wait at a barrier and then each upload the same synthetic clip
at once, with a client timeout, so a hung request shows as an error, never as a hang of this script. Reported: how
many got 200 / 503 (with ``Retry-After``) / anything else, latency p50 / p95 / max of each, throughput of the 200s over
the burst, the server's RSS (psutil) before the burst, at its peak (sampled every 20 ms) and after the queue drained,
and the upload files left in the server's temp folder.

    python benchmarks/serve_load.py [--requests 100] [--queue-size 4] [--workers 1] [--frames 8] [--video FILE] [--json]

The tests (``tests/test_serve_load.py``) call :func:`run_burst` with bounded numbers; this script prints the figures
recorded in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np

BOUNDARY = "openvocab-load-boundary"


def make_clip(path: Path, *, frames: int = 48, size: tuple[int, int] = (160, 120)) -> bytes:
    """A synthetic clip (a square crossing the frame) written with the library's encoder; returns its bytes."""
    from openvocab.io.encode import write_video

    w, h = size
    video = np.full((frames, h, w, 3), 40, np.uint8)
    for i in range(frames):
        x = i * (w - 24) // max(frames - 1, 1)
        video[i, h // 3 : h // 3 + 24, x : x + 24] = (220, 80, 40)
    write_video(path, video)
    return path.read_bytes()


def multipart(fields: dict[str, str], filename: str, data: bytes) -> bytes:
    parts = [f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode() for k, v in fields.items()]
    parts.append(
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\nContent-Type: video/mp4\r\n\r\n'.encode() + data + b"\r\n"
    )
    return b"".join(parts) + f"--{BOUNDARY}--\r\n".encode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read())


def post(url: str, body: bytes, timeout: float) -> tuple[int | str, float, str | None]:
    """``(status or error name, seconds, Retry-After)`` of one POST."""
    request = urllib.request.Request(url, data=body, method="POST", headers={"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"})
    started = time.perf_counter()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as r:
            r.read()
            return r.status, time.perf_counter() - started, r.headers.get("Retry-After")
    except urllib.error.HTTPError as exc:
        exc.read()
        return exc.code, time.perf_counter() - started, exc.headers.get("Retry-After")
    except (OSError, TimeoutError) as exc:
        return type(exc).__name__, time.perf_counter() - started, None


@contextlib.contextmanager
def server(model_dir: Path, work: Path, *, queue_size: int, workers: int, threads: int = 1):
    """A running ``openvocab serve`` subprocess: yields ``(base URL, pid, its temp root)``; stopped with SIGTERM."""
    port = free_port()
    spool_root = work / "server-tmp"
    spool_root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "TMPDIR": str(spool_root), "OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "openvocab.cli", "serve", "--model", f"tiny={model_dir}", "--port", str(port), "--quiet"]
    cmd += ["--queue-size", str(queue_size), "--workers", str(workers), "--label-bank", str(work / "bank.sqlite"), "--timeout", "120"]
    log = open(work / "server.log", "w")  # noqa: SIM115 -- closed below
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited with {proc.returncode}: {(work / 'server.log').read_text()[-2000:]}")
            try:
                get_json(base + "/health", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not answer /health within 180 s") from None
                time.sleep(0.2)
        yield base, proc.pid, spool_root
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def percentile(values: list[float], q: float) -> float | None:
    return float(np.percentile(values, q)) if values else None


def run_burst(
    model_dir: Path,
    *,
    requests: int = 100,
    queue_size: int = 4,
    workers: int = 1,
    frames: int = 8,
    views: str = "1x1",
    labels: str = "playing guitar\nyoga\ndog barking\njuggling\nswimming",
    client_timeout: float = 90.0,
    video: Path | None = None,
    work: Path | None = None,
) -> dict:
    """One burst of ``requests`` simultaneous classify uploads; returns the figures (see the module)."""
    import psutil

    with contextlib.ExitStack() as stack:
        if work is None:
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="serve-load-")))
        clip = Path(video).read_bytes() if video is not None else make_clip(work / "clip.mp4")
        body = multipart({"labels": labels, "frames": str(frames), "views": views}, "clip.mp4", clip)
        base, pid, spool_root = stack.enter_context(server(model_dir, work, queue_size=queue_size, workers=workers))
        proc = psutil.Process(pid)
        for _ in range(3):  # warm-up: first-call allocations, label embeddings cached in the bank
            status, _, _ = post(base + "/classify", body, client_timeout)
            if status != 200:
                raise RuntimeError(f"warm-up request got {status}")
        rss_before = proc.memory_info().rss
        peak = [rss_before]
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                with contextlib.suppress(psutil.Error):
                    peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        barrier = threading.Barrier(requests)
        outcomes: list[tuple[int | str, float, str | None]] = []
        lock = threading.Lock()

        def client() -> None:
            barrier.wait()
            outcome = post(base + "/classify", body, client_timeout)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=client) for _ in range(requests)]
        started = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join(client_timeout + 30)
        burst_s = time.perf_counter() - started
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # the queue drains (a timed-out client's job may still run)
            queue = get_json(base + "/health")["queue"]
            if queue["running"] == 0 and queue["waiting"] == 0:
                break
            time.sleep(0.1)
        time.sleep(1.0)
        sampling.set()
        sampler.join()
        rss_after = proc.memory_info().rss
        left = sorted(str(p.relative_to(spool_root)) for p in spool_root.rglob("*") if p.is_file())
        ok = [s for code, s, _ in outcomes if code == 200]
        busy = [(s, ra) for code, s, ra in outcomes if code == 503]
        other = sorted({str(code) for code, _, _ in outcomes if code not in (200, 503)})
        mb = 1024 * 1024
        return {
            "requests": requests,
            "answered": len(outcomes),
            "ok_200": len(ok),
            "busy_503": len(busy),
            "busy_with_retry_after": sum(1 for _, ra in busy if ra and ra.isdigit() and int(ra) >= 1),
            "other": other,
            "other_count": sum(1 for code, _, _ in outcomes if code not in (200, 503)),
            "latency_200_p50_s": percentile(ok, 50),
            "latency_200_p95_s": percentile(ok, 95),
            "latency_200_max_s": max(ok) if ok else None,
            "latency_503_p50_s": percentile([s for s, _ in busy], 50),
            "latency_503_p95_s": percentile([s for s, _ in busy], 95),
            "burst_s": burst_s,
            "throughput_200_per_s": len(ok) / burst_s if burst_s > 0 else None,
            "rss_before_mb": rss_before / mb,
            "rss_peak_mb": peak[0] / mb,
            "rss_after_mb": rss_after / mb,
            "temp_files_left": left,
            "queue_size": queue_size,
            "workers": workers,
            "frames": frames,
            "views": views,
            "upload_bytes": len(clip),
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, help="model directory (default: a tiny random-weight CLIP made now)")
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--queue-size", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--views", default="1x1")
    parser.add_argument("--video", type=Path, help="upload this file (default: a 48-frame 160x120 synthetic clip)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="serve-load-model-") as tmp:
        model = args.model
        if model is None:
            from openvocab.models.create import create_model_dir

            model = create_model_dir("tiny", Path(tmp) / "tiny")
        r = run_burst(model, requests=args.requests, queue_size=args.queue_size, workers=args.workers, frames=args.frames, views=args.views, video=args.video)
    r["machine"] = f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}"
    if args.json:
        print(json.dumps(r, indent=2))
        return

    def s(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f} s"

    print(
        f"openvocab serve, {r['requests']} concurrent uploads ({r['upload_bytes']} B), tiny CLIP, frames {r['frames']}, views {r['views']}, "
        f"--workers {r['workers']} --queue-size {r['queue_size']}  [{r['machine']}]"
    )
    print(
        f"  answered {r['answered']}: 200 x {r['ok_200']}, 503 x {r['busy_503']} ({r['busy_with_retry_after']} with Retry-After), other x {r['other_count']} {r['other']}"
    )
    print(f"  latency 200: p50 {s(r['latency_200_p50_s'])}, p95 {s(r['latency_200_p95_s'])}, max {s(r['latency_200_max_s'])}")
    print(f"  latency 503: p50 {s(r['latency_503_p50_s'])}, p95 {s(r['latency_503_p95_s'])}")
    print(f"  burst {r['burst_s']:.2f} s, throughput {r['throughput_200_per_s']:.2f} classified/s")
    print(f"  server RSS: before {r['rss_before_mb']:.0f} MB, peak {r['rss_peak_mb']:.0f} MB, after {r['rss_after_mb']:.0f} MB")
    print(f"  upload temp files left: {len(r['temp_files_left'])}")


if __name__ == "__main__":
    main()
