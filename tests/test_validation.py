"""Every value is checked like the torch constructors check it; a rejected one changes nothing.

The oracle is torch itself: a value is valid when the optimizer's constructor
accepts it and it is finite. Accepted values must also survive the next step.
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import end_threads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jobs import make_trainer, tiny_job

from optitui.store.commands import Command, CommandError, parse
from optitui.trainer.control import commands as control
from optitui.trainer.loop.trainer import Trainer

NUMBERS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-2.0, max_value=2.0),
    st.integers(min_value=-3, max_value=3),
    st.sampled_from([0.0, 1.0, -0.0, 0.999999, 1e-300, 1e300]),
)
VALUES = st.one_of(
    NUMBERS,
    st.booleans(),
    st.tuples(NUMBERS, NUMBERS),
    st.tuples(NUMBERS),
    st.tuples(NUMBERS, NUMBERS, NUMBERS),
)

# optimizer class -> numeric fields the constructor checks (or that must merely be finite)
CASES: dict[str, list[str]] = {
    "SGD": ["lr", "momentum", "weight_decay"],
    "Adam": ["lr", "betas", "eps", "weight_decay"],
    "AdamW": ["lr", "betas", "eps", "weight_decay"],
    "RMSprop": ["lr", "momentum", "alpha", "eps", "weight_decay"],
    "Adagrad": ["lr", "lr_decay", "eps", "weight_decay"],
    "Adadelta": ["lr", "rho", "eps", "weight_decay"],
    "Adamax": ["lr", "betas", "eps", "weight_decay"],
    "NAdam": ["lr", "betas", "eps", "weight_decay", "momentum_decay"],
    "RAdam": ["lr", "betas", "eps", "weight_decay"],
    "ASGD": ["lr", "weight_decay"],
    "Rprop": ["lr", "etas"],
}


LIMIT = float(torch.finfo(torch.float32).max) ** 0.5


def _ours(v: Any, pair: bool = False) -> bool:
    """Our rules on top of torch's: plain numbers (no true/false), finite, small enough
    (at most sqrt of float32's max: torch raises on overflow inside step()), and exactly
    two values for a pair such as betas (torch only looks at the first two)."""
    if pair:
        return isinstance(v, tuple) and len(v) == 2 and all(_ours(x) for x in v)
    if isinstance(v, tuple):
        return False
    return not isinstance(v, bool) and math.isfinite(v) and abs(v) <= LIMIT


def torch_accepts(cls_name: str, field: str, value: Any) -> bool:
    cls = getattr(torch.optim, cls_name)
    p = torch.nn.Parameter(torch.zeros(2))
    if isinstance(value, tuple) and not any(isinstance(v, bool) for v in value):
        value = tuple(float(v) for v in value)  # torch refuses (float, int) mixes; we normalise
    try:
        cls([p], **({"lr": 0.01} | {field: value}))
    except (ValueError, TypeError, RuntimeError, IndexError):
        return False
    return True


def _state(trainer: Trainer) -> tuple[Any, Any]:
    groups = [{k: v for k, v in g.items() if k != "params"} for g in trainer.optimizer.param_groups]
    return copy.deepcopy(groups), copy.deepcopy(trainer.optimizer.state_dict()["state"])


def same(a: Any, b: Any) -> bool:
    """Deep equality that compares tensors bit for bit."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return (  # bytes, not ==, so that NaN equals NaN
            isinstance(a, torch.Tensor)
            and isinstance(b, torch.Tensor)
            and a.dtype == b.dtype
            and a.shape == b.shape
            and a.detach().cpu().numpy().tobytes() == b.detach().cpu().numpy().tobytes()
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def _set(trainer: Trainer, values: dict[str, Any], group: int | None = None) -> None:
    args = {"values": values} if group is None else {"values": values, "group": group}
    control.apply(trainer, Command("t", "set", args, "{}"))


_TRAINERS: dict[str, Trainer] = {}


@pytest.fixture(scope="module")
def trainers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Trainer]]:
    root = tmp_path_factory.mktemp("validation")
    for name in CASES:
        trainer = make_trainer(root, tiny_job(name), name=name)
        # a few real steps, so per-parameter state exists when edits land
        trainer._start()
        for _ in range(3):
            trainer._train_step()
            trainer.step += 1
        _TRAINERS[name] = trainer
    yield _TRAINERS
    for trainer in _TRAINERS.values():  # their threads end with the module's tests
        end_threads(trainer)


@pytest.mark.parametrize("cls_name", list(CASES))
@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_values_match_the_constructor(
    trainers: dict[str, Trainer], cls_name: str, data: st.DataObject
) -> None:
    trainer = trainers[cls_name]
    field = data.draw(st.sampled_from(CASES[cls_name]))
    value = data.draw(VALUES)
    valid = _ours(value, field in ("betas", "etas")) and torch_accepts(cls_name, field, value)
    before = _state(trainer)
    try:
        _set(trainer, {field: value})
        accepted = True
    except control.Rejection as exc:
        accepted = False
        assert str(exc).startswith("group body: " + field), str(exc)
        assert "allowed" in str(exc)
    assert accepted == valid, (cls_name, field, value)
    if accepted:
        got = trainer.optimizer.param_groups[0][field]
        want = tuple(float(v) for v in value) if isinstance(value, tuple) else float(value)
        assert (tuple(got) if isinstance(got, list | tuple) else float(got)) == want
        trainer._train_step()  # the next step must not raise
        trainer.step += 1
    else:
        assert same(_state(trainer), before)


def test_constraints_beyond_the_constructor(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"momentum": 0.9, "nesterov": True}))
    before = _state(trainer)
    for bad in ({"momentum": 0.0}, {"dampening": 0.1}, {"lr": math.nan}, {"lr": True}):
        with pytest.raises(control.Rejection):
            _set(trainer, bad)
    assert same(_state(trainer), before)
    trainer2 = make_trainer(tmp_path, tiny_job("Rprop"), name="rprop")
    with pytest.raises(control.Rejection, match="min_step <= max_step"):
        _set(trainer2, {"step_sizes": (1.0, 0.5)})


def test_all_groups_or_none(tmp_path: Path) -> None:
    job = tiny_job("SGD")
    job.optimizer.param_groups[1]["momentum"] = 0.5
    job.optimizer.param_groups[1]["nesterov"] = True
    trainer = make_trainer(tmp_path, job)
    before = _state(trainer)
    # valid for group 0, but would break group 1's nesterov: neither group changes
    with pytest.raises(control.Rejection, match="group head"):
        _set(trainer, {"momentum": 0.0, "lr": 0.3})
    assert same(_state(trainer), before)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=500, deadline=None)
@given(
    kind=st.sampled_from(["set", "scale-lr", "pause", "step", "stop", "bogus", 3, None]),
    args=JSON,
    extra=st.dictionaries(st.sampled_from(["id", "sent", "zzz"]), JSON, max_size=2),
)
def test_malformed_commands_only_raise_command_error(kind: Any, args: Any, extra: Any) -> None:
    raw = json.dumps({"kind": kind, "args": args, **extra}).encode()
    try:
        cmd = parse(raw, "fallback")
    except CommandError as exc:
        assert str(exc)
        return
    assert cmd.kind in ("set", "scale-lr", "pause", "step", "stop")
