"""Atomic, pickle-free checkpoints: exact resume, crash safety, architecture/shape checks, pruning."""

from __future__ import annotations

import inspect
import json
import random

import numpy as np
import pytest
import torch
from torch import nn

import openvocab.models.checkpoint as ckpt
from openvocab.errors import InputError
from openvocab.models.checkpoint import load_checkpoint, save_checkpoint
from openvocab.train.samplers import ResumableDistributedSampler
from openvocab.train.schedule import build_adamw, cosine_with_warmup

ARCH = {"backbone": {"hidden": 16, "layers": 2}, "temporal": "ttrans", "num_classes": 3}
N_DATA, BATCH = 40, 4  # 10 steps per epoch


def _parts(seed: int):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(8, 16), nn.LayerNorm(16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 3))
    optimizer = build_adamw(model, lr=1e-2)
    scheduler = cosine_with_warmup(optimizer, total_steps=30, warmup_steps=3, base_lr=1e-2, min_lr=1e-3)
    sampler = ResumableDistributedSampler(N_DATA, seed=11)
    return model, optimizer, scheduler, sampler


_gen = torch.Generator().manual_seed(99)
DATA_X = torch.randn(N_DATA, 8, generator=_gen)
DATA_Y = torch.randint(0, 3, (N_DATA,), generator=_gen)


def _train(model, optimizer, scheduler, sampler, *, step, epoch, until, save_at=None, run_dir=None):
    """A miniature trainer: uses torch (dropout), numpy and python RNGs, the sampler order and the schedule."""
    while step < until:
        sampler.set_epoch(epoch)
        batch: list[int] = []
        for index in sampler:
            batch.append(index)
            if len(batch) < BATCH:
                continue
            noise = float(np.random.randn()) * 0.01 + random.random() * 0.01  # numpy + python RNG "augmentation"
            x = DATA_X[batch] + noise
            loss = nn.functional.cross_entropy(model(x), DATA_Y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            sampler.advance(len(batch))
            batch = []
            step += 1
            if step == save_at:
                save_checkpoint(
                    run_dir,
                    model=model,
                    optimizer=optimizer,
                    scheduler=scheduler,
                    sampler=sampler,
                    step=step,
                    epoch=epoch,
                    arch=ARCH,
                    extra={"best": 0.5, "hist": (1, 2)},
                )
            if step == until:
                return step
        epoch += 1
    return step


def test_round_trip_continues_bitwise(tmp_path):
    random.seed(0)
    np.random.seed(0)
    model, optimizer, scheduler, sampler = _parts(0)
    _train(model, optimizer, scheduler, sampler, step=0, epoch=0, until=25, save_at=13, run_dir=tmp_path)
    reference = {k: v.clone() for k, v in model.state_dict().items()}

    random.seed(123)  # different RNG states and weights before loading: the checkpoint must restore everything
    np.random.seed(123)
    model2, optimizer2, scheduler2, sampler2 = _parts(1)
    state = load_checkpoint(tmp_path, model=model2, optimizer=optimizer2, scheduler=scheduler2, sampler=sampler2, arch=ARCH)
    assert state["step"] == 13 and state["epoch"] == 1
    assert state["extra"] == {"best": 0.5, "hist": (1, 2)}
    assert state["path"].endswith("step_00000013")
    assert sampler2.consumed_samples == 3 * BATCH and sampler2.epoch == 1
    assert scheduler2.last_epoch == 13
    _train(model2, optimizer2, scheduler2, sampler2, step=13, epoch=1, until=25)
    for key, value in model2.state_dict().items():
        assert torch.equal(value, reference[key]), key
    assert optimizer2.state_dict()["param_groups"] == optimizer.state_dict()["param_groups"]
    for idx, per_param in optimizer.state_dict()["state"].items():
        for name, value in per_param.items():
            assert torch.equal(optimizer2.state_dict()["state"][idx][name], value)


def test_files_are_safetensors_and_json(tmp_path):
    model, optimizer, scheduler, sampler = _parts(0)
    _train(model, optimizer, scheduler, sampler, step=0, epoch=0, until=2)
    step_dir = save_checkpoint(tmp_path, model=model, optimizer=optimizer, scheduler=scheduler, sampler=sampler, step=2, epoch=0, arch=ARCH)
    assert sorted(p.name for p in step_dir.iterdir()) == ["model.safetensors", "optimizer.json", "optimizer.safetensors", "trainer_state.json"]
    from safetensors.torch import load_file

    keys = set(load_file(str(step_dir / "optimizer.safetensors")))
    assert {"state.0.exp_avg", "state.0.exp_avg_sq", "state.0.step"} <= keys
    trainer = json.loads((step_dir / "trainer_state.json").read_text())
    assert trainer["arch"] == ARCH and trainer["sampler"]["consumed_samples"] == 2 * BATCH
    assert set(trainer["rng"]) >= {"python", "numpy", "torch"}
    assert (tmp_path / "latest").read_text().strip() == "step_00000002"
    source = inspect.getsource(ckpt)
    assert "torch.load(" not in source and "import pickle" not in source


@pytest.mark.parametrize("failing", ["optimizer.safetensors", "trainer_state.json"])
def test_crash_during_save_keeps_previous_checkpoint(tmp_path, monkeypatch, failing):
    model, optimizer, _, _ = _parts(0)
    save_checkpoint(tmp_path, model=model, optimizer=optimizer, step=1, epoch=0, arch=ARCH)
    before = (tmp_path / "step_00000001" / "model.safetensors").read_bytes()

    real_tensors, real_json = ckpt._write_tensors, ckpt._write_json

    def boom_tensors(path, *args, **kwargs):
        if path.name == failing:
            raise KeyboardInterrupt("killed")
        return real_tensors(path, *args, **kwargs)

    def boom_json(path, *args, **kwargs):
        if path.name == failing:
            raise KeyboardInterrupt("killed")
        return real_json(path, *args, **kwargs)

    monkeypatch.setattr(ckpt, "_write_tensors", boom_tensors)
    monkeypatch.setattr(ckpt, "_write_json", boom_json)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, model=model, optimizer=optimizer, step=2, epoch=0, arch=ARCH)
    visible = sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith("."))
    assert visible == ["latest", "step_00000001"]
    assert not list(tmp_path.glob(".tmp*"))  # the temp dir was removed
    assert (tmp_path / "latest").read_text().strip() == "step_00000001"
    assert (tmp_path / "step_00000001" / "model.safetensors").read_bytes() == before
    model2, *_ = _parts(5)
    assert load_checkpoint(tmp_path, model=model2, restore_rng=False)["step"] == 1


def test_hard_kill_leftover_is_hidden_and_cleaned(tmp_path):
    model, *_ = _parts(0)
    save_checkpoint(tmp_path, model=model, step=1, epoch=0, arch=ARCH)
    stale = tmp_path / ".tmp-step_00000002-abc"  # what a SIGKILL mid-save leaves behind
    stale.mkdir()
    (stale / "model.safetensors").write_bytes(b"half")
    assert load_checkpoint(tmp_path, model=model, restore_rng=False)["step"] == 1
    save_checkpoint(tmp_path, model=model, step=2, epoch=0, arch=ARCH)
    assert not stale.exists()


def test_arch_mismatch_is_one_line_input_error(tmp_path):
    model, *_ = _parts(0)
    step_dir = save_checkpoint(tmp_path, model=model, step=100, epoch=0, arch=ARCH)
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path, model=model, arch={**ARCH, "temporal": "tap"})
    message = str(info.value)
    assert "\n" not in message
    assert f"checkpoint {step_dir} was saved for temporal='ttrans', this model has temporal='tap'" == message
    with pytest.raises(InputError, match=r"backbone\.hidden=16, this model has backbone\.hidden=32"):
        load_checkpoint(tmp_path, model=model, arch={**ARCH, "backbone": {"hidden": 32, "layers": 2}})
    with pytest.raises(InputError, match="extra_key='<missing>'"):
        load_checkpoint(tmp_path, model=model, arch={**ARCH, "extra_key": 1})


def test_shape_and_key_mismatch_is_one_line_input_error(tmp_path):
    model, *_ = _parts(0)
    save_checkpoint(tmp_path, model=model, step=1, epoch=0, arch=ARCH)
    wider = nn.Sequential(nn.Linear(8, 32), nn.LayerNorm(32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 3))
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path, model=wider)
    message = str(info.value)
    assert "\n" not in message and "'0.weight'" in message and "[16, 8]" in message and "[32, 8]" in message
    deeper = nn.Sequential(*list(_parts(0)[0]), nn.Linear(3, 3))
    with pytest.raises(InputError, match="no tensor '5.weight'"):
        load_checkpoint(tmp_path, model=deeper)
    with pytest.raises(InputError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope", model=model)
    (tmp_path / "step_00000001" / "model.safetensors").write_bytes(b"garbage, not a safetensors file")
    with pytest.raises(InputError, match="corrupt safetensors"):
        load_checkpoint(tmp_path, model=model)


def test_keep_last_prunes_after_new_checkpoint(tmp_path):
    model, *_ = _parts(0)
    for step in range(1, 6):
        save_checkpoint(tmp_path, model=model, step=step, epoch=0, arch=ARCH, keep_last=3)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004", "step_00000005"]
    assert (tmp_path / "latest").read_text().strip() == "step_00000005"
    # a step directory can be loaded directly, and re-saving an existing step replaces it
    assert load_checkpoint(tmp_path / "step_00000004", model=model)["step"] == 4
    save_checkpoint(tmp_path, model=model, step=4, epoch=1, arch=ARCH, keep_last=3)
    assert load_checkpoint(tmp_path, model=model)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "step_00000003", "step_00000004", "step_00000005"]


def test_tied_weights_round_trip(tmp_path):
    class Tied(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(5, 4)
            self.head = nn.Linear(4, 5, bias=False)
            self.head.weight = self.embed.weight

    torch.manual_seed(0)
    model = Tied()
    save_checkpoint(tmp_path, model=model, step=1, epoch=0, arch={})
    torch.manual_seed(1)
    other = Tied()
    load_checkpoint(tmp_path, model=other)
    assert torch.equal(other.embed.weight, model.embed.weight)
    assert other.head.weight is other.embed.weight


def test_omitted_frozen_tensors_are_checked_not_stored(tmp_path):
    from safetensors.torch import load_file

    from openvocab.models.checkpoint import load_model_subset

    model, *_ = _parts(0)  # "0.*" plays the frozen pretrained part: a fresh _parts(0) rebuilds it identically
    with torch.no_grad():
        model[4].weight.add_(1.0)  # the trained part moved away from its initialisation
    step_dir = save_checkpoint(tmp_path, model=model, step=1, epoch=0, arch=ARCH, omit={"0.weight", "0.bias"})
    stored = load_file(str(step_dir / "model.safetensors"))
    assert "0.weight" not in stored and "0.bias" not in stored and "4.weight" in stored

    again, *_ = _parts(0)
    load_checkpoint(tmp_path, model=again)
    for key, value in model.state_dict().items():
        assert torch.equal(again.state_dict()[key], value), key

    other, *_ = _parts(1)  # other "pretrained" weights: refused in one line, naming the tensor
    with pytest.raises(InputError) as info:
        load_checkpoint(tmp_path, model=other)
    assert "\n" not in str(info.value) and "frozen tensor '0.weight'" in str(info.value)
    with pytest.raises(InputError, match="frozen tensor '0.weight'"):
        load_model_subset(tmp_path, model=other, keep=lambda k: True)
    fresh, *_ = _parts(0)
    result = load_model_subset(tmp_path, model=fresh, keep=lambda k: k.startswith(("0.", "4.")))
    assert set(result["loaded"]) == {"0.weight", "0.bias", "4.weight", "4.bias"}
    assert torch.equal(fresh[4].weight, model[4].weight)
