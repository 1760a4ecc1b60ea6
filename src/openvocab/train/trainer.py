"""The training loop of Text4Vis (and, later, MOV and multi-label recipes built from the same parts).

One function, :func:`train`, runs a recipe (:class:`~openvocab.train.config.TrainConfig`):

* model: CLIP vision tower + temporal module + classifier head (:mod:`openvocab.models.recognizer`);
* loss: CE on the frozen classifier's logits (Eq. 3) or the contrastive baseline (Eq. 2 with the batch gather of
  Algorithm 1, the class texts encoded offline = the frozen ``W̃`` rows);
* AdamW (β 0.9/0.98, wd 0.2, none on norms/biases), linear warm-up + cosine, gradient accumulation, gradient
  checkpointing, bf16/fp16 autocast on CUDA;
* DDP under ``torchrun`` (gloo on CPU, nccl on GPU) with a resumable distributed sampler;
* checkpoints (safetensors + JSON, atomic) with exact resume: model, optimiser, scheduler, sampler position, RNG;
* ``model.init_from``: the video side initialised from a previous run (e.g. Kinetics-400 -> ActivityNet, Table 2);
* validation: top-1/top-5, mean-class accuracy and mAP (multi-label aware: untrimmed ActivityNet videos);
* a JSONL metrics log and a progress bar.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from openvocab.data.dataset import VideoClipDataset, collate_skip_failed
from openvocab.errors import InputError
from openvocab.io.sampling import SamplerSpec, parse_views
from openvocab.io.transforms import ImageSpec
from openvocab.models.backbone import ClipBackbone
from openvocab.models.factory import create_recognizer
from openvocab.models.heads import FrozenClassifier
from openvocab.models.recognizer import VideoRecognizer
from openvocab.models.spec import RecognizerSpec
from openvocab.train.config import TrainConfig, save_config
from openvocab.train.data_setup import DecodeTally, TrainingClips, collate_training_clips, load_splits
from openvocab.train.losses import distributed_infonce, mov_loss, multilabel_bce
from openvocab.train.samplers import ResumableDistributedSampler, batch_classes, few_shot_indices, repeat_to_length
from openvocab.train.schedule import build_adamw, cosine_with_warmup

log = logging.getLogger(__name__)


@dataclass
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device: str) -> DistInfo:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.startswith("cuda") else "gloo")
    return DistInfo(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def _device(cfg: TrainConfig, dist: DistInfo) -> str:
    if cfg.run.device != "auto":
        return cfg.run.device
    if torch.cuda.is_available():
        return f"cuda:{dist.local_rank}"
    return "cpu"


def _precision(cfg: TrainConfig, device: str) -> str:
    if cfg.optim.precision == "auto":
        return "bf16" if device.startswith("cuda") else "fp32"
    return cfg.optim.precision


def _autocast(cfg: TrainConfig, device: str):
    precision = _precision(cfg, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device_type="cuda" if device.startswith("cuda") else "cpu", dtype=dtype)


def seed_everything(seed: int) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def build_model(cfg: TrainConfig, class_names: list[str], *, device: str, lda_data=None) -> VideoRecognizer:
    """The recogniser the recipe trains, from the library's factory (the classifier weights are deterministic)."""
    return create_recognizer(
        cfg.recognizer_spec(len(class_names)),
        class_names=class_names,
        device=device,
        lda=lda_data,
        seed=cfg.run.seed,
        gradient_checkpointing=cfg.model.gradient_checkpointing,
    )


# Architecture fields of the saved run that the new recipe must share for model.init_from (the video side's shape);
# classes, classifier, frames (T-Trans positions cover up to 64), training switches and t1d_init may differ.
_INIT_FROM_MUST_MATCH = ("model", "temporal", "temporal_layers", "token_t1d_blocks", "t1d_stages", "branch_blocks")
# The text side of CLIP (it built this run's frozen classifier) and the head (this run's classes) are not loaded.
_INIT_FROM_TEXT_SIDE = (".backbone.clip.text_model.", ".backbone.clip.text_projection", ".backbone.clip.logit_scale")


def _init_from_loads(key: str) -> bool:
    return not key.startswith("head.") and not any(part in key for part in _INIT_FROM_TEXT_SIDE)


def init_from_run(model: VideoRecognizer, source: str | Path) -> dict:
    """``model.init_from``: initialise the video side of ``model`` -- CLIP's vision tower and projection, the
    temporal module, TokenT1D / CLIP-ResNet T1D -- from the latest checkpoint of a previous ``openvocab train`` run
    (or from one of its ``step_*`` directories), e.g. Text4Vis' Kinetics-400 model before fine-tuning on
    ActivityNet (Table 2). The head (classes differ) and CLIP's text side (it already built this run's frozen
    classifier) stay as built. Not a resume: the caller starts optimiser, schedule and step from scratch.

    The saved architecture must agree on :data:`_INIT_FROM_MUST_MATCH`; otherwise, or for a missing run, a shape
    mismatch or a missing tensor: one-line :class:`InputError`. Returns what :func:`load_model_subset` returns.
    """
    from openvocab.models.checkpoint import load_model_subset, read_trainer_state

    try:
        step_dir, state = read_trainer_state(Path(source).expanduser())
    except InputError as exc:
        raise InputError(f"model.init_from: {exc}") from None
    saved_streams = RecognizerSpec.from_dict(state.get("arch") or {}).to_dict()["streams"]
    mine_streams = model.spec.to_dict()["streams"]
    for name, mine in mine_streams.items():
        saved = saved_streams.get(name)
        where = "model" if name == model.spec.primary else f"model.{name}"
        if saved is None:
            raise InputError(f"model.init_from: {step_dir} has no stream '{name}' (it has {', '.join(saved_streams)})")
        for key in _INIT_FROM_MUST_MATCH:
            if key == "temporal_layers" and mine["temporal"] != "ttrans":
                continue  # only T-Trans has layers
            if key == "branch_blocks" and mine["temporal"] not in ("parallel", "serial"):
                continue  # only a temporal branch has blocks
            if saved[key] != mine[key]:
                raise InputError(
                    f"model.init_from: {step_dir} was trained with {where}.{key}={saved[key]!r}, this recipe has {where}.{key}={mine[key]!r}; they must match"
                )
    result = load_model_subset(step_dir, model=model, keep=_init_from_loads)
    groups: dict[str, int] = {}
    for key in result["loaded"]:
        part = "vision tower" if ".backbone." in key else key.split(".")[2] if key.startswith("streams.") else key.split(".")[0]
        groups[part] = groups.get(part, 0) + 1
    head = sum(k.startswith("head.") for k in result["skipped"])
    text = len(result["skipped"]) - head
    log.info(
        "initialised from %s (step %s): loaded %s; kept as built: head (%d tensors, this run's %d classes), CLIP text side (%d tensors)",
        step_dir,
        state.get("step"),
        ", ".join(f"{name} ({n} tensors)" for name, n in groups.items()),
        head,
        model.num_classes,
        text,
    )
    return result


def _clip_spec(cfg: TrainConfig, backbone: ClipBackbone) -> ImageSpec:
    spec = backbone.image_spec
    size = cfg.data.size or spec.size
    return ImageSpec(size=size, resize_short_side=max(size, spec.resize_short_side) if cfg.data.size == 0 else size, mean=spec.mean, std=spec.std)


@torch.inference_mode()
def extract_lda_data(cfg: TrainConfig, records, num_classes: int, *, device: str) -> tuple[torch.Tensor, np.ndarray]:
    """Frozen pretrained video embeddings (TAP) of up to ``lda_samples_per_class`` training videos per class."""
    backbone = ClipBackbone.from_pretrained(cfg.model.primary.model, device=device)
    picks = few_shot_indices([r.labels[0] for r in records], shots=cfg.model.lda_samples_per_class, seed=cfg.run.seed)
    ds = VideoClipDataset(
        [records[i] for i in picks], sampler=SamplerSpec(kind=cfg.data.sampler, frames=cfg.data.frames, stride=cfg.data.stride), clip=_clip_spec(cfg, backbone)
    )
    feats, labels = [], []
    for batch in DataLoader(ds, batch_size=cfg.data.batch_size, num_workers=cfg.data.workers, collate_fn=collate_skip_failed):
        if batch["inputs"] is None:
            continue
        px = batch["inputs"]["rgb"][:, 0, 0]  # (B, T, 3, S, S): crop 0, view 0
        b, t = px.shape[:2]
        feats.append(backbone.encode_frames(px.reshape(b * t, *px.shape[2:])).reshape(b, t, -1).mean(1).float().cpu())
        labels.append(batch["target"].numpy())
    return torch.cat(feats), np.concatenate(labels)


class _ClassTexts:
    """Tokenized prompts of every class, for the online-text contrastive baseline (one prompt per class)."""

    def __init__(self, model: VideoRecognizer, class_names: list[str], cfg: TrainConfig) -> None:
        from openvocab.text.prompts import prompt_set
        from openvocab.text.tokenizer import encode_prompts

        template = prompt_set("single", template=cfg.model.template) if cfg.model.prompts != "classname" else prompt_set("classname")
        self.prompts = template
        texts = [template.fill(name)[0] for name in class_names]
        self.inputs, _ = encode_prompts(model.backbone.tokenizer, texts, context_length=model.backbone.context_length)

    def __call__(self, classes: torch.Tensor, device: torch.device) -> dict:
        return {k: v[classes.cpu()].to(device) for k, v in self.inputs.items()}


def _loss(
    cfg: TrainConfig,
    train_model: torch.nn.Module,
    model: VideoRecognizer,
    inputs: dict,
    target: torch.Tensor,
    texts: _ClassTexts | None = None,
    *,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """CE on the frozen classifier (Eq. 3), or InfoNCE of each video against its class text (Eq. 2 / Alg. 1),
    with the text encoder offline (the frozen class embeddings) or online (re-encoded and trained each step).

    A MOV fusion (``mov`` / ``score``) trains with MOV's loss (Eq. 9): CE of the fused video feature and of the fused
    flow/audio feature against the frozen class embeddings, weighted ``α`` / ``1 − α`` (``optim.mov_alpha``).
    Everything goes through ``train_model`` (the DDP wrapper when distributed) so gradients are synchronised.
    """
    if model.fused_outputs:
        if cfg.optim.loss != "ce":
            raise InputError(f"model.fusion={model.spec.fusion} trains with MOV's loss (Eq. 9); optim.loss must be ce")
        out = train_model(inputs, embed=True)
        return mov_loss(out.video.float(), out.other.float(), model.head.weight, target, alpha=cfg.optim.mov_alpha, tau=1.0 / model.head.logit_scale)
    if cfg.optim.loss == "bce":
        return _bce_loss(cfg, train_model, model, inputs, target, texts, rng=rng)
    if cfg.optim.loss == "ce":
        return F.cross_entropy(train_model(inputs).float(), target) + _auxiliary(cfg, model)
    if cfg.optim.loss == "infonce":
        if not isinstance(model.head, FrozenClassifier):
            raise InputError("optim.loss=infonce needs a text classifier (model.classifier: text or sentence)")
        if texts is not None:
            video, text = train_model(inputs, embed=True, text=texts(target, target.device))
        else:
            video, text = train_model(inputs, embed=True), model.head.weight[target]
        return distributed_infonce(video.float(), text.float(), logit_scale=model.head.logit_scale, labels=target) + _auxiliary(cfg, model)
    raise InputError(f"unknown optim.loss '{cfg.optim.loss}' (ce, infonce, bce)")


def _bce_loss(
    cfg: TrainConfig, train_model: torch.nn.Module, model: VideoRecognizer, inputs: dict, target: torch.Tensor, texts, *, rng: np.random.Generator | None
) -> torch.Tensor:
    """The multi-label objective (open-vocabulary multi-label §3.3): the batch's ``4B`` classes (every positive of
    the batch plus sampled negatives, :func:`batch_classes`), their label embeddings -- from the head's label encoder
    WITH gradients when it learns (LLM prompting), online CLIP text for the ViFi-CLIP baseline, else the frozen rows
    -- and the weighted BCE of Eq. 2 at ``τ = 1/logit_scale`` (``optim.bce_tau``). A temporal branch's
    prediction-matching term (§3.2) is added with weight ``optim.reg_weight``."""
    if model.fused_outputs:
        raise InputError(f"optim.loss=bce: model.fusion={model.spec.fusion} trains with MOV's loss (Eq. 9); use optim.loss=ce")
    if not getattr(model.head, "scores_by_similarity", False):
        raise InputError(f"optim.loss=bce scores labels by similarity; model.classifier={model.spec.classifier} has no label embeddings")
    positives = [torch.nonzero(row).flatten().tolist() for row in target.detach().cpu()]
    classes, targets = batch_classes(positives, num_classes=target.shape[1], rng=rng or np.random.default_rng(), per_video=cfg.data.classes_per_video)
    index = torch.as_tensor(classes, device=target.device)
    if texts is not None:  # ViFi-CLIP: both towers learn, the batch classes' texts are encoded online
        video, labels = train_model(inputs, embed=True, text=texts(index, target.device))
    else:
        video = train_model(inputs, embed=True)
        embed_rows = getattr(model.head, "class_embeddings", None)
        labels = embed_rows(index) if embed_rows is not None else model.head.weight[index]
    loss = multilabel_bce(
        video.float(), labels.float(), torch.as_tensor(targets, device=video.device), tau=1.0 / model.logit_scale, negative_weight=cfg.optim.negative_weight
    )
    return loss + _auxiliary(cfg, model)


def _auxiliary(cfg: TrainConfig, model: VideoRecognizer):
    """``optim.reg_weight`` × the recogniser's recorded auxiliary terms (a temporal branch's prediction matching)."""
    aux = getattr(model, "auxiliary_loss", None)
    return cfg.optim.reg_weight * aux() if aux is not None else 0.0


@torch.inference_mode()
def evaluate_model(model: VideoRecognizer, loader: DataLoader, *, device: str) -> dict:
    """Top-1 / top-5 / mean-class accuracy and mAP of the training classes, scored by the one multi-view rule of
    :mod:`openvocab.scoring` (per-view probabilities averaged; ``openvocab evaluate`` and ``classify`` agree).
    With multi-hot targets (untrimmed videos with several labels) top-k is hit@k (any true label in the top k) and
    mean-class accuracy, a single-label metric, is left out. ``map``: the mean over classes with a positive video
    of each class's average precision (ActivityNet's metric, Text4Vis Table 2)."""
    from openvocab.eval.metrics import mean_average_precision, mean_class_accuracy, topk_accuracy
    from openvocab.eval.multilabel import multilabel_metrics
    from openvocab.scoring import view_probabilities

    multi_label = bool(model.spec.head.multi_label)  # trained with Eq. 2: independent sigmoids σ(s/τ), not a softmax
    model.eval()
    scores, targets = [], []
    for batch in loader:
        if batch["inputs"] is None:
            continue
        first = next(iter(batch["inputs"].values()))  # (B, C, V, T, ...)
        b, c, v = first.shape[:3]
        logits = model({k: x.to(device).reshape(b * c * v, *x.shape[3:]) for k, x in batch["inputs"].items()})
        scores.append(view_probabilities(logits.float().reshape(b, c * v, -1), multi_label=multi_label, bias=0.0).cpu())
        targets.append(batch["target"])
    if not scores:
        return {"top1": float("nan"), "top5": float("nan"), "mean_class": float("nan"), "map": float("nan"), "videos": 0}
    s, t = torch.cat(scores), torch.cat(targets)
    acc = topk_accuracy(s, t, ks=(1, min(5, s.shape[1])))
    result = {"top1": acc[1], "top5": acc[min(5, s.shape[1])]}
    if t.ndim == 1:
        result["mean_class"] = mean_class_accuracy(s, t, num_classes=s.shape[1])
    result = {**result, "map": mean_average_precision(s, t), "videos": int(t.shape[0])}
    if t.ndim == 2:  # multi-label metrics (multi-label §4.4): micro AUPR over video-label pairs, peak F1, its threshold
        ml = multilabel_metrics(s.numpy(), t.numpy())
        result.update(aupr=ml["aupr"], peak_f1=ml["peak_f1"], peak_f1_threshold=ml["peak_threshold"])
    return result


def train(cfg: TrainConfig, *, progress: Callable[[int, int, float | None], None] | None = None) -> dict:
    """Run the recipe; returns the final metrics. Resumes from ``run.out`` when a checkpoint is there: its newest
    intact one (a damaged newer one is kept, renamed ``step_X.unusable``, with a warning; a missing ``latest`` is
    found from the listing), never silently from step 0 over existing checkpoints. A training set where no clip of
    the first epoch decodes stops with one line naming the first failure; a high failure rate warns.

    ``progress(step, total_steps, loss)`` is called after every optimiser step (and once at the start with loss
    ``None``) on the main rank when ``run.progress`` is on; the CLI draws its bar from it."""
    from openvocab.models.checkpoint import list_checkpoints, load_checkpoint, save_checkpoint

    out = Path(cfg.run.out).expanduser()
    probe_device = cfg.run.device if cfg.run.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dist = _init_distributed(probe_device)
    device = _device(cfg, dist)
    seed_everything(cfg.run.seed + dist.rank)
    train_m, val_m = load_splits(cfg.data, log_problems=dist.main)
    class_names = train_m.class_names(normalised=True)
    records = list(train_m.records)
    if cfg.data.shots > 0:  # K-shot C-way, repeated to keep the full-data epoch length (Text4Vis B.1)
        picks = few_shot_indices([r.labels[0] for r in records], shots=cfg.data.shots, seed=cfg.run.seed)
        records = [records[i] for i in repeat_to_length(picks, len(records), seed=cfg.run.seed)]

    lda = extract_lda_data(cfg, records, len(class_names), device=device) if cfg.model.classifier == "lda" else None
    model = build_model(cfg, class_names, device=device, lda_data=lda)
    train_ds, sampler, loader, val_loader = _build_loaders(cfg, dist, model, records, val_m)
    batches_per_epoch = math.ceil(len(sampler) / cfg.data.batch_size)
    steps_per_epoch = max(1, math.ceil(batches_per_epoch / cfg.optim.accumulation))
    total_steps = steps_per_epoch * cfg.optim.epochs
    if cfg.run.max_steps:
        total_steps = min(total_steps, cfg.run.max_steps)
    optimizer, scheduler = _build_optimizer(cfg, model, total_steps=total_steps, steps_per_epoch=steps_per_epoch)
    arch = model.spec.arch()
    if model.spec.train_text and cfg.model.classifier != "text":
        raise InputError("model.text_online needs model.classifier: text (CLIP's own text tower)")
    texts = _ClassTexts(model, class_names, cfg) if model.spec.train_text else None

    # fp16 on CUDA needs loss scaling (bf16 and fp32 do not)
    scaler = torch.amp.GradScaler("cuda", enabled=device.startswith("cuda") and _precision(cfg, device) == "fp16")
    step, start_epoch = 0, 0
    # a run directory with checkpoints is resumed even when its 'latest' file went missing (from the newest intact
    # checkpoint, with a warning): it never silently restarts from step 0 over them
    resuming = cfg.run.resume and ((out / "latest").is_file() or bool(list_checkpoints(out)))
    if cfg.model.init_from and not resuming:  # once this run has its own checkpoint, the resume below wins
        init_from_run(model, cfg.model.init_from)
    elif cfg.model.init_from and dist.main:
        log.info("model.init_from=%s not applied: resuming this run's own checkpoint", cfg.model.init_from)
    if resuming:
        state = load_checkpoint(out, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, arch=arch)
        if scaler.is_enabled() and state.get("extra", {}).get("grad_scaler"):
            scaler.load_state_dict(state["extra"]["grad_scaler"])
        step, start_epoch = int(state["step"]), int(state["epoch"])
        if dist.main:
            _set_aside(state["unusable"], after=step)  # damaged newer checkpoints: kept, out of the way of new saves
            _truncate_log(out / "metrics.jsonl", step)  # rows after the checkpoint are about to be redone
            log.info("resumed from %s at step %d (epoch %d)", out, step, start_epoch)
    created = not out.exists()  # a run that cannot start leaves nothing behind in a directory it created
    if dist.main:
        out.mkdir(parents=True, exist_ok=True)
        save_config(cfg, out / "config.yaml")
    frozen = model.frozen_pretrained_keys()  # not stored in checkpoints: model.model loads them again
    train_model: torch.nn.Module = model
    if dist.world > 1:
        train_model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[dist.local_rank] if device.startswith("cuda") else None)

    metrics_path = out / "metrics.jsonl"
    report = progress if (progress is not None and cfg.run.progress and dist.main) else (lambda step, total, loss: None)
    report(step, total_steps, None)
    final: dict = {}
    clips = DecodeTally()
    for epoch in range(start_epoch, cfg.optim.epochs):
        if step >= total_steps:
            break
        sampler.set_epoch(epoch)
        train_ds.set_epoch(epoch)
        train_model.train()
        micro = sampler.consumed_samples // cfg.data.batch_size  # > 0 when resuming mid-epoch
        optimizer.zero_grad(set_to_none=True)
        t0 = time.perf_counter()
        for batch in loader:
            clips.add(batch)
            if batch["inputs"] is None:
                sampler.advance(batch["dropped"])
                continue
            with _autocast(cfg, device):
                inputs = {k: x.to(device) for k, x in batch["inputs"].items()}
                rng = np.random.default_rng([cfg.run.seed, dist.rank, epoch, micro])  # the batch's negatives: exact on resume
                loss = _loss(cfg, train_model, model, inputs, batch["target"].to(device), texts, rng=rng)
            scaler.scale(loss / cfg.optim.accumulation).backward()
            sampler.advance(len(batch["index"]) + batch["dropped"])
            micro += 1
            if micro % cfg.optim.accumulation and micro < batches_per_epoch:
                continue
            if cfg.optim.max_grad_norm > 0:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_([p for _, p in model.trainable_named_parameters()], cfg.optim.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            row = {"step": step, "epoch": epoch, "loss": float(loss.detach()), "lr": scheduler.get_last_lr()[0], "seconds": round(time.perf_counter() - t0, 3)}
            t0 = time.perf_counter()
            if dist.main:
                _append_jsonl(metrics_path, row)
                report(step, total_steps, row["loss"])
            last_of_epoch = micro >= batches_per_epoch
            if dist.main and (
                (cfg.run.save_every_steps and step % cfg.run.save_every_steps == 0) or (not cfg.run.save_every_steps and last_of_epoch) or step >= total_steps
            ):
                save_checkpoint(
                    out,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    sampler=sampler,
                    step=step,
                    epoch=epoch + (1 if last_of_epoch else 0),
                    arch=arch,
                    keep_last=cfg.run.keep_last,
                    omit=frozen,
                    extra={"class_names": class_names, "spec": model.spec.to_dict(), **({"grad_scaler": scaler.state_dict()} if scaler.is_enabled() else {})},
                )
            if step >= total_steps:
                break
        if not clips.checked:  # after the first epoch this process ran: refuse a set where nothing decodes
            try:
                clips.check()
            except InputError:
                if dist.main and created:
                    _discard_unstarted_run(out)
                raise
        if texts is not None:  # the text tower moved: the classifier used for evaluation follows it
            with torch.no_grad():
                model.head.weight.copy_(F.normalize(model.backbone.encode_labels(class_names, texts.prompts).to(model.head.weight), dim=-1))
        if val_loader is not None and dist.main and ((epoch + 1) % cfg.run.eval_every_epochs == 0 or step >= total_steps):
            final = {"step": step, "epoch": epoch, **{f"val_{k}": v for k, v in evaluate_model(model, val_loader, device=device).items()}}
            _append_jsonl(metrics_path, final)
    if clips.failed and dist.main:
        log.warning("%s (see the warnings above)", clips.summary())
    return {"step": step, "out": str(out), **final}


def _set_aside(unusable: list[str], *, after: int) -> None:
    """Rename the damaged checkpoints a resume passed over that are newer than the one it resumed from
    (``step_X`` -> ``step_X.unusable``): the run is about to save a new ``step_X``, which would replace the damaged
    one. They are kept (for inspection, never deleted) and no longer read or pruned as checkpoints."""
    from openvocab.models.checkpoint import step_of

    for name in unusable:
        bad = Path(name)
        if (step_of(bad) or 0) <= after or not bad.is_dir():
            continue
        target = bad.with_name(f"{bad.name}.unusable")
        n = 1
        while target.exists():
            n += 1
            target = bad.with_name(f"{bad.name}.unusable-{n}")
        try:
            os.replace(bad, target)
        except OSError as exc:
            raise InputError(f"cannot move the unusable checkpoint aside before resuming ({exc.strerror or exc})", path=bad) from None
        log.warning("kept the unusable checkpoint %s as %s (this run saves a new %s)", bad, target.name, bad.name)


def _discard_unstarted_run(out: Path) -> None:
    """Remove what this process wrote into the run directory it created (recipe, empty metrics log) when training
    could not start; anything else in it stays."""
    for name in ("config.yaml", "metrics.jsonl"):
        with contextlib.suppress(OSError):
            (out / name).unlink()
    with contextlib.suppress(OSError):
        out.rmdir()


def _build_loaders(cfg: TrainConfig, dist: DistInfo, model: VideoRecognizer, records, val_m):
    """The training dataset (augmented, per-(seed, epoch, index) randomness), its resumable distributed sampler and
    loader, and the validation loader (test-mode sampling, ``data.views``)."""
    clip = _clip_spec(cfg, model.backbone)
    d = cfg.data
    augment = None
    if d.augment:
        from openvocab.data.augment import AugmentSpec, VideoAugment

        augment = VideoAugment(
            AugmentSpec(
                size=clip.size,
                scale=tuple(d.crop_scale),
                flip_p=d.flip_p,
                gray_p=d.gray_p,
                randaugment_n=d.randaugment_n,
                randaugment_m=d.randaugment_m,
                mean=clip.mean,
                std=clip.std,
            )
        )
    train_spec = SamplerSpec(kind=d.sampler, frames=d.frames, stride=d.stride)  # type: ignore[arg-type]
    inputs = model.spec.input_settings(flow_cache=d.flow_cache)
    multi_label = cfg.optim.loss == "bce"  # multi-hot targets: the batch's positives and sampled negatives (§3.3)
    train_ds = TrainingClips(
        records,
        sampler=train_spec,
        clip=clip,
        train=True,
        augment=augment,
        seed=cfg.run.seed,
        inputs=inputs,
        multi_label=multi_label,
        num_classes=model.num_classes,
    )
    sampler = ResumableDistributedSampler(len(train_ds), num_replicas=dist.world, rank=dist.rank, shuffle=True, seed=cfg.run.seed)
    loader = DataLoader(train_ds, batch_size=d.batch_size, sampler=sampler, num_workers=d.workers, collate_fn=collate_training_clips, persistent_workers=False)
    val_loader = None
    if val_m is not None:
        t, c = parse_views(d.views)
        val_spec = SamplerSpec(kind=d.sampler, frames=d.frames, stride=d.stride, temporal_views=t, spatial_crops=c)  # type: ignore[arg-type]
        multi = multi_label or any(len(r.labels) > 1 for r in val_m.records)  # several labels per video: multi-hot
        val_ds = VideoClipDataset(val_m.records, sampler=val_spec, clip=clip, train=False, multi_label=multi, num_classes=len(val_m.classes), inputs=inputs)
        val_loader = DataLoader(val_ds, batch_size=d.batch_size, num_workers=d.workers, collate_fn=collate_skip_failed)
    return train_ds, sampler, loader, val_loader


def _build_optimizer(cfg: TrainConfig, model: VideoRecognizer, *, total_steps: int, steps_per_epoch: int):
    """AdamW over the trainable parameters in groups (pretrained towers; new temporal modules, fusion and head, which
    may take ``optim.head_lr``; a trainable label encoder's, when there is one) and the warm-up + cosine schedule, stepped per optimiser step."""
    by_group = model.parameter_groups()
    groups = [
        {"name": "backbone", "named_params": by_group["backbone"]},
        {"name": "head", "named_params": by_group["head"], "lr": cfg.optim.head_lr or cfg.optim.lr},
        {"name": "label_encoder", "named_params": by_group["label_encoder"], "lr": cfg.optim.head_lr or cfg.optim.lr},
        # layers initialised from CLIP (a temporal branch's spatial blocks): no weight decay (multi-label K.2)
        {"name": "head_clip_init", "named_params": by_group["head_clip_init"], "lr": cfg.optim.head_lr or cfg.optim.lr, "weight_decay": 0.0},
    ]
    optimizer = build_adamw([g for g in groups if g["named_params"]], lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=tuple(cfg.optim.betas))
    warmup = min(total_steps, round(cfg.optim.warmup_epochs * steps_per_epoch))
    scheduler = cosine_with_warmup(optimizer, total_steps=total_steps, warmup_steps=warmup, base_lr=cfg.optim.lr, min_lr=cfg.optim.min_lr)
    return optimizer, scheduler


def _truncate_log(path: Path, step: int) -> None:
    """Keep the metrics rows up to ``step`` (atomically): a resumed run re-logs what came after its checkpoint."""
    from openvocab.atomic import atomic_write

    if path.is_file():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
        atomic_write(path, "".join(r + "\n" for r in rows))


def _append_jsonl(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")
        fh.flush()
