"""``openvocab evaluate``: a zero-shot CLIP or a trained recogniser on a labelled dataset, under a protocol.

* the model: a CLIP checkpoint (zero-shot: TAP of CLIP frame embeddings) or a training run directory (its
  ``config.yaml`` and latest checkpoint);
* the classes: the dataset's own names, embedded the way the model's classifier was built (CLIP prompts, or the
  other text encoder plus the learned visual projection) -- so a Kinetics-trained model is evaluated on UCF101 /
  HMDB51 / ActivityNet / Kinetics-600 classes it never saw (Text4Vis Table 4);
* protocols (:mod:`openvocab.eval.protocols`): ``full``, ``half`` (half the classes × 10 trials, mean ± std) and
  ``k600`` (3 split files of 160 classes); multi-view: per-view L2-normalised embeddings averaged;
* the full protocol also reports mAP (ActivityNet's metric, Table 2) on the per-video softmax; untrimmed videos with
  several labels (ActivityNet ``videos`` mode) are scored multi-label: top-k is hit@k, no mean-class accuracy;
* outputs: a JSON result, and optionally the confusion-matrix and class-correlation plots (Fig. 1 / A.5).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from torch.utils.data import DataLoader

from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.data.manifests import Manifest
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec

log = logging.getLogger(__name__)


def load_run(run_dir: str | Path, *, device: str = "cpu"):
    """A trained :class:`~openvocab.models.recognizer.VideoRecognizer` and its recipe, from a run directory."""
    from openvocab.train.checkpoint import load_checkpoint, resolve_checkpoint
    from openvocab.train.config import load_config
    from openvocab.train.trainer import build_model

    run = Path(run_dir).expanduser()
    if not (run / "config.yaml").is_file():
        raise InputError("is not a training run directory (no config.yaml)", path=run)
    cfg = load_config(run / "config.yaml")
    step_dir = resolve_checkpoint(run)
    state = json.loads((step_dir / "trainer_state.json").read_text())
    class_names = state.get("extra", {}).get("class_names")
    if not class_names:
        raise InputError("checkpoint carries no class names", path=step_dir)
    arch_check = True
    if cfg.model.classifier == "lda":  # W̃ comes from the checkpoint: build the same frozen head shape, then load
        cfg.model.classifier, arch_check = "normal", False
    model = build_model(cfg, list(class_names), device=device)
    load_checkpoint(run, model=model, arch=model.spec.to_dict() if arch_check else None, restore_rng=False)
    if not arch_check:
        cfg.model.classifier = "lda"
    return model.eval(), cfg, list(class_names)


def class_embeddings(model, cfg, names: Sequence[str]) -> torch.Tensor:
    """Embeddings of ``names`` in the space of the model's classifier (for open-vocabulary evaluation)."""
    from openvocab.models.heads import sentence_weights, text_weights
    from openvocab.text.prompts import load_templates_file, prompt_set

    kind = "text" if cfg is None else cfg.model.classifier
    if kind == "text":
        if cfg is None or cfg.model.prompts in {"single", "ensemble", "classname"}:
            prompts = prompt_set("ensemble" if cfg is None else cfg.model.prompts, template=None if cfg is None else cfg.model.template)  # type: ignore[arg-type]
        else:
            prompts = load_templates_file(cfg.model.prompts)
        backbone = model if cfg is None else model.backbone
        return text_weights(backbone, names, prompts)
    if kind == "sentence":
        return sentence_weights(cfg.model.sentence_encoder, names)
    raise InputError(f"a '{kind}' classifier has no text encoder: it can only be evaluated on its own training classes")


@torch.inference_mode()
def video_embeddings(model, cfg, manifest: Manifest, *, sampler: SamplerSpec, batch_size: int = 8, workers: int = 2, device: str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, D)`` video embeddings (views: mean of L2-normalised view embeddings) and targets of the decodable videos:
    class indices ``(N,)``, or multi-hot ``(N, C)`` when some video has several labels."""
    from openvocab.models.backbone import ClipBackbone

    backbone = model if isinstance(model, ClipBackbone) else model.backbone
    spec = backbone.image_spec
    multi = any(len(r.labels) > 1 for r in manifest.records)
    ds = VideoClipDataset(manifest.records, sampler=sampler, clip=spec, multi_label=multi, num_classes=len(manifest.classes))
    embs, targets = [], []
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_failed):
        if batch["pixels"] is None:
            continue
        px = batch["pixels"].to(device)  # (B, C, V, T, 3, S, S)
        b, c, v, t = px.shape[:4]
        flat = px.reshape(b * c * v, t, *px.shape[4:])
        if isinstance(model, ClipBackbone):
            e = model.encode_frames(flat.reshape(-1, *flat.shape[2:])).reshape(b * c * v, t, -1).mean(1)
        else:
            e = model(flat, embed=True)
        e = torch.nn.functional.normalize(e.float(), dim=-1).reshape(b, c * v, -1).mean(1)
        embs.append(e.cpu())
        targets.append(batch["target"])
    if not embs:
        raise InputError("no video of the dataset could be decoded", path=manifest.source)
    return torch.cat(embs), torch.cat(targets)


def evaluate(*, model_source: str, manifest: Manifest, protocol: str = "full", sampler: SamplerSpec = SamplerSpec(), trials: int = 10, seed: int = 0, split_files: Sequence[str] = (), batch_size: int = 8, workers: int = 2, device: str = "cpu", plots: str | Path | None = None) -> dict:
    """Run one protocol; returns a JSON-able dict (see the module docstring)."""
    from openvocab.eval import protocols
    from openvocab.models.backbone import ClipBackbone

    source = Path(model_source).expanduser()
    if (source / "config.yaml").is_file() and (source / "latest").is_file():
        model, cfg, run_names = load_run(source, device=device)
        scale = float(getattr(model.head, "logit_scale", 100.0))
    else:
        model, cfg, run_names = ClipBackbone.from_pretrained(model_source, device=device), None, []
        scale = model.logit_scale
    names = manifest.class_names(normalised=True)
    if cfg is not None and cfg.model.classifier in {"normal", "orthogonal", "lda"} and names == run_names:
        classes = model.head.weight  # a closed-set frozen classifier, evaluated on its own classes
    else:
        classes = class_embeddings(model, cfg, names)
    multi = any(len(r.labels) > 1 for r in manifest.records)  # video_embeddings then gives multi-hot targets
    if multi and protocol != "full":
        raise InputError(f"the {protocol} protocol needs single-label videos, and some of {manifest.source} have several labels (use the full protocol)")
    videos, targets = video_embeddings(model, cfg, manifest, sampler=sampler, batch_size=batch_size, workers=workers, device=device)
    result: dict = {"model": model_source, "dataset": manifest.source, "protocol": protocol, "videos": int(targets.shape[0]), "classes": len(names), "views": f"{sampler.temporal_views}x{sampler.spatial_crops}", "frames": sampler.frames}
    if multi:
        result["multi_label"] = True
    if protocol == "full":
        result["result"] = _full_with_map(videos, targets, classes, scale)
    elif protocol == "half":
        result["result"] = protocols.half_class_protocol(videos, targets, classes, trials=trials, seed=seed, logit_scale=scale).to_dict()
    elif protocol == "k600":
        if not split_files:
            raise InputError("the k600 protocol needs --split-files (the three files of 160 class names)")
        result["result"] = protocols.kinetics600_novel_protocol(videos, targets, classes, class_names=names, split_files=list(split_files), logit_scale=scale).to_dict()
    else:
        raise InputError(f"unknown protocol '{protocol}' (full, half, k600)")
    if plots is not None:
        from openvocab.eval.metrics import confusion_matrix
        from openvocab.eval.plots import plot_class_correlation, plot_confusion_matrix
        from openvocab.scoring import similarity_logits

        out = Path(plots).expanduser()
        result["plots"] = []
        if not multi:  # a confusion matrix needs one true class per video
            scores = similarity_logits(videos, classes, logit_scale=scale)
            plot_confusion_matrix(confusion_matrix(scores, targets, len(names)), names, out / "confusion_matrix.png")
            result["plots"].append(str(out / "confusion_matrix.png"))
        plot_class_correlation(classes, names, out / "class_correlation.png")
        result["plots"].append(str(out / "class_correlation.png"))
    return result


def _full_with_map(videos: torch.Tensor, targets: torch.Tensor, classes: torch.Tensor, scale: float) -> dict:
    """The full protocol's accuracies plus ``map`` (mean over classes with a positive video of the average precision
    of the per-video softmax scores; Text4Vis Table 2); for multi-hot targets top-k is hit@k and there is no
    mean-class accuracy."""
    from openvocab.eval import protocols
    from openvocab.eval.metrics import mean_average_precision, topk_accuracy
    from openvocab.scoring import similarity_logits

    probs = similarity_logits(videos, classes, logit_scale=scale).float().softmax(-1)
    if targets.ndim == 1:
        out = protocols.full_protocol(videos, targets, classes, logit_scale=scale).to_dict()
    else:
        acc = topk_accuracy(probs, targets, ks=(1, 5))
        out = {"top1": acc[1], "top5": acc[5], "num_videos": int(targets.shape[0]), "num_classes": int(classes.shape[0])}
    out["map"] = mean_average_precision(probs, targets)
    return out


EVAL_RECIPE_KEYS = {
    "data": str, "model": str, "format": str, "root": str, "classes": str, "split": int, "protocol": str, "trials": int,
    "seed": int, "split_files": list, "frames": int, "sampler": str, "stride": int, "views": str, "batch_size": int,
    "workers": int, "device": str, "val_mode": str,
}


def load_eval_recipe(path: str | Path) -> dict:
    """An evaluation recipe: a YAML file with one ``evaluate:`` mapping of ``openvocab evaluate`` options.

    Used for the rows of Text4Vis Table 4 (one file per dataset and protocol). Unknown keys and ill-typed values
    are refused with one line naming the file and the key.
    """
    import yaml

    p = Path(path)
    if not p.is_file():
        raise InputError("no such evaluation recipe", path=p)
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        raise InputError("not valid YAML", path=p) from None
    section = data.get("evaluate") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise InputError("an evaluation recipe needs an 'evaluate:' mapping", path=p)
    for key, value in section.items():
        kind = EVAL_RECIPE_KEYS.get(key)
        if kind is None:
            raise InputError(f"unknown key 'evaluate.{key}' (known: {', '.join(EVAL_RECIPE_KEYS)})", path=p)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise InputError(f"evaluate.{key} must be a {kind.__name__}, got {value!r}", path=p)
    return section
