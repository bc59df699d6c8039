"""Every torch.optim optimizer: each editable field takes effect on the next step.

For each class and each editable field, a valid new value is set through the
command path, one step is taken on a fixed batch, and the parameters are
compared bit for bit with a copy of the same optimizer where the value was
written into the param group by hand (torch's own way), stepped on the same
batch. Fields that switch on per-parameter state get that state created the
documented way in the reference, so the next step cannot fail.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, make_trainer, tiny_job

from optitui.store.commands import SWAPPABLE, CommandError
from optitui.store.fields import FieldError, FieldSpec
from optitui.trainer.control import commands as control
from optitui.trainer.core import hparams
from optitui.trainer.loop.trainer import Trainer

CLASSES = list(SWAPPABLE)
# per class, constructor options that make every field matter (momentum on, ...)
OPTIONS: dict[str, dict[str, Any]] = {
    "SGD": {"momentum": 0.9, "weight_decay": 1e-3},
    "RMSprop": {"weight_decay": 1e-3},
    "Adagrad": {"weight_decay": 1e-3},
}
X = torch.randn(32, 8, generator=torch.Generator().manual_seed(1))
Y = torch.randn(32, 1, generator=torch.Generator().manual_seed(2))


def new_value(spec: FieldSpec, current: Any) -> Any:
    """A valid value different from ``current``."""
    if spec.kind == "bool":
        return not current
    if spec.kind == "tuple":
        return tuple(new_value(s, c) for s, c in zip(spec.items, current, strict=True))
    c = float(current)
    low = -1e6 if spec.low is None or spec.low < -1e6 else spec.low
    high = 1e6 if spec.high is None or spec.high > 1e6 else spec.high
    for v in (c * 0.5, c * 1.5, c + 0.1, c - 0.1, (low + high) / 2, low + 0.01, 0.3):
        if v != c:
            try:
                return spec.check(v)
            except ValueError:
                continue
    raise AssertionError(f"no valid new value for {spec}")


def one_step(model: torch.nn.Module, opt: torch.optim.Optimizer) -> None:
    opt.zero_grad(set_to_none=True)
    torch.nn.functional.mse_loss(model(X), Y).backward()
    opt.step()


def by_hand(model: torch.nn.Module, opt: torch.optim.Optimizer, field: str, value: Any) -> None:
    """The reference edit: write the value into every group, creating state torch needs."""
    for g in opt.param_groups:
        for p in g["params"]:
            st = opt.state.get(p)
            if st and field == "amsgrad" and value:
                st["max_exp_avg_sq"] = st["exp_avg_sq"].clone()
            if st and field == "centered" and value:
                st["grad_avg"] = torch.zeros_like(p)
            if st and type(opt).__name__ == "RMSprop" and field == "momentum" and value > 0:
                st.setdefault("momentum_buffer", torch.zeros_like(p))
        g[field] = list(value) if isinstance(g[field], list) else value


def _fields(trainer: Trainer) -> dict[str, FieldSpec]:
    group = trainer.optimizer.param_groups[0]
    return {k: s for k, s in hparams.group_fields(trainer.optimizer, group).items() if s.editable}


def _ready(tmp_path: Path, cls: str, name: str) -> Trainer:
    trainer = make_trainer(tmp_path, tiny_job(cls, OPTIONS.get(cls)), name=name)
    trainer._start()
    for _ in range(3):  # state exists before the edit
        one_step(trainer.model, trainer.optimizer)
    return trainer


@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_takes_effect(tmp_path: Path, cls: str) -> None:
    probe = _ready(tmp_path, cls, "probe")
    fields = _fields(probe)
    assert "lr" in fields and len(fields) >= 3, fields
    for i, (field, spec) in enumerate(fields.items()):
        trainer = _ready(tmp_path, cls, f"t{i}")
        value = new_value(spec, hparams.plain(trainer.optimizer.param_groups[0][field]))
        ref_model, ref_opt = copy.deepcopy((trainer.model, trainer.optimizer))
        control.apply(trainer, command("set", values={field: value}))
        by_hand(ref_model, ref_opt, field, value)
        one_step(trainer.model, trainer.optimizer)  # must not raise
        one_step(ref_model, ref_opt)
        for p, q in zip(trainer.model.parameters(), ref_model.parameters(), strict=True):
            assert torch.equal(p, q), (cls, field, value)
        got = hparams.plain(trainer.optimizer.param_groups[1][field])
        assert got == (list(value) if isinstance(value, tuple) else value), (field, got, value)


@pytest.mark.parametrize("cls", CLASSES)
def test_every_field_rejects_an_invalid_value(tmp_path: Path, cls: str) -> None:
    trainer = _ready(tmp_path, cls, "t")
    before = copy.deepcopy(trainer.optimizer.state_dict())
    for field, spec in _fields(trainer).items():
        bad: Any = "nan" if spec.kind != "bool" else 0.5
        if spec.kind in ("float", "int"):
            unbounded = spec.low is None or spec.low < -1e6
            bad = float("nan") if unbounded else spec.low - 1
        elif spec.kind == "tuple":
            bad = (float("inf"),) * len(spec.items)
        # refused at the boundary (non-finite) or by the job (out of bounds)
        with pytest.raises((control.Rejection, CommandError), match=field):
            control.apply(trainer, command("set", values={field: bad}))
    after = trainer.optimizer.state_dict()
    assert after["param_groups"] == before["param_groups"]


def test_tensor_lr_is_updated_in_place(tmp_path: Path) -> None:
    job = tiny_job("Adam", {"lr": torch.tensor(0.01), "foreach": False})
    trainer = make_trainer(tmp_path, job)
    lr = trainer.optimizer.param_groups[0]["lr"]
    control.apply(trainer, command("set", values={"lr": 0.5}, group=0))
    assert trainer.optimizer.param_groups[0]["lr"] is lr and float(lr) == 0.5
    one_step(trainer.model, trainer.optimizer)


def test_user_subclass_fields_come_from_its_groups(tmp_path: Path) -> None:
    class Tuned(torch.optim.SGD):
        def __init__(self, params: Any, lr: float = 0.1, boost: float = 1.0) -> None:
            super().__init__(params, lr=lr)
            for g in self.param_groups:
                g.setdefault("boost", boost)
                g.setdefault("warm", True)
                g.setdefault("window", 4)

    model = torch.nn.Linear(8, 1)
    job = tiny_job()
    job.model, job.optimizer = model, Tuned(model.parameters())
    trainer = make_trainer(tmp_path, job)
    fields = hparams.group_fields(trainer.optimizer, trainer.optimizer.param_groups[0])
    assert fields["boost"].kind == "float" and fields["warm"].kind == "bool"
    assert fields["window"].kind == "int"
    control.apply(trainer, command("set", values={"boost": 2.5, "warm": False, "window": 8}))
    g = trainer.optimizer.param_groups[0]
    assert (g["boost"], g["warm"], g["window"]) == (2.5, False, 8)
    with pytest.raises(control.Rejection, match=r"window: got 2\.5"):
        control.apply(trainer, command("set", values={"window": 2.5}))


def test_an_integer_past_a_floats_range_is_refused_as_a_field_value() -> None:
    spec = FieldSpec("lr", "float", low=0.0)
    with pytest.raises(FieldError, match="lr"):
        spec.check(10**400)
