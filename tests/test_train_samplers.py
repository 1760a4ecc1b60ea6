"""Resumable distributed sampler (exact mid-epoch resume), few-shot subsets and repetition (Text4Vis §4.2, B.1)."""

from __future__ import annotations

import logging
from collections import Counter

import pytest
from torch.utils.data import DataLoader, DistributedSampler

from openvocab.errors import InputError
from openvocab.train.samplers import ResumableDistributedSampler, few_shot_indices, repeat_to_length


@pytest.mark.parametrize(
    "length,replicas,shuffle,drop_last",
    [
        (10, 2, True, False),
        (11, 2, True, False),
        (11, 3, True, True),
        (7, 4, False, False),
        (3, 5, True, False),
        (100, 3, True, False),
    ],
)
def test_same_order_as_torch_distributed_sampler(length, replicas, shuffle, drop_last):
    data = list(range(length))
    for epoch in (0, 3):
        for rank in range(replicas):
            ours = ResumableDistributedSampler(length, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=5, drop_last=drop_last)
            theirs = DistributedSampler(data, num_replicas=replicas, rank=rank, shuffle=shuffle, seed=5, drop_last=drop_last)
            ours.set_epoch(epoch)
            theirs.set_epoch(epoch)
            assert list(ours) == list(theirs)
            assert len(ours) == len(theirs)


def test_two_replicas_partition_the_epoch():
    length = 11  # odd: torch pads by repeating the head of the permutation
    samplers = [ResumableDistributedSampler(length, num_replicas=2, rank=r, seed=3) for r in range(2)]
    for s in samplers:
        s.set_epoch(1)
    a, b = (list(s) for s in samplers)
    assert len(a) == len(b) == 6
    assert set(a) | set(b) == set(range(length))
    assert len(set(a) & set(b)) == 1  # exactly the one padded sample appears twice
    assert sorted(Counter(a + b).values()) == [1] * 10 + [2]
    # without padding (even length) the split is disjoint
    even = [ResumableDistributedSampler(10, num_replicas=2, rank=r) for r in range(2)]
    assert set(even[0]).isdisjoint(even[1]) and set(even[0]) | set(even[1]) == set(range(10))
    # a new epoch is a new permutation
    samplers[0].set_epoch(2)
    assert list(samplers[0]) != a


def test_resume_mid_epoch_yields_exactly_the_remainder():
    batch = 4
    for rank in range(2):
        full = ResumableDistributedSampler(50, num_replicas=2, rank=rank, seed=9)
        full.set_epoch(2)
        expected = list(full)
        # a trainer consumes 3 batches through a prefetching DataLoader, reporting consumption explicitly
        sampler = ResumableDistributedSampler(50, num_replicas=2, rank=rank, seed=9)
        sampler.set_epoch(2)
        loader = DataLoader(list(range(50)), batch_size=batch, sampler=sampler)
        seen = []
        for i, xb in enumerate(loader):
            seen.extend(xb.tolist())
            sampler.advance(len(xb))
            if i == 2:
                break
        state = sampler.state_dict()
        assert state["epoch"] == 2 and state["consumed_samples"] == 3 * batch
        resumed = ResumableDistributedSampler(50, num_replicas=2, rank=rank, seed=9)
        resumed.load_state_dict(state)
        resumed.set_epoch(2)  # the training loop re-enters the saved epoch: position kept
        rest = [i for xb in DataLoader(list(range(50)), batch_size=batch, sampler=resumed) for i in xb.tolist()]
        assert seen + rest == expected
        assert len(resumed) == len(expected) - 3 * batch
        # resuming a resumed run: the position counts samples consumed before the first resume too
        resumed.advance(batch)
        again = ResumableDistributedSampler(50, num_replicas=2, rank=rank, seed=9)
        again.load_state_dict(resumed.state_dict())
        assert list(again) == expected[4 * batch :]
        # the next epoch starts from its beginning, identical to an uninterrupted run
        resumed.set_epoch(3)
        full.set_epoch(3)
        assert list(resumed) == list(full)


def test_state_dict_explicit_consumed_and_validation():
    sampler = ResumableDistributedSampler(20, num_replicas=2, rank=1, seed=0)
    sampler.set_epoch(4)
    state = sampler.state_dict(consumed_samples=6)
    other = ResumableDistributedSampler(20, num_replicas=2, rank=1, seed=0)
    other.load_state_dict(state)
    assert list(other) == sampler.epoch_indices(4)[6:]
    with pytest.raises(ValueError):
        sampler.state_dict(consumed_samples=11)
    with pytest.raises(ValueError):
        sampler.advance(11)
    wrong = ResumableDistributedSampler(20, num_replicas=4, rank=1, seed=0)
    with pytest.raises(InputError, match="num_replicas=2"):
        wrong.load_state_dict(state)


def test_few_shot_k_per_class_deterministic():
    labels = [i % 5 for i in range(100)] + [5, 5]  # class 5 has only two samples
    picks = few_shot_indices(labels, shots=3, seed=1)
    assert picks == few_shot_indices(labels, shots=3, seed=1)
    assert picks != few_shot_indices(labels, shots=3, seed=2)
    assert picks == sorted(picks)
    counts = Counter(labels[i] for i in picks)
    assert counts == {0: 3, 1: 3, 2: 3, 3: 3, 4: 3, 5: 2}
    assert set(few_shot_indices(labels, shots=2, seed=1)) <= set(picks)  # nested in K
    # a class's picks do not depend on the other classes present
    merged = [lab if lab == 0 else 9 for lab in labels]
    class_0 = [i for i in picks if labels[i] == 0]
    assert [i for i in few_shot_indices(merged, shots=3, seed=1) if merged[i] == 0] == class_0


def test_few_shot_warns_for_small_classes(caplog):
    with caplog.at_level(logging.WARNING, logger="openvocab.train.samplers"):
        few_shot_indices([0, 0, 0, 1], shots=2)
    assert "fewer than 2 samples" in caplog.text and "1 (1)" in caplog.text
    with pytest.raises(ValueError):
        few_shot_indices([0, 1], shots=0)


def test_repeat_to_length_keeps_iterations():
    small = [3, 8, 15, 40, 41]
    out = repeat_to_length(small, 23, seed=0)
    assert len(out) == 23 and set(out) == set(small)
    assert sorted(Counter(out).values()) == [4, 4, 5, 5, 5]  # floor/ceil(23 / 5)
    assert out == repeat_to_length(small, 23, seed=0)
    assert out != repeat_to_length(small, 23, seed=1)
    assert repeat_to_length(small, 3, seed=0) == out[:3]
    assert repeat_to_length([], 0) == []
    with pytest.raises(ValueError):
        repeat_to_length([], 3)
