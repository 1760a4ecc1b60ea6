"""Warm-up + cosine schedule and AdamW of Text4Vis Table A.3."""

from __future__ import annotations

import json
import math

import pytest
import torch
from torch import nn

from openvocab.train.schedule import build_adamw, cosine_with_warmup, no_weight_decay

BASE, MIN, TOTAL, WARM = 5e-5, 5e-6, 1000, 100


def _closed_form(step: int) -> float:
    if step < WARM:
        return BASE * step / WARM
    p = min(1.0, (step - WARM) / (TOTAL - WARM))
    return MIN + (BASE - MIN) * 0.5 * (1 + math.cos(math.pi * p))


def _lrs(optimizer, scheduler, steps):
    out = {}
    for s in range(steps + 1):
        out[s] = [g["lr"] for g in optimizer.param_groups]
        optimizer.step()
        scheduler.step()
    return out


def test_lr_at_key_steps_equals_closed_form():
    param = nn.Parameter(torch.zeros(2))
    optimizer = torch.optim.AdamW([param], lr=BASE)
    scheduler = cosine_with_warmup(optimizer, total_steps=TOTAL, warmup_steps=WARM, base_lr=BASE, min_lr=MIN)
    lrs = _lrs(optimizer, scheduler, TOTAL + 5)
    assert lrs[0][0] == 0.0  # linear warm-up from 0
    assert lrs[WARM // 2][0] == pytest.approx(BASE / 2, rel=1e-12)
    assert lrs[WARM][0] == pytest.approx(BASE, rel=1e-12)  # end of warm-up: base lr
    mid = WARM + (TOTAL - WARM) // 2
    assert lrs[mid][0] == pytest.approx((BASE + MIN) / 2, rel=1e-12)  # cosine midpoint
    assert lrs[TOTAL][0] == pytest.approx(MIN, rel=1e-12)  # end: minimal lr
    assert lrs[TOTAL + 5][0] == pytest.approx(MIN, rel=1e-12)  # and it stays there
    for s in (1, 37, 99, 101, 250, 999):
        assert lrs[s][0] == pytest.approx(_closed_form(s), rel=1e-12, abs=1e-20)


def test_groups_scale_proportionally_and_state_is_json():
    a, b = nn.Parameter(torch.zeros(1)), nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([{"params": [a], "lr": BASE}, {"params": [b], "lr": BASE / 10}])
    scheduler = cosine_with_warmup(optimizer, total_steps=TOTAL, warmup_steps=WARM, base_lr=BASE, min_lr=MIN)
    lrs = _lrs(optimizer, scheduler, 300)
    assert lrs[300][1] == pytest.approx(lrs[300][0] / 10, rel=1e-12)
    state = json.loads(json.dumps(scheduler.state_dict()))
    # a fresh scheduler restored from the JSON state continues identically
    param = nn.Parameter(torch.zeros(1))
    other = nn.Parameter(torch.zeros(1))
    opt2 = torch.optim.AdamW([{"params": [param], "lr": BASE}, {"params": [other], "lr": BASE / 10}])
    sched2 = cosine_with_warmup(opt2, total_steps=1, warmup_steps=0, base_lr=1.0, min_lr=0.0)  # overwritten by load
    sched2.load_state_dict(state)
    for _ in range(3):
        scheduler.step()
        sched2.step()
    assert scheduler.get_last_lr() == sched2.get_last_lr()


def test_no_warmup_and_validation():
    param = nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=1.0)
    scheduler = cosine_with_warmup(optimizer, total_steps=10, warmup_steps=0, base_lr=1.0, min_lr=0.1)
    assert optimizer.param_groups[0]["lr"] == 1.0
    with pytest.raises(ValueError):
        cosine_with_warmup(optimizer, total_steps=10, warmup_steps=11, base_lr=1.0, min_lr=0.1)
    with pytest.raises(ValueError):
        cosine_with_warmup(optimizer, total_steps=10, warmup_steps=1, base_lr=1.0, min_lr=2.0)
    del scheduler


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.token_embedding = nn.Embedding(10, 4)
        self.positional_embedding = nn.Parameter(torch.zeros(3, 4))
        self.patch_embedding = nn.Conv2d(3, 4, 2)
        self.fc = nn.Linear(4, 4)
        self.ln_post = nn.LayerNorm(4)
        self.logit_scale = nn.Parameter(torch.tensor(4.6))
        self.frozen = nn.Parameter(torch.zeros(4, 4), requires_grad=False)


def test_build_adamw_decay_split():
    model = _Tiny()
    optimizer = build_adamw(model, lr=BASE)
    groups = {g["group_name"]: g for g in optimizer.param_groups}
    assert set(groups) == {"group0/decay", "group0/no_decay"}
    assert groups["group0/decay"]["param_names"] == ["patch_embedding.weight", "fc.weight"]
    assert set(groups["group0/no_decay"]["param_names"]) == {
        "token_embedding.weight",
        "positional_embedding",
        "patch_embedding.bias",
        "fc.bias",
        "ln_post.weight",
        "ln_post.bias",
        "logit_scale",
    }
    assert groups["group0/decay"]["weight_decay"] == 0.2 and groups["group0/no_decay"]["weight_decay"] == 0.0
    assert optimizer.defaults["betas"] == (0.9, 0.98) and optimizer.defaults["eps"] == 1e-8
    assert all(g["lr"] == BASE for g in optimizer.param_groups)
    assert no_weight_decay("anything", torch.zeros(3))


def test_build_adamw_groups_with_own_lr():
    model = _Tiny()
    optimizer = build_adamw(
        [
            {"named_params": model.fc.named_parameters(prefix="fc"), "lr": 1e-3, "name": "head"},
            {"named_params": list(model.named_parameters()), "name": "rest"},  # fc params already taken: skipped
        ],
        lr=BASE,
    )
    by_name = {g["group_name"]: g for g in optimizer.param_groups}
    assert by_name["head/decay"]["lr"] == 1e-3 and by_name["head/decay"]["param_names"] == ["fc.weight"]
    assert by_name["rest/decay"]["lr"] == BASE
    all_names = [n for g in optimizer.param_groups for n in g["param_names"]]
    assert len(all_names) == len(set(all_names)) == 9
