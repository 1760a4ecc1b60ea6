"""Step 1 of the synthetic label pipeline (appendix I): captions for a video. A captioner is any
``video path -> list[str]`` callable; two come with openvocab:

* :class:`CaptionFile` -- captions a user already has (many datasets ship captions; or another captioning run):
  a JSONL file of ``{"path": ..., "captions": [...]}`` rows (``"caption": "..."`` rows may repeat a path) or a CSV
  with ``path`` and ``caption`` columns;
* :class:`FrameCaptioner` -- any transformers image-to-text model (BLIP, GIT, ...: ``AutoProcessor`` +
  ``AutoModelForImageTextToText``, a hub id or a local directory) on ``frames`` uniformly sampled frames, one caption
  per frame (the paper captions with IDEFICS / LLaVA; the listing shows eight captions per video).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Sequence
from pathlib import Path

from openvocab.errors import InputError


def _key(path: str | os.PathLike[str], base: Path | None = None) -> str:
    p = Path(os.path.expanduser(str(path)))
    if not p.is_absolute() and base is not None:
        p = base / p
    return os.path.normpath(str(p.absolute()))


class CaptionFile:
    """Captions from a JSONL or CSV file (module docstring). Paths in the file resolve against the file's folder;
    a video is found by its resolved path, else by its file name (``clip.mp4``) when that is unique in the file.
    A video the file has no caption for raises :class:`InputError` (the pipeline records it and goes on)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path).expanduser()
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the captions file ({exc.__class__.__name__})", path=self.path) from None
        rows = self._jsonl(text) if self.path.suffix.lower() in (".jsonl", ".json") else self._csv(text)
        base = self.path.parent
        self.by_path: dict[str, list[str]] = {}
        for video, captions in rows:
            self.by_path.setdefault(_key(video, base), []).extend(" ".join(c.split()) for c in captions if str(c).strip())
        names: dict[str, list[str]] = {}
        for key in self.by_path:
            names.setdefault(Path(key).name, []).append(key)
        self.by_name = {name: keys[0] for name, keys in names.items() if len(keys) == 1}
        if not self.by_path:
            raise InputError("the captions file has no captions", path=self.path)

    def _jsonl(self, text: str) -> list[tuple[str, list[str]]]:
        rows = []
        for line, raw in enumerate(text.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw)
            except ValueError:
                raise InputError(f"line {line}: not valid JSON", path=self.path) from None
            video = obj.get("path") if isinstance(obj, dict) else None
            captions = obj.get("captions", [obj.get("caption")] if "caption" in obj else None) if isinstance(obj, dict) else None
            if not isinstance(video, str) or not isinstance(captions, list) or not all(isinstance(c, str) for c in captions):
                raise InputError(f'line {line}: expected {{"path": str, "captions": [str, ...]}} (or "caption": str)', path=self.path)
            rows.append((video, captions))
        return rows

    def _csv(self, text: str) -> list[tuple[str, list[str]]]:
        reader = csv.DictReader(io.StringIO(text))
        if not reader.fieldnames or "path" not in reader.fieldnames or "caption" not in reader.fieldnames:
            raise InputError("a captions CSV needs 'path' and 'caption' columns", path=self.path)
        return [(row["path"], [row["caption"] or ""]) for row in reader if row.get("path")]

    def __call__(self, video: str) -> list[str]:
        key = _key(video)
        found = self.by_path.get(key)
        if found is None and Path(key).name in self.by_name:
            found = self.by_path[self.by_name[Path(key).name]]
        if not found:
            raise InputError(f"no captions in {self.path}", path=video)
        return list(found)


class FrameCaptioner:
    """An image-to-text model on ``frames`` uniformly sampled frames of the video, one caption per frame (duplicate
    captions kept once). Loads on first use; a missing model or an unusable processor is one clear line."""

    def __init__(self, source: str, *, frames: int = 8, max_new_tokens: int = 30, device: str = "cpu") -> None:
        if frames < 1:
            raise InputError(f"--caption-frames must be >= 1, got {frames}")
        self.source = source
        self.frames = frames
        self.max_new_tokens = max_new_tokens
        self.device = device
        self._model = None
        self._processor = None

    def _load(self) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            self._processor = AutoProcessor.from_pretrained(self.source)
            self._model = AutoModelForImageTextToText.from_pretrained(self.source).to(self.device).eval()
        except (OSError, ValueError, KeyError) as exc:
            raise InputError(f"cannot load an image-to-text captioning model ({str(exc).splitlines()[0][:200]})", path=self.source) from None

    def caption_images(self, images: Sequence) -> list[str]:
        """Captions of ``(H, W, 3)`` uint8 RGB images, one each."""
        import torch

        if self._model is None:
            self._load()
        inputs = self._processor(images=list(images), return_tensors="pt").to(self.device)
        with torch.inference_mode():
            out = self._model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return [" ".join(text.split()) for text in self._processor.batch_decode(out, skip_special_tokens=True)]

    def __call__(self, video: str) -> list[str]:
        from openvocab.io.decode import open_video
        from openvocab.io.sampling import SamplerSpec, sample_indices

        source = open_video(video)
        indices = sample_indices(SamplerSpec(kind="uniform", frames=self.frames), source.info.num_frames).reshape(-1)
        frames = source.read(sorted(set(indices.tolist())), max_short_side=384).frames
        return list(dict.fromkeys(c for c in self.caption_images(list(frames)) if c))
