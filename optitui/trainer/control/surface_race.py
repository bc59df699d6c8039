"""The optimizer race on a 2D test function: torch.optim on one 2-element tensor.

A candidate reads on a surface as it would on a live job whose optimizer is the
*base* (SGD unless named) at the surface's lr for it:

- ``lr*F``: the base with its lr times F;
- ``FIELD=VALUE,...``: the base with those fields, checked as ``set`` checks them;
- ``optimizer=CLASS,...``: CLASS with its own defaults, the surface's lr for it unless
  ``lr=`` is given, checked as ``swap-optimizer`` checks them (there is no current
  optimizer to carry settings from).

Every candidate is built before any runs, so one bad candidate refuses the race.
Each step is ``zero_grad(); f(x, y).backward(); step()``, the loop a person
would write, in float64 on the CPU: its paths are those of that loop, bit for bit.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim import Optimizer

from optitui.store.candidates import Candidate
from optitui.store.fields import FieldError
from optitui.surface.functions import Point, Surface
from optitui.surface.result import Racer, SurfaceRace
from optitui.trainer.control import surgery
from optitui.trainer.core import hparams
from optitui.trainer.core.lr import read_lr

DTYPE = torch.float64


class SurfaceRaceError(ValueError):
    """A candidate the race cannot run; nothing ran."""


def build(candidate: Candidate, surface: Surface, base: str, param: torch.Tensor) -> Optimizer:
    """The optimizer ``candidate`` means on ``surface``, over ``param``. Raises
    SurfaceRaceError naming the candidate and the reason."""
    try:
        if candidate.form == "swap":
            assert candidate.optimizer is not None
            name = candidate.optimizer
            values = {"lr": surface.lrs[name], **candidate.values}
            return surgery.new_optimizer(name, [param], values)
        opt = surgery.new_optimizer(base, [param], {"lr": surface.lrs[base]})
        group = opt.param_groups[0]
        if candidate.form == "scale":
            assert candidate.factor is not None
            wanted: dict[str, Any] = {"lr": read_lr(group) * candidate.factor}
        else:
            wanted = dict(candidate.values)
        checked = hparams.check_values(opt, group, wanted)  # the checks of `set`
        for key, value in checked.items():
            hparams.assign(opt, group, key, value)
        return opt
    except (FieldError, surgery.SurgeryError) as exc:
        raise SurfaceRaceError(f"candidate {candidate.text!r}: {exc}") from None


def run_one(
    surface: Surface, optimizer: Optimizer, param: torch.Tensor, steps: int, name: str, text: str
) -> Racer:
    """``steps`` steps of ``optimizer`` on ``surface``; stops at the first point that is
    not finite (a CPU tensor: the check costs no device sync)."""
    path = torch.empty(steps + 1, 2, dtype=DTYPE)
    path[0] = param.detach()
    taken = 0
    diverged: int | None = None
    for t in range(1, steps + 1):
        optimizer.zero_grad()
        loss = surface.f(param[0], param[1], torch)
        loss.backward()
        optimizer.step()
        if not bool(torch.isfinite(param).all()):
            diverged = t
            break
        path[t] = param.detach()
        taken = t
    points = [(float(x), float(y)) for x, y in path[: taken + 1].tolist()]
    group = optimizer.param_groups[0]
    return Racer(
        name=name,
        candidate=text,
        optimizer=type(optimizer).__name__,
        changed=_changed(optimizer, group),
        settings={k: hparams.plain(v) for k, v in group.items() if k not in hparams.HIDDEN},
        path=tuple(points),
        diverged_at=diverged,
    )


def _changed(optimizer: Optimizer, group: dict[str, Any]) -> dict[str, Any]:
    """The group's fields that differ from its class's constructor defaults; lr always."""
    params = inspect.signature(type(optimizer).__init__).parameters
    out: dict[str, Any] = {}
    for key, value in group.items():
        if key in hparams.HIDDEN:
            continue
        plain = hparams.plain(value)
        default = params[key].default if key in params else inspect.Parameter.empty
        default = hparams.plain(default) if default is not inspect.Parameter.empty else None
        if key == "lr" or (default is not None and plain != default):
            out[key] = plain
    return out


@dataclass(frozen=True)
class Prepared:
    """Every candidate built and checked, none run yet."""

    surface: Surface
    start: Point
    entries: tuple[tuple[str, Candidate, torch.Tensor, Optimizer], ...]

    def run(self, steps: int) -> SurfaceRace:
        racers = tuple(
            run_one(self.surface, optimizer, param, steps, name, candidate.text)
            for name, candidate, param, optimizer in self.entries
        )
        dtype = str(DTYPE).removeprefix("torch.")
        return SurfaceRace(self.surface, self.start, steps, dtype, racers)


def prepare(
    surface: Surface,
    candidates: Sequence[tuple[str, Candidate]],
    *,
    start: Point | None = None,
    base: str = "SGD",
) -> Prepared:
    """Build every (name, candidate) from ``start`` (the surface's own unless given).
    Raises SurfaceRaceError for the first one that cannot run."""
    if base not in surface.lrs:
        raise SurfaceRaceError(f"base: {base!r} is not one of {', '.join(surface.lrs)}")
    origin = surface.start if start is None else start
    entries = []
    for name, candidate in candidates:
        param = torch.tensor(origin, dtype=DTYPE, requires_grad=True)
        entries.append((name, candidate, param, build(candidate, surface, base, param)))
    return Prepared(surface, origin, tuple(entries))


def race(
    surface: Surface,
    candidates: Sequence[tuple[str, Candidate]],
    *,
    steps: int,
    start: Point | None = None,
    base: str = "SGD",
) -> SurfaceRace:
    """Every (name, candidate) for ``steps`` steps; nothing runs unless all can."""
    return prepare(surface, candidates, start=start, base=base).run(steps)
