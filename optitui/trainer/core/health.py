"""Optimizer health per param group: gradient norm, parameter norm and update ratio.

Every ``health_every`` steps, for every group: ‖g‖, ‖w‖ and ‖Δw‖/‖w‖ of that step,
where Δw is the update the optimizer actually applied (momentum, Adam's scaling,
weight decay and the lr all in it) and w the parameters it was applied to.

How, without a host-device sync: on a health step only, the groups' trainable
parameters are copied just before the step (one fused copy); just after it the new
values are subtracted from the copies in place and every tensor's norm is taken with
``torch._foreach_norm`` (two calls: the gradients, parameters and frozen ones, then
the updates). Those per-tensor norms wait, still on the device, for the flush, which
stacks every measurement's with the losses for its one batched read; each group's
three norms are then folded on the host (``math.hypot`` over its tensors'). A
measurement so costs four tensor operations, and the steps between pay a modulo.

Before and after: the trainer's own step is bracketed directly (:meth:`Health.start`
and :meth:`Health.take`); a loop's own ``optimizer.step()`` (a probe, Lightning, the
HF Trainer) gets a step pre- and post-hook registered for the health step only.

- The gradient is what ``p.grad`` holds when the step returns: for every torch
  optimizer but LBFGS the one the step used (none changes it in place; a fused
  one under a GradScaler leaves it unscaled); LBFGS leaves the gradient of its last
  closure evaluation.
- A fused optimizer under a GradScaler gets still-scaled gradients: in a loop's own
  step their norm is taken in the pre-hook and divided by the same ``grad_scale``.
- A step the GradScaler skipped (inf/NaN gradients) applied no update: its health
  is not recorded (NaN, like its gradient norm).
- With ``health_every=0`` no hook is registered and nothing is computed.

The copies are the measurement's memory: a full copy of the trainable parameters for
the length of one step. Up to :data:`COPY_LIMIT_GB` (``Job(health_copy_gb=...)``)
every tensor is copied and the ratio is exact. A larger model would risk running out
of device memory for a number on a dashboard, so each group then copies a share of the
limit (in proportion to its size), taking its tensors in turn from where the last
measurement stopped: its update ratio is that of the tensors copied, ‖Δw_S‖/‖w_S‖, a
sample that goes round the whole group over successive measurements. Its gradient and
parameter norms stay exact (the other tensors' norms are taken before the step, no
copy). A group none of whose tensors fits its share has no ratio (NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from itertools import chain
from math import hypot
from operator import attrgetter
from typing import Any

import torch
from torch.optim import Optimizer

#: the series recorded per group, in the order of a result's columns
SERIES = ("grad_norm", "param_norm", "update_ratio")
#: the most a measurement copies, in GB (above it each group's ratio is from a sample)
COPY_LIMIT_GB = 1.0


def column(series: str, group: int) -> str:
    """The store's column of one group's series (exported as ``<series>/<group name>``)."""
    return f"{series}/{group}"


def check_copy_gb(value: Any) -> float:
    """``value`` as GB > 0 the health may copy, or ValueError."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    try:  # an int past a float's range (10**400) is no number of GB either
        gb = float(value) if ok else math.nan
    except OverflowError:
        gb = math.inf
    if not math.isfinite(gb) or gb <= 0:
        raise ValueError(f"health_copy_gb must be a number of GB > 0, got {value!r}")
    return gb


def check_every(value: Any, what: str = "health_every") -> int:
    """``value`` as a whole number of steps >= 0, or ValueError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} must be a whole number >= 0 (0 turns it off), got {value!r}")
    return value


def _dense(g: torch.Tensor) -> torch.Tensor:
    # a sparse gradient's norm is its coalesced values' (SparseAdam coalesces it too)
    return g.coalesce().values() if g.is_sparse else _local(g)


#: tensors that are their own local values (neither DTensors nor other wrappers)
_PLAIN = (torch.Tensor, torch.nn.Parameter)


def _local(t: torch.Tensor) -> torch.Tensor:
    # an FSDP2 (DTensor) parameter or gradient: this rank's shard, which the optimizer
    # updates in place (foreach ops have no sharding rules for DTensors)
    if type(t) in _PLAIN:  # the common case, without the attribute lookup
        return t
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


Span = tuple[int, int]
#: where one group's norms sit among a measurement's: (start, stop) of its gradients,
#: its copied trainable parameters, its frozen ones, its updates and its trainable
#: parameters not copied (none unless the copy limit is reached)
Slices = tuple[Span, Span, Span, Span, Span]


def _folds(
    trainable: list[int], frozen: list[int], grads: list[int], uncopied: list[int] | None = None
) -> list[Slices]:
    """The slices of each group among the norms, laid out ``[copied | frozen | gradients
    | updates | not copied]`` (each part in group order), from each group's counts."""
    uncopied = uncopied or [0] * len(trainable)
    k_all, f_all, g_all = sum(trainable), sum(frozen), sum(grads)
    out: list[Slices] = []
    at_c, at_f, at_g = 0, k_all, k_all + f_all
    at_d = at_g + g_all
    at_u = at_d + k_all
    for k, f, g, u in zip(trainable, frozen, grads, uncopied, strict=True):
        out.append(
            (
                (at_g, at_g + g),
                (at_c, at_c + k),
                (at_f, at_f + f),
                (at_d, at_d + k),
                (at_u, at_u + u),
            )
        )
        at_c, at_f, at_g, at_d, at_u = at_c + k, at_f + f, at_g + g, at_d + k, at_u + u
    return out


_requires_grad = attrgetter("requires_grad")
_grad = attrgetter("grad")
_is_sparse = attrgetter("is_sparse")
# grad mode off in the hooks without no_grad()'s two Python objects, each health step
_grad_enabled = torch.is_grad_enabled
_set_grad_enabled = torch._C._set_grad_enabled


def _key(opt: Optimizer) -> tuple[Any, ...]:
    """What a layout depends on: every group's tensors (by identity: a tuple compares
    its items by identity first) and which of them train."""
    groups = [g["params"] for g in opt.param_groups]
    ps = tuple(chain.from_iterable(groups))
    return tuple(map(len, groups)), ps, tuple(map(_requires_grad, ps))


class Layout:
    """One optimizer's groups: their trainable and frozen tensors, kept while the groups
    hold the same tensors with the same ``requires_grad`` (checked at each measurement:
    a layer frozen mid-run, a group added, change it)."""

    def __init__(self, opt: Optimizer) -> None:
        self.key = _key(opt)
        #: per group: its trainable parameters, and the frozen ones (they count in ‖w‖ only)
        self.trainable: list[list[torch.Tensor]] = []
        self.frozen: list[list[torch.Tensor]] = []
        for g in opt.param_groups:
            ps = g["params"]
            self.trainable.append([p for p in ps if p.requires_grad])
            self.frozen.append([_local(p) for p in ps if not p.requires_grad])
        self.params = [p for ps in self.trainable for p in ps]
        self.flat = list(map(_local, self.params))  # the tensors the optimizer updates
        self.frozen_flat = [p for ps in self.frozen for p in ps]
        #: wrapped tensors (DTensors) are unwrapped afresh at every measurement
        self.reusable = all(type(p) in _PLAIN for p in self.key[1])
        #: per group: how many trainable tensors, how many frozen ones
        self.counts = ([len(ps) for ps in self.trainable], [len(fs) for fs in self.frozen])
        self.fold = _folds(*self.counts, self.counts[0])  # every gradient there
        #: bytes of each trainable tensor, in ``flat``'s order, and of each group's
        self.sizes = [t.numel() * t.element_size() for t in self.flat]
        self.bytes = sum(self.sizes)
        at = 0
        self.ranges: list[range] = []  # per group, its tensors' indices in ``flat``
        for k in self.counts[0]:
            self.ranges.append(range(at, at + k))
            at += k
        self.group_bytes = [sum(self.sizes[i] for i in r) for r in self.ranges]

    def holds(self, opt: Optimizer) -> bool:
        return self.reusable and _key(opt) == self.key


class Before:
    """An optimizer's layout and the copies of its trainable tensors, taken before a step
    (with grad mode off): all of them, or those of ``chosen`` (per group, indices into
    the layout's ``flat``), the others' norms taken instead."""

    def __init__(self, opt: Optimizer, layout: Layout, chosen: list[list[int]] | None) -> None:
        self.opt, self.layout = opt, layout
        #: the tensors copied (the optimizer updates them in place)
        self.targets = layout.flat
        self.fold = layout.fold
        self.counts = layout.counts
        #: the norms of the trainable tensors not copied (their values before the step)
        self.uncopied: list[torch.Tensor] = []
        if chosen is not None:
            flat = layout.flat
            self.targets = [flat[i] for i in chain.from_iterable(chosen)]
            kept = [set(c) for c in chosen]
            rest = [[i for i in r if i not in k] for r, k in zip(layout.ranges, kept, strict=True)]
            rest_flat = [flat[i] for i in chain.from_iterable(rest)]
            if rest_flat:
                self.uncopied = list(torch._foreach_norm(rest_flat, dtype=torch.float32))
            copied = [len(c) for c in chosen]
            self.counts = (copied, layout.counts[1])
            self.fold = _folds(copied, layout.counts[1], layout.counts[0], list(map(len, rest)))
        # one fused op (no arithmetic on the values), not an allocation per tensor and
        # then a copy into them
        self.copies = list(torch._foreach_clone(self.targets)) if self.targets else []
        #: per group, the gradients' norms when they had to be taken before the step
        self.grad_norms: list[list[torch.Tensor]] | None = None


class Measurement:
    """One step's per-tensor norms, still on the device, and where each group's are."""

    __slots__ = ("cells", "fold")

    def __init__(self, cells: list[torch.Tensor], fold: list[Slices]) -> None:
        self.cells = cells  # 0-d float32 tensors
        self.fold = fold

    def __len__(self) -> int:
        return len(self.cells)

    def groups(self, values: Sequence[float]) -> list[tuple[float, float, float]]:
        """Every group's (‖g‖, ‖w‖, ‖Δw‖) from the cells' values as read; where only some
        of a group's tensors were copied, ‖Δw‖ is scaled to ‖w‖ from theirs (so that
        ‖Δw‖/‖w‖ is their ratio, ‖Δw_S‖/‖w_S‖), NaN when none was."""
        out = []
        for (g0, g1), (c0, c1), (f0, f1), (d0, d1), (u0, u1) in self.fold:
            w = hypot(*values[c0:c1], *values[f0:f1], *values[u0:u1])
            d = hypot(*values[d0:d1])
            if u1 > u0:  # a sample: its own ratio
                w_s = hypot(*values[c0:c1])
                d = d * w / w_s if w_s else math.nan
            out.append((hypot(*values[g0:g1]), w, d))
        return out

    def read(self) -> list[tuple[float, float, float]]:
        """Every group's norms, read now (a host-device sync: not for the training loop)."""
        return self.groups(torch.stack(self.cells).tolist() if self.cells else [])


class Health:
    """Measures the groups of one optimizer on the steps it is armed (or started) for."""

    def __init__(self, every: int, copy_gb: float = COPY_LIMIT_GB) -> None:
        self.every = check_every(every)
        self.copy_limit = check_copy_gb(copy_gb) * 1e9  # bytes
        self._turns: list[int] = []  # per group: the tensor its next sample starts at
        self.armed = False
        self._optimizer: Optimizer | None = None
        self._hooks: list[Any] = []
        self._layout: Layout | None = None
        self._before: Before | None = None
        self._result: Measurement | None = None

    def sampled(self, optimizer: Optimizer) -> str | None:
        """What to tell the user when ``optimizer``'s trainable parameters are over the
        copy limit (the update ratios are then a sample's); None when they are not."""
        if not self.every:
            return None
        size = Layout(optimizer).bytes
        if size <= self.copy_limit:
            return None
        return (
            f"optimizer health: the trainable parameters ({size / 1e9:.3g} GB here) are over "
            f"health_copy_gb ({self.copy_limit / 1e9:g} GB), so each group's update ratio is "
            "that of a share of its tensors, taken in turn (its gradient and parameter norms "
            "stay exact)"
        )

    def _watch(self, optimizer: Optimizer) -> None:
        if optimizer is not self._optimizer:  # the first, or a swap
            self.detach()
            self._optimizer = optimizer

    def arm(self, step: int, optimizer: Optimizer) -> bool:
        """Measure the next step of ``optimizer`` when ``step`` (steps done before it) is on
        the interval: hook it for that step (a loop's own ``optimizer.step()``, which runs
        when the loop says). Returns whether it will be measured."""
        every = self.every
        if not every or step % every:
            self.armed = False
            return False
        self._watch(optimizer)
        if not self._hooks:
            self._hooks = [
                optimizer.register_step_pre_hook(self._pre),
                optimizer.register_step_post_hook(self._post),
            ]
        self.armed = True
        return True

    def start(self, step: int, optimizer: Optimizer) -> bool:
        """The trainer's own step of ``optimizer``, about to be taken: when ``step`` is on
        the interval, copy the parameters now, and :meth:`take` measures what the step did
        (no hook: nothing runs between the two but the step). Returns whether it will."""
        every = self.every
        if not every or step % every:
            return False
        self._watch(optimizer)
        self._before = self._copy(optimizer)
        return True

    def detach(self) -> None:
        self._unhook()
        self._optimizer, self._layout, self._before = None, None, None

    def _unhook(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks = []

    def take(self) -> Measurement | None:
        """The measurement of the step just taken (None when it was not measured, or a
        hooked step did not run); disarm and unhook. A started step is measured here: one a
        GradScaler skipped applied no update, and the flush records NaN for it."""
        out, self._result, self.armed = self._result, None, False
        before, self._before = self._before, None
        if self._hooks:
            self._unhook()  # (copies left by a hooked step that did not run: dropped)
        elif before is not None:
            out = self._measure(before)
        return out

    def drop(self) -> None:
        """Forget a measurement of a step that is not the run's (a range test's)."""
        self._result, self.armed, self._before = None, False, None
        if self._hooks:
            self._unhook()

    def _copy(self, opt: Optimizer) -> Before:
        layout = self._layout
        if layout is None or not layout.holds(opt):
            layout = self._layout = Layout(opt)
            self._turns = [0] * len(layout.ranges)
        chosen = None if layout.bytes <= self.copy_limit else self._sample(layout)
        was = _grad_enabled()
        _set_grad_enabled(False)
        try:
            return Before(opt, layout, chosen)
        finally:
            _set_grad_enabled(was)

    def _sample(self, layout: Layout) -> list[list[int]]:
        """Per group, the tensors to copy: a share of the limit in proportion to the
        group's bytes, filled with its tensors in turn from where the last sample
        stopped (one too large for the share is passed over)."""
        sizes, out = layout.sizes, []
        for g, r in enumerate(layout.ranges):
            share = self.copy_limit * layout.group_bytes[g] / layout.bytes
            taken: list[int] = []
            used, n = 0, len(r)
            start = self._turns[g] % n if n else 0
            for j in range(n):
                i = r[(start + j) % n]
                if used + sizes[i] <= share:
                    taken.append(i)
                    used += sizes[i]
                elif taken:
                    break  # the next sample goes on from here
            if taken:
                self._turns[g] = (taken[-1] - r.start + 1) % n
            out.append(sorted(taken))
        return out

    def _measure(self, before: Before) -> Measurement | None:
        was = _grad_enabled()
        _set_grad_enabled(False)
        try:
            return measure(before)
        finally:
            _set_grad_enabled(was)

    # -- the hooks ----------------------------------------------------------------------
    def _pre(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        if not self.armed:
            return
        self.armed = False
        before = self._copy(opt)
        layout = before.layout
        scale = getattr(opt, "grad_scale", None)
        if scale is not None:
            # a fused optimizer under a GradScaler unscales the gradients in place in its
            # step: their norm is taken now, still scaled, and divided by the scale
            with torch.no_grad():
                before.grad_norms = [_norms(_grads_of(ps), 1 / scale) for ps in layout.trainable]
        self._before = before

    def _post(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        self._result = self._measure(before)


def _grads_of(ps: list[torch.Tensor]) -> list[torch.Tensor]:
    grads = [p.grad for p in ps]
    return [
        g if type(g) is torch.Tensor and not g.is_sparse else _dense(g)
        for g in grads
        if g is not None
    ]


def _norms(ts: list[torch.Tensor], scale: torch.Tensor | None = None) -> list[torch.Tensor]:
    if not ts:
        return []
    out = list(torch._foreach_norm(ts, dtype=torch.float32))
    if scale is not None:
        out = list(torch._foreach_mul(out, scale.to(out[0].device, torch.float32)))
    return out


def measure(before: Before) -> Measurement | None:
    """Every trainable tensor's (‖g‖, ‖w‖, ‖Δw‖) and every frozen one's ‖w‖, on the
    device, from ``before`` (its copies are consumed: overwritten with -Δw). Called with
    grad mode off."""
    layout = before.layout
    if len(layout.trainable) != len(before.opt.param_groups):  # a group added in the step
        return None
    f32 = torch.float32
    copies = before.copies
    fold = before.fold
    taken = before.grad_norms  # taken before the step (a fused step under a GradScaler)
    if taken is not None:
        grads: list[torch.Tensor] = []
        fold = _refold(before, taken)
    else:
        grads = list(map(_grad, layout.params))
        plain = set(map(type, grads)) == {torch.Tensor}  # none missing, none wrapped
        if not plain or any(map(_is_sparse, grads)):
            by_group = [_grads_of(ps) for ps in layout.trainable]
            grads = list(chain.from_iterable(by_group))
            fold = _refold(before, by_group)
    every = [*copies, *layout.frozen_flat, *grads]
    if not every:
        return None
    cells = list(torch._foreach_norm(every, dtype=f32))
    if taken is not None:
        cells += chain.from_iterable(taken)
    if copies:
        torch._foreach_sub_(copies, before.targets)  # now -Δw
        cells += torch._foreach_norm(copies, dtype=f32)
    cells += before.uncopied
    return Measurement(cells, fold)


def _refold(before: Before, grads: list[list[torch.Tensor]]) -> list[Slices]:
    """The measurement's slices with each group's own number of gradients (some
    missing)."""
    uncopied = [u1 - u0 for *_, (u0, u1) in before.fold]
    return _folds(before.counts[0], before.counts[1], list(map(len, grads)), uncopied)


# -- the flush: read with the losses, recorded as columns ---------------------------------
Measured = list[tuple[int, Measurement]]  # (row in the flush's buffers, its measurement)


def health_values(buffered: Measured) -> torch.Tensor | None:
    """Every buffered measurement's norms as one flat tensor (None when there are none)."""
    cells = [c for _, m in buffered for c in m.cells]
    if not cells:
        return None
    try:
        return torch.stack(cells)
    except RuntimeError:  # norms on several devices (a model split over GPUs, a swap)
        device = cells[0].device
        return torch.stack([c.to(device, non_blocking=True) for c in cells])


def health_columns(
    buffered: Measured, read: list[float], n: int, skipped: list[float] | None
) -> dict[str, list[float]]:
    """The store's columns (``grad_norm/<i>`` ...) of a flush of ``n`` steps from the
    values of :func:`health_values` as read; NaN on the steps not measured, and on the
    steps a GradScaler skipped (no update was applied)."""
    nan = math.nan
    cols: dict[str, list[float]] = {}
    by_group: list[list[list[float]]] = []  # per group, its three columns
    at = 0
    for row, m in buffered:
        vals = read[at : at + len(m)]
        at += len(m)
        groups = m.groups(vals)
        for i in range(len(by_group), len(groups)):  # a group's columns, when first met
            by_group.append([cols.setdefault(column(s, i), [nan] * n) for s in SERIES])
        if skipped is not None and skipped[row]:
            continue  # NaN: the columns start so
        for (g, w, d), (g_col, w_col, ratio_col) in zip(groups, by_group, strict=False):
            g_col[row], w_col[row] = g, w
            ratio_col[row] = d / w if w else (math.inf if d else nan)  # (0/0: an empty group)
    return cols
