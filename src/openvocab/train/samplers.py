"""Samplers for (distributed) training that can resume mid-epoch, and the few-shot protocol of Text4Vis.

Resume design of :class:`ResumableDistributedSampler`
------------------------------------------------------
A sampler cannot know how many of the indices it yielded were actually trained on: a ``DataLoader`` prefetches
(``prefetch_factor × num_workers`` batches ahead). So the TRAINER reports consumption explicitly, after each
optimiser step, with :meth:`ResumableDistributedSampler.advance` (``sampler.advance(batch_size)``; per replica), or
passes the count when saving (``sampler.state_dict(consumed_samples=...)``). The state is
``{"epoch", "consumed_samples", ...}`` where ``consumed_samples`` is the position reached in THIS replica's list of
the epoch (counting samples consumed before an earlier resume too). After ``load_state_dict`` the sampler yields
only ``indices[consumed_samples:]`` of that epoch; ``set_epoch(e)`` with a different epoch starts the new epoch
from its beginning, while ``set_epoch`` with the saved epoch keeps the resume position — so the usual loop
``for epoch in range(start_epoch, E): sampler.set_epoch(epoch); for batch in loader: ...; sampler.advance(n)``
resumes exactly. All replicas share the same position (the padded split gives every replica the same count).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Sampler

from openvocab.errors import InputError

__all__ = ["ResumableDistributedSampler", "batch_classes", "few_shot_indices", "repeat_to_length"]

log = logging.getLogger(__name__)


class ResumableDistributedSampler(Sampler[int]):
    """``torch.utils.data.DistributedSampler`` with an exact mid-epoch resume (see the module docstring).

    The order is the same as torch's for the same ``seed``/``epoch``/``num_replicas``/``rank``: a permutation
    ``torch.randperm(n, generator=manual_seed(seed + epoch))`` (or ``range(n)`` without shuffle), padded by
    repeating its head until it divides evenly (or truncated with ``drop_last``), then strided by rank.

    Args:
        dataset_len: number of samples in the dataset.
        num_replicas: number of distributed ranks (the DDP world size).
        rank: this replica's rank in ``[0, num_replicas)``.
        shuffle: draw a fresh permutation per epoch.
        seed: base seed, identical on all ranks.
        drop_last: drop the tail instead of padding to make the split even.
    """

    def __init__(
        self,
        dataset_len: int,
        *,
        num_replicas: int = 1,
        rank: int = 0,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if dataset_len < 0 or num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"invalid sampler setup: dataset_len={dataset_len}, num_replicas={num_replicas}, rank={rank}")
        self.dataset_len = int(dataset_len)
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        if self.drop_last and self.dataset_len % self.num_replicas:
            self.num_samples = math.ceil((self.dataset_len - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(self.dataset_len / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas
        self.epoch = 0
        self._start = 0  # where this epoch's iteration begins (non-zero only after a mid-epoch resume)
        self._consumed = 0  # position reached in this epoch, as reported by the trainer

    # -- order ---------------------------------------------------------------------------------------------------
    def epoch_indices(self, epoch: int | None = None) -> list[int]:
        """This replica's full list of indices for ``epoch`` (default: the current epoch), ignoring any resume."""
        epoch = self.epoch if epoch is None else int(epoch)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + epoch)
            indices = torch.randperm(self.dataset_len, generator=generator).tolist()
        else:
            indices = list(range(self.dataset_len))
        if not self.drop_last:
            padding = self.total_size - len(indices)
            if padding > 0 and indices:
                indices += (indices * math.ceil(padding / len(indices)))[:padding]
        else:
            indices = indices[: self.total_size]
        return indices[self.rank : self.total_size : self.num_replicas]

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self._start :])

    def __len__(self) -> int:
        """Indices still to be yielded this epoch (``num_samples`` unless resumed mid-epoch)."""
        return self.num_samples - self._start

    # -- epoch / progress ----------------------------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's permutation. A different epoch restarts at its beginning; the current one (e.g. the
        epoch just restored by :meth:`load_state_dict`) keeps its resume position."""
        epoch = int(epoch)
        if epoch != self.epoch:
            self.epoch = epoch
            self._start = 0
            self._consumed = 0

    def advance(self, num_samples: int) -> None:
        """Record that the trainer consumed ``num_samples`` more indices of this replica in the current epoch."""
        if num_samples < 0 or self._consumed + num_samples > self.num_samples:
            raise ValueError(f"advance({num_samples}) would move past the epoch end ({self._consumed}/{self.num_samples} consumed)")
        self._consumed += int(num_samples)

    @property
    def consumed_samples(self) -> int:
        """Position reached in this replica's list of the current epoch (including samples before a resume)."""
        return self._consumed

    # -- state ---------------------------------------------------------------------------------------------------
    def state_dict(self, *, consumed_samples: int | None = None) -> dict[str, Any]:
        """JSON-able state. ``consumed_samples`` overrides the count kept by :meth:`advance`; it is the position in
        THIS replica's list of the current epoch (samples consumed before a resume included)."""
        consumed = self._consumed if consumed_samples is None else int(consumed_samples)
        if not 0 <= consumed <= self.num_samples:
            raise ValueError(f"consumed_samples={consumed} outside [0, {self.num_samples}]")
        return {
            "epoch": self.epoch,
            "consumed_samples": consumed,
            "dataset_len": self.dataset_len,
            "num_replicas": self.num_replicas,
            "shuffle": self.shuffle,
            "seed": self.seed,
            "drop_last": self.drop_last,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore epoch and position; the next iteration yields the not-yet-consumed rest of that epoch.

        The rank is not part of the state (rank 0's state is valid on every rank). A state saved for a different
        dataset length, world size, seed, shuffle or drop_last cannot be resumed exactly: one-line
        :class:`~openvocab.errors.InputError`.
        """
        for key in ("dataset_len", "num_replicas", "shuffle", "seed", "drop_last"):
            if key in state and state[key] != getattr(self, key):
                raise InputError(f"sampler state was saved with {key}={state[key]!r}, this sampler has {key}={getattr(self, key)!r}")
        consumed = int(state["consumed_samples"])
        if not 0 <= consumed <= self.num_samples:
            raise InputError(f"sampler state has consumed_samples={consumed} outside [0, {self.num_samples}]")
        self.epoch = int(state["epoch"])
        self._start = consumed
        self._consumed = consumed


def few_shot_indices(labels: Sequence[int], *, shots: int, seed: int = 0) -> list[int]:
    """K-shot C-way subset over ALL classes (Text4Vis §4.2 "Few-shot video recognition"): ``shots`` samples of
    every class present in ``labels``.

    A class with fewer than ``shots`` samples contributes all of them, and one warning naming those classes is
    logged (logger ``openvocab.train.samplers``). The choice is deterministic per ``seed`` and per class: each class
    draws its own permutation from ``SeedSequence([seed, class_id])``, so picks do not depend on the other classes
    and the K-shot subset is contained in the (K+1)-shot subset for the same seed.

    Returns:
        Sorted dataset indices.
    """
    if shots < 1:
        raise ValueError(f"shots must be >= 1, got {shots}")
    by_class: dict[int, list[int]] = {}
    for index, label in enumerate(labels):
        label = int(label)
        if label < 0:
            raise ValueError(f"few_shot_indices: negative class id {label} at index {index}")
        by_class.setdefault(label, []).append(index)
    chosen: list[int] = []
    short: list[str] = []
    for label in sorted(by_class):
        members = by_class[label]
        if len(members) < shots:
            short.append(f"{label} ({len(members)})")
        order = np.random.default_rng(np.random.SeedSequence([int(seed), label])).permutation(len(members))
        chosen.extend(members[i] for i in order[:shots])
    if short:
        log.warning(
            "few-shot: %d class(es) have fewer than %d samples and use all they have: %s",
            len(short),
            shots,
            ", ".join(short[:20]) + (", ..." if len(short) > 20 else ""),
        )
    return sorted(chosen)


def repeat_to_length(indices: Sequence[int], target_len: int, *, seed: int = 0) -> list[int]:
    """Repeat a small index list to ``target_len`` entries (Text4Vis Appendix B.1, few-shot: "we repeat the samples
    to keep the same iterations" as the full-data setting, e.g. ~900 iterations per epoch on Kinetics-400).

    The list is concatenated as successive permutations (drawn from ``seed``), then cut at ``target_len``; so every
    index occurs ``floor`` or ``ceil(target_len / len(indices))`` times and the truncated last round is a random,
    not a class-ordered, subset. Use as ``torch.utils.data.Subset(dataset, repeat_to_length(...))`` under the
    (shuffling) :class:`ResumableDistributedSampler`.
    """
    if target_len < 0:
        raise ValueError(f"target_len must be >= 0, got {target_len}")
    if not indices:
        if target_len:
            raise ValueError("repeat_to_length: cannot repeat an empty index list")
        return []
    base = np.asarray(list(indices), dtype=np.int64)
    rng = np.random.default_rng(seed)
    rounds = math.ceil(target_len / len(base))
    out = np.concatenate([base[rng.permutation(len(base))] for _ in range(rounds)])[:target_len]
    return [int(i) for i in out]


def batch_classes(
    positives: Sequence[Collection[int]],
    *,
    num_classes: int,
    rng: np.random.Generator,
    per_video: int = 4,
) -> tuple[np.ndarray, np.ndarray]:
    """Class set and multi-hot targets of one multi-label training batch (open-vocabulary multi-label §3.3,
    ``../shared/papers/open-vocabulary-multi-label.txt``).

    For a batch of ``B`` videos with positive sets ``P(v)``: keep every distinct positive ``P_B = ∪_v P(v)`` and add
    ``per_video·B − |P_B|`` negatives ``N_B`` drawn uniformly without replacement from the rest of the vocabulary
    (``[0, num_classes) \\ P_B``, so a positive of ANY video in the batch is never a sampled negative). Every video is
    then scored against all ``K`` classes: its positives are ``P(v)``, its negatives ``N(v) = (P_B ∪ N_B) \\ P(v)``.

    Edges:

    * ``|P_B| > per_video·B``: every positive is kept and no negative is sampled, ``K = |P_B|``;
    * ``num_classes < per_video·B``: the whole vocabulary is used, ``K = num_classes`` (no draw is needed);
    * a video without positives is allowed: all ``K`` of its entries are negatives;
    * in general ``K = max(|P_B|, min(per_video·B, num_classes))``.

    The draw uses only ``rng``, so a seeded generator gives the same batch.

    Returns:
        ``(classes, targets)``: ``classes`` ``(K,)`` int64 class ids sorted ascending, and ``targets`` ``(B, K)``
        float32 with ``targets[i, j] = 1`` iff ``classes[j] ∈ P(v_i)``, else 0.

    Raises:
        InputError: an empty batch, ``num_classes < 1``, ``per_video < 1``, or a class id that is not an integer in
            ``[0, num_classes)`` (one line naming the video and the id).
    """
    num_classes = int(num_classes)
    per_video = int(per_video)
    if num_classes < 1:
        raise InputError(f"batch_classes: num_classes must be >= 1, got {num_classes}")
    if per_video < 1:
        raise InputError(f"batch_classes: per_video must be >= 1, got {per_video}")
    if len(positives) == 0:
        raise InputError("batch_classes: the batch has no videos")
    sets: list[set[int]] = []
    for video, classes in enumerate(positives):
        ids: set[int] = set()
        for class_id in classes:
            if isinstance(class_id, bool) or not isinstance(class_id, (int, np.integer)):
                raise InputError(f"batch_classes: video {video} has a non-integer class id {class_id!r}")
            if not 0 <= int(class_id) < num_classes:
                raise InputError(f"batch_classes: video {video} has class id {int(class_id)} outside [0, {num_classes})")
            ids.add(int(class_id))
        sets.append(ids)
    positive = np.array(sorted(set().union(*sets)), dtype=np.int64)
    wanted = min(per_video * len(sets), num_classes)
    num_negatives = max(0, wanted - positive.size)
    if num_negatives:
        eligible = np.setdiff1d(np.arange(num_classes, dtype=np.int64), positive, assume_unique=True)
        negative = rng.choice(eligible, size=num_negatives, replace=False)
        classes_out = np.sort(np.concatenate([positive, negative.astype(np.int64)]))
    else:
        classes_out = positive
    targets = np.zeros((len(sets), classes_out.size), dtype=np.float32)
    for row, ids in enumerate(sets):
        if ids:
            targets[row, np.searchsorted(classes_out, np.fromiter(ids, dtype=np.int64, count=len(ids)))] = 1.0
    return classes_out, targets
