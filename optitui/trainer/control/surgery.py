"""Changes to the optimizer beyond a field: reset its state, freeze a group, swap its class."""

from __future__ import annotations

import inspect
from typing import Any

import torch
from torch.optim import Optimizer

from optitui.store.commands import SWAPPABLE
from optitui.store.fields import FieldError
from optitui.trainer.core import hparams
from optitui.trainer.core.training import Training

#: keys schedulers keep in param groups; they carry over to a swapped optimizer
SCHEDULER_KEYS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")


class SurgeryError(ValueError):
    """A change that cannot be made; nothing was changed."""


def reset_state(optimizer: Optimizer, groups: list[int]) -> int:
    """Drop the per-parameter state (moments, step counts) of the given groups."""
    n = 0
    for i in groups:
        for p in optimizer.param_groups[i]["params"]:
            if optimizer.state.pop(p, None) is not None:
                n += 1
    return n


def frozen(group: dict[str, Any]) -> bool:
    return all(not p.requires_grad for p in group["params"])


def set_frozen(optimizer: Optimizer, groups: list[int], freeze: bool) -> None:
    """Freeze: no gradient, so no update and no weight decay (optimizers skip grad=None)."""
    if freeze:
        left = [
            i for i, g in enumerate(optimizer.param_groups) if i not in groups and not frozen(g)
        ]
        if not left:
            raise SurgeryError("at least one group must keep training; unfreeze another first")
    for i in groups:
        for p in optimizer.param_groups[i]["params"]:
            p.requires_grad_(not freeze)
            if freeze:
                p.grad = None


def _constructor_keys(cls: type[Optimizer]) -> set[str]:
    params = inspect.signature(cls.__init__).parameters
    return {k for k in params if k not in ("self", "params")}


def _swappable(name: str, values: dict[str, Any]) -> tuple[Any, set[str]]:
    """The class ``name`` names and its constructor's fields, once ``values`` all are some."""
    if name not in SWAPPABLE:
        raise SurgeryError(f"name: {name!r} is not one of {', '.join(SWAPPABLE)}")
    cls: Any = getattr(torch.optim, name)
    keys = _constructor_keys(cls)
    unknown = sorted(set(values) - keys)
    if unknown:
        raise SurgeryError(f"{name} has no field(s) {unknown}; it takes {', '.join(sorted(keys))}")
    return cls, keys


def _construct(cls: Any, groups: list[dict[str, Any]], values: dict[str, Any]) -> Optimizer:
    """``cls`` over ``groups``, with ``values`` checked the same way an edit would be.

    The values are checked against the fields of the class's own defaults, not against
    themselves: torch checks its constructor's arguments, not a group's, so a group's
    ``betas=0.9`` would build and then fail at the first step.
    """
    try:
        bare = cls([{k: v for k, v in g.items() if k not in values} for g in groups])
        for g in bare.param_groups:
            hparams.check_values(bare, g, values)
        opt: Optimizer = cls(groups)
    except FieldError as exc:
        raise SurgeryError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise SurgeryError(f"{cls.__name__}: {exc}") from None
    return opt


def new_optimizer(name: str, params: list[torch.Tensor], values: dict[str, Any]) -> Optimizer:
    """A fresh optimizer of class ``name`` with its own defaults and ``values``, checked by
    the rules of a swap: where there is no optimizer yet to carry settings from."""
    cls, _ = _swappable(name, values)
    return _construct(cls, [{"params": params, **values}], values)


def build_swapped(trainer: Training, name: str, values: dict[str, Any]) -> Optimizer:
    """A new optimizer of class ``name`` over the same groups (names, lrs, shared fields)."""
    cls, keys = _swappable(name, values)
    drives = trainer.lr.drives_momentum()
    if drives and not ({"momentum", "betas"} & keys):
        raise SurgeryError(
            f"{drives} cycles momentum, and {name} has none; detach the scheduler first"
        )
    old = trainer.optimizer
    groups = []
    for g in old.param_groups:
        new: dict[str, Any] = {"params": g["params"]}
        for k, v in g.items():
            if k in ("name", *SCHEDULER_KEYS) or (k in keys and k in ("lr", "weight_decay")):
                new[k] = v
        if "momentum" in keys and isinstance(g.get("betas"), tuple | list) and "betas" not in keys:
            new["momentum"] = float(hparams.plain(g["betas"][0]))
        if "betas" in keys and "momentum" in g and "betas" not in g and g["momentum"]:
            new["betas"] = (float(hparams.plain(g["momentum"])), 0.999)
        new.update(values)  # the user's values win over what carried over
        groups.append(new)
    return _construct(cls, groups, values)


def rebind_scheduler(scheduler: Any, optimizer: Optimizer) -> None:
    """Point a scheduler (and the children of Sequential/Chained ones) at a new optimizer."""
    stack = [scheduler]
    while stack:
        s = stack.pop()
        if hasattr(s, "optimizer"):
            s.optimizer = optimizer
        stack.extend(getattr(s, "_schedulers", []))
