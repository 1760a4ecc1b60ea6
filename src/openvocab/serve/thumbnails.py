"""Frame thumbnails under the page's timeline (issue 10 part 2): one small JPEG at the middle of each segment.

Frames come from the library's decoder (:func:`openvocab.io.decode.open_video` ``.read(indices, max_short_side=)``:
one sequential pass, shrunk while decoding), JPEG from Pillow; no second decoder.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np

HEIGHT = 96  # pixels: a timeline row's thumbnail strip
QUALITY = 80


def frame_indices(times_s: Sequence[float], *, fps: float, num_frames: int) -> list[int]:
    """The frame shown at each time (the one whose display interval holds it), clamped to the video."""
    last = max(0, int(num_frames) - 1)
    return [min(last, max(0, int(float(t) * float(fps)))) for t in times_s]


def jpeg_data_url(frame: np.ndarray, *, height: int = HEIGHT, quality: int = QUALITY) -> str:
    """``data:image/jpeg;base64,...`` of an ``(H, W, 3)`` uint8 RGB frame, scaled down to ``height`` pixels high
    (never up)."""
    from PIL import Image

    image = Image.fromarray(np.ascontiguousarray(frame, dtype=np.uint8)).convert("RGB")
    if image.height > height:
        image = image.resize((max(1, round(image.width * height / image.height)), height), Image.Resampling.BILINEAR)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=quality)
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def segment_thumbnails(source, segments: Sequence[tuple[float, float]], *, height: int = HEIGHT) -> list[dict]:
    """``[{"time_s", "image"}]``, one per ``(start_s, end_s)`` segment, from a decoded ``source``
    (:class:`openvocab.io.decode.VideoSource`)."""
    if not segments:
        return []
    middles = [(float(a) + float(b)) / 2.0 for a, b in segments]
    info = source.info
    indices = frame_indices(middles, fps=info.fps, num_frames=info.num_frames)
    decoded = source.read(indices, max_short_side=height)
    return [{"time_s": round(t, 4), "image": jpeg_data_url(f, height=height)} for t, f in zip(middles, decoded.frames)]
