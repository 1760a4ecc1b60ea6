"""``openvocab evaluate``: a zero-shot CLIP or a trained recogniser on a labelled dataset, under a protocol.

* the model: anything :func:`openvocab.models.factory.load_recognizer` loads -- a CLIP checkpoint (zero-shot: TAP
  of CLIP frame embeddings) or a training run directory (its spec and latest checkpoint);
* the classes: the dataset's own names, embedded the way the model's classifier was built (CLIP prompts, or the
  other text encoder plus the learned visual projection) -- so a Kinetics-trained model is evaluated on UCF101 /
  HMDB51 / ActivityNet / Kinetics-600 classes it never saw (Text4Vis Table 4);
* protocols (:mod:`openvocab.eval.protocols`): ``full``, ``half`` (half the classes × 10 trials, mean ± std),
  ``k600`` (3 split files of 160 classes) and ``base-novel`` (MOV Tables 1-3: the base-class test videos among the
  base classes, the novel-class test videos (``novel_manifest``) among the novel classes, and the harmonic mean of
  the two top-1 accuracies); multi-view: per-view probabilities averaged (the one rule of :mod:`openvocab.scoring`,
  as ``classify`` and the trainer's validation);
* MOV runs (fusion ``mov`` / ``score``) read flow (from ``flow_cache`` when it has the video) and audio as in
  training and score with MOV's rules: Eq. 10 when every evaluated class is a training class, Eq. 11-12 otherwise
  (the same decision as ``classify``; :func:`mov_score`);
* the full protocol also reports mAP (ActivityNet's metric, Table 2) on the per-video softmax; untrimmed videos with
  several labels (ActivityNet ``videos`` mode) are scored multi-label: top-k is hit@k, no mean-class accuracy;
* multi-label datasets (some video has several labels, or ``multi_label=True``): also the multi-label paper's
  metrics (§4.4) on the calibrated scores ``σ(a·cos + b)`` of the model's calibration (:mod:`openvocab.calibration`):
  ``result.multi_label`` = micro AUPR over video-label pairs, per-class mAP, peak F1 and its oracle threshold, and F1
  at the calibration's threshold (:func:`openvocab.eval.multilabel.multilabel_metrics`);
* outputs: a JSON result, and optionally the confusion-matrix and class-correlation plots (Fig. 1 / A.5) and, for a
  multi-label dataset, Fig. 6-style F1-vs-threshold and precision-recall curves.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.data.manifests import Manifest
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec

log = logging.getLogger(__name__)


def load_run(run_dir: str | Path, *, device: str = "cpu"):
    """A trained recogniser from a run directory (:func:`openvocab.models.factory.load_recognizer`)."""
    from openvocab.models.factory import is_run_dir, load_recognizer

    run = Path(run_dir).expanduser()
    if not is_run_dir(run):
        raise InputError("is not a training run directory (no config.yaml and 'latest' checkpoint)", path=run)
    return load_recognizer(run, device=device)


def class_embeddings(model, names: Sequence[str]) -> torch.Tensor:
    """Embeddings of ``names`` in the space of the model's classifier, by its label encoder (for open-vocabulary
    evaluation: CLIP text + the run's prompts, the sentence encoder; a closed-set head only knows its own classes)."""
    encoder = model.label_encoder
    if encoder is None or not encoder.open_vocabulary:
        own = model.class_names
        if encoder is not None and list(names) == own:
            return encoder.encode(list(names))
        raise InputError(f"a '{model.spec.classifier}' classifier has no text encoder: it can only be evaluated on its own training classes")
    return encoder.encode(list(names))


@torch.inference_mode()
def video_embeddings(
    model,
    manifest: Manifest,
    *,
    sampler: SamplerSpec,
    batch_size: int = 8,
    workers: int = 2,
    device: str = "cpu",
    flow_cache: str | None = None,
    multi_label: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, views, D)`` per-view video embeddings in the classifier's space (scored by
    :func:`openvocab.scoring.clip_scores`: probabilities averaged over views), the targets of the decodable
    videos (class indices ``(N,)``, or multi-hot ``(N, C)`` when some video has several labels or ``multi_label``)
    and their record indices in the manifest ``(N,)``."""
    multi = any(len(r.labels) > 1 for r in manifest.records) if multi_label is None else bool(multi_label)
    inputs = model.spec.input_settings(flow_cache=flow_cache)
    ds = VideoClipDataset(
        manifest.records, sampler=sampler, clip=model.backbone.image_spec, multi_label=multi, num_classes=len(manifest.classes), inputs=inputs
    )
    embs, targets, index = [], [], []
    for batch in DataLoader(ds, batch_size=batch_size, num_workers=workers, collate_fn=collate_skip_failed):
        if batch["inputs"] is None:
            continue
        embs.append(view_embeddings(model, batch["inputs"], device=device).cpu())
        targets.append(batch["target"])
        index.append(batch["index"])
    if not embs:
        raise InputError("no video of the dataset could be decoded", path=manifest.source)
    return torch.cat(embs), torch.cat(targets), torch.cat(index)


def view_embeddings(model, inputs: dict, *, device: str = "cpu") -> torch.Tensor:
    """Batched test views ``{modality: (B, crops, views, T, ...)}`` -> ``(B, crops·views, D)`` embeddings in the
    classifier's space (the trainer's validation and ``openvocab evaluate`` share this); a MOV run's three embeddings
    packed as ``(B, crops·views, 3, D)``."""
    first = next(iter(inputs.values()))
    b, c, v = first.shape[:3]
    flat = {k: x.to(device).reshape(b * c * v, *x.shape[3:]) for k, x in inputs.items()}
    out = model(flat, embed=True)
    if getattr(model, "fused_outputs", False):
        return out.stack().float().reshape(b, c * v, 3, -1)
    return out.float().reshape(b, c * v, -1)


def mov_score(model, names: Sequence[str], *, beta: float | None = None, tau_video: float | None = None):
    """MOV's scoring of packed per-view embeddings ``(N, views, 3, D)`` against classes -> ``(N, C)`` clip scores, and
    the rule's name: Eq. 10 (score fusion: both streams averaged) when every one of ``names`` is a training class,
    Eq. 11-12 otherwise (as ``classify``); per-view probabilities averaged. ``None`` for other recognisers."""
    import functools

    from openvocab.scoring import MOV_BETA, MOV_TAU_VIDEO, average_views, mov_probabilities

    if not getattr(model, "fused_outputs", False):
        return None, None
    rule = model.mov_rule(names)
    probs = functools.partial(
        mov_probabilities,
        rule=rule,
        tau=1.0 / model.logit_scale,
        tau_video=MOV_TAU_VIDEO if tau_video is None else tau_video,
        beta=MOV_BETA if beta is None else beta,
    )
    return (lambda videos, classes: average_views(probs(videos, classes), dim=-2)), rule


def evaluate(
    *,
    model_source: str,
    manifest: Manifest,
    protocol: str = "full",
    sampler: SamplerSpec = SamplerSpec(),
    trials: int = 10,
    seed: int = 0,
    split_files: Sequence[str] = (),
    batch_size: int = 8,
    workers: int = 2,
    device: str = "cpu",
    plots: str | Path | None = None,
    predictions: str | Path | None = None,
    novel_manifest: Manifest | None = None,
    flow_cache: str | None = None,
    mov_beta: float | None = None,
    mov_tau_video: float | None = None,
    multi_label: bool | None = None,
    calibration: str | Path | None = None,
    prompts: str | None = None,
    template: str | None = None,
    llm: str | None = None,
) -> dict:
    """Run one protocol; returns a JSON-able dict (see the module docstring). ``predictions``: also write a CSV
    with one row per scored video (path, true labels, predicted label, its score), atomically. ``novel_manifest``:
    the novel-class test videos of the ``base-novel`` protocol (``manifest`` holds the base-class ones).
    ``multi_label``: score multi-label (default: when some video has several labels); ``calibration``: the
    ``calibration.json`` whose ``σ(a·cos + b)`` and threshold to evaluate (default: the model's own). ``prompts`` /
    ``template`` / ``llm``: the label encoder of a zero-shot CLIP (class name, templates, fixed LLM attributes: the
    frozen baselines of open-vocabulary multi-label Table 1), as :func:`~openvocab.models.factory.load_recognizer`."""
    from openvocab.eval import protocols
    from openvocab.models.factory import load_recognizer

    if protocol not in ("full", "half", "k600", "base-novel"):
        raise InputError(f"unknown protocol '{protocol}' (full, half, k600, base-novel)")
    if protocol == "base-novel" and novel_manifest is None:
        raise InputError("the base-novel protocol needs the novel-class test videos (--novel-data)")
    from openvocab.calibration import Calibration, calibration_of

    multi = bool(multi_label) or any(len(r.labels) > 1 for r in manifest.records)  # video_embeddings then gives multi-hot targets
    if multi and protocol != "full":
        raise InputError(f"the {protocol} protocol needs single-label videos, and some of {manifest.source} have several labels (use the full protocol)")
    cal = Calibration.read(calibration) if calibration is not None else None  # a bad file fails before the long part
    if multi:
        from openvocab.eval.calibrate import check_multilabel_manifest

        manifest, notes = check_multilabel_manifest(manifest)
        for note in notes:
            log.warning("%s", note)
    model = load_recognizer(model_source, device=device, prompts=prompts, template=template, llm=llm).eval()
    scale = model.logit_scale
    names = manifest.class_names(normalised=True)
    classes = class_embeddings(model, names)
    embed = dict(sampler=sampler, batch_size=batch_size, workers=workers, device=device, flow_cache=flow_cache)
    videos, targets, index = video_embeddings(model, manifest, multi_label=multi, **embed)
    score, rule = mov_score(model, names, beta=mov_beta, tau_video=mov_tau_video)
    scores = _scores(videos, classes, scale, score)
    if predictions is not None:
        _write_predictions(predictions, manifest, index, scores, names)
    result: dict = {
        "model": model_source,
        "dataset": manifest.source,
        "protocol": protocol,
        "videos": int(targets.shape[0]),
        "classes": len(names),
        "views": f"{sampler.temporal_views}x{sampler.spatial_crops}",
        "frames": sampler.frames,
    }
    if rule is not None:
        result["scoring"] = rule
    if multi:
        result["multi_label"] = True
    curves = None
    if protocol == "full":
        result["result"] = _full_with_map(videos, targets, classes, scale, score)
        if multi and score is None:  # the multi-label paper's metrics on the calibrated sigmoid scores
            from openvocab.eval.multilabel import f1_curve, multilabel_metrics
            from openvocab.scoring import clip_scores

            cal = cal if cal is not None else calibration_of(model)
            sig = clip_scores(videos, classes, logit_scale=cal.scale, multi_label=True, bias=cal.bias)
            result["calibration"] = cal.summary()
            result["result"]["multi_label"] = {"scores": "sigmoid(a*cos + b), averaged over views", **multilabel_metrics(sig, targets, threshold=cal.threshold)}
            curves = {Path(manifest.source).name: f1_curve(sig, targets)}
        elif multi:
            result["result"]["multi_label_note"] = "a MOV run has no multi-label scores (Eq. 10-12 are softmaxes): AUPR / F1 not computed"
    elif protocol == "half":
        result["result"] = protocols.half_class_protocol(videos, targets, classes, trials=trials, seed=seed, logit_scale=scale, score=score).to_dict()
    elif protocol == "k600":
        if not split_files:
            raise InputError("the k600 protocol needs --split-files (the three files of 160 class names)")
        result["result"] = protocols.kinetics600_novel_protocol(
            videos, targets, classes, class_names=names, split_files=list(split_files), logit_scale=scale, score=score
        ).to_dict()
    else:
        result["result"] = _base_novel(model, manifest, novel_manifest, videos, targets, classes, scale, score, embed, beta=mov_beta, tau_video=mov_tau_video)
    if plots is not None:
        from openvocab.eval.metrics import confusion_matrix
        from openvocab.eval.plots import plot_class_correlation, plot_confusion_matrix

        out = Path(plots).expanduser()
        result["plots"] = []
        if curves is not None:  # Fig. 6: F1 against the threshold, the calibrated one marked; precision-recall
            from openvocab.eval.plots import plot_f1_thresholds, plot_precision_recall

            result["plots"].append(str(plot_f1_thresholds(curves, out / "f1_threshold.png", threshold=cal.threshold, threshold_label=cal.source)))
            result["plots"].append(str(plot_precision_recall(curves, out / "precision_recall.png")))
        if not multi:  # a confusion matrix needs one true class per video
            plot_confusion_matrix(confusion_matrix(scores, targets, len(names)), names, out / "confusion_matrix.png")
            result["plots"].append(str(out / "confusion_matrix.png"))
        plot_class_correlation(classes, names, out / "class_correlation.png")
        result["plots"].append(str(out / "class_correlation.png"))
    return result


def _scores(videos: torch.Tensor, classes: torch.Tensor, scale: float, score) -> torch.Tensor:
    from openvocab.scoring import clip_scores

    return clip_scores(videos, classes, logit_scale=scale) if score is None else score(videos, classes)


def _base_novel(model, base_m: Manifest, novel_m: Manifest, videos, targets, classes, scale: float, score, embed: dict, *, beta, tau_video) -> dict:
    """MOV Tables 1-3: top-1 of the base-class test videos among the base classes, of the novel-class test videos among
    the novel classes (a MOV run: Eq. 10 and Eq. 11-12), and their harmonic mean."""
    from openvocab.eval import protocols

    novel_names = novel_m.class_names(normalised=True)
    overlap = sorted(set(novel_names) & set(base_m.class_names(normalised=True)))
    if overlap:
        raise InputError(
            f"base and novel classes overlap ({', '.join(overlap[:5])}): pass the novel-class test videos with their own vocabulary", path=novel_m.source
        )
    novel_classes = class_embeddings(model, novel_names)
    nv, nt, _ = video_embeddings(model, novel_m, **embed)
    novel_score, _ = mov_score(model, novel_names, beta=beta, tau_video=tau_video)
    base = protocols.full_protocol(videos, targets, classes, logit_scale=scale, score=score).to_dict()
    novel = protocols.full_protocol(nv, nt, novel_classes, logit_scale=scale, score=novel_score).to_dict()
    b, n = base["top1"], novel["top1"]
    return {"base": base, "novel": novel, "base_top1": b, "novel_top1": n, "harmonic_mean": 2 * b * n / (b + n) if b + n > 0 else 0.0}


def _write_predictions(path: str | Path, manifest: Manifest, index: torch.Tensor, scores: torch.Tensor, names: Sequence[str]) -> None:
    import csv
    import io

    from openvocab.atomic import atomic_write

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "labels", "predicted", "score"])
    best, top = scores.max(dim=-1)
    for i, p, s in zip(index.tolist(), top.tolist(), best.tolist()):
        record = manifest.records[i]
        writer.writerow([record.path, "|".join(names[j] for j in record.labels), names[p], f"{s:.6f}"])
    try:
        atomic_write(Path(path).expanduser(), buf.getvalue())
    except OSError as exc:
        raise InputError(f"cannot write predictions ({exc.strerror or exc})", path=path) from None


def _full_with_map(videos: torch.Tensor, targets: torch.Tensor, classes: torch.Tensor, scale: float, score=None) -> dict:
    """The full protocol's accuracies plus ``map`` (mean over classes with a positive video of the average precision
    of the per-video scores (softmax per view, averaged over views); Text4Vis Table 2); for multi-hot targets top-k is hit@k and there is no
    mean-class accuracy."""
    from openvocab.eval import protocols
    from openvocab.eval.metrics import mean_average_precision, topk_accuracy

    probs = _scores(videos, classes, scale, score)
    if targets.ndim == 1:
        out = protocols.full_protocol(videos, targets, classes, logit_scale=scale, score=score).to_dict()
    else:
        acc = topk_accuracy(probs, targets, ks=(1, 5))
        out = {"top1": acc[1], "top5": acc[5], "num_videos": int(targets.shape[0]), "num_classes": int(classes.shape[0])}
    out["map"] = mean_average_precision(probs, targets)
    return out


EVAL_RECIPE_KEYS = {
    "data": str,
    "model": str,
    "format": str,
    "root": str,
    "classes": str,
    "split": int,
    "protocol": str,
    "trials": int,
    "seed": int,
    "split_files": list,
    "frames": int,
    "sampler": str,
    "stride": int,
    "views": str,
    "batch_size": int,
    "workers": int,
    "device": str,
    "val_mode": str,
    "novel_data": str,
    "flow_cache": str,
    "mov_beta": float,
    "mov_tau_video": float,
    "calibration": str,
    "prompts": str,
    "template": str,
    "llm": str,
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
