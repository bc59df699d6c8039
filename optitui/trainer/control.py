"""Applying commands at a step boundary: all or nothing, always answered."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from optitui.store.commands import Command, CommandError
from optitui.store.fields import FieldError
from optitui.trainer import hparams
from optitui.trainer.lr import read_lr

if TYPE_CHECKING:
    from optitui.trainer.loop import Trainer


class Rejection(Exception):
    """A command that cannot be applied; nothing was changed."""


def group_label(group: dict[str, Any], index: int) -> str:
    name = group.get("name")
    return str(name) if isinstance(name, str) and name else str(index)


def resolve_groups(trainer: Trainer, group: int | str | None) -> list[int]:
    groups = trainer.optimizer.param_groups
    if group is None:
        return list(range(len(groups)))
    if isinstance(group, int):
        if not 0 <= group < len(groups):
            raise Rejection(f"group {group} does not exist; groups are 0..{len(groups) - 1}")
        return [group]
    for i, g in enumerate(groups):
        if g.get("name") == group:
            return [i]
    if group.isdigit():
        return resolve_groups(trainer, int(group))
    names = [group_label(g, i) for i, g in enumerate(groups)]
    raise Rejection(f"no group named {group!r}; groups: {', '.join(names)}")


def describe(cmd: Command) -> str:
    a = cmd.args
    where = "" if a.get("group") is None else f" group={a['group']}"
    if cmd.kind == "set":
        vals = " ".join(f"{k}={v}" for k, v in a["values"].items())
        return f"set {vals}{where}"
    if cmd.kind == "scale-lr":
        return f"scale-lr {a['factor']:g}{where}"
    if cmd.kind == "step":
        return f"step {a.get('n', 1)}"
    return cmd.kind


def apply(trainer: Trainer, cmd: Command) -> bool:
    """Apply ``cmd``; returns True when param groups changed. Raises Rejection."""
    try:
        if cmd.kind == "set":
            return _set(trainer, cmd.args)
        if cmd.kind == "scale-lr":
            return _scale(trainer, cmd.args)
        if cmd.kind == "pause":
            trainer.pause()
        elif cmd.kind == "resume":
            trainer.resume()
        elif cmd.kind == "step":
            trainer.step_then_pause(int(cmd.args.get("n", 1)))
        elif cmd.kind == "stop":
            trainer.request_stop("stop command")
        else:
            raise Rejection(f"unknown command {cmd.kind!r}")
    except (FieldError, CommandError) as exc:
        raise Rejection(str(exc)) from None
    return False


def _set(trainer: Trainer, args: dict[str, Any]) -> bool:
    targets = resolve_groups(trainer, args.get("group"))
    groups = trainer.optimizer.param_groups
    values: dict[str, Any] = args["values"]
    checked: list[dict[str, Any]] = []
    for i in targets:  # check every group before touching any
        try:
            vals = hparams.check_values(trainer.optimizer, groups[i], values)
            if "lr" in vals:
                trainer.lr.check_set(i, vals["lr"])
        except FieldError as exc:
            label = group_label(groups[i], i)
            raise Rejection(f"group {label}: {exc}") from None
        checked.append(vals)
    for i, vals in zip(targets, checked, strict=True):
        for key, value in vals.items():
            if key == "lr":
                trainer.lr.set_lr(i, value)
            else:
                hparams.assign(trainer.optimizer, groups[i], key, value)
    return True


def _scale(trainer: Trainer, args: dict[str, Any]) -> bool:
    targets = resolve_groups(trainer, args.get("group"))
    factor = float(args["factor"])
    groups = trainer.optimizer.param_groups
    for i in targets:
        new = read_lr(groups[i]) * factor
        if not math.isfinite(new):
            raise Rejection(f"group {group_label(groups[i], i)}: lr * {factor:g} is not finite")
    for i in targets:
        trainer.lr.scale(i, factor)
    return True
