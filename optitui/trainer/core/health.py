"""Optimizer health per param group: gradient norm, parameter norm and update ratio.

Every ``health_every`` steps, for every group: ‖g‖, ‖w‖ and ‖Δw‖/‖w‖ of that step,
where Δw is the update the optimizer actually applied (momentum, Adam's scaling,
weight decay and the lr all in it) and w the parameters it was applied to.

How, without a host-device sync: an optimizer step pre-hook copies the groups'
trainable parameters (health steps only, one fused copy); the post-hook subtracts the
new values from the copies in place and takes every tensor's norm with ``torch._foreach_norm``,
then one ``torch.linalg.vector_norm`` over the stacked per-tensor norms gives every
group's three norms at once. The result, a ``(groups, 3)`` device tensor, waits in
the loop's buffer and is read in the flush's one batched read with the losses.

- The gradient is what ``p.grad`` holds when the step returns: for every torch
  optimizer but LBFGS the one the step used (none changes it in place); LBFGS
  leaves the gradient of its last closure evaluation.
- A fused optimizer under a GradScaler gets still-scaled gradients and unscales
  them in its step: their norm is taken in the pre-hook and divided by the same
  ``grad_scale``.
- A step the GradScaler skipped (inf/NaN gradients) applied no update: its health
  is not recorded (NaN, like its gradient norm).
- With ``health_every=0`` no hook is registered and nothing is computed.
"""

from __future__ import annotations

import math
from itertools import chain
from typing import Any

import torch
from torch.optim import Optimizer

#: the series recorded per group, in the order of a result's columns
SERIES = ("grad_norm", "param_norm", "update_ratio")


def column(series: str, group: int) -> str:
    """The store's column of one group's series (exported as ``<series>/<group name>``)."""
    return f"{series}/{group}"


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


class Before:
    """A group layout and the copies of its trainable tensors, taken before a step."""

    def __init__(self, opt: Optimizer) -> None:
        #: per group: its trainable tensors, and the frozen ones (they count in ‖w‖ only)
        self.trainable: list[list[torch.Tensor]] = []
        self.frozen: list[list[torch.Tensor]] = []
        for g in opt.param_groups:
            ps = g["params"]
            self.trainable.append([p for p in ps if p.requires_grad])
            self.frozen.append([_local(p) for p in ps if not p.requires_grad])
        self.flat = [_local(p) for ps in self.trainable for p in ps]
        # a copy of every trainable tensor: one fused op (no arithmetic on the values),
        # not an allocation per tensor and then a copy into them
        self.copies = list(torch._foreach_clone(self.flat)) if self.flat else []
        #: per group, the gradients' norms when they had to be taken before the step
        self.grad_norms: list[list[torch.Tensor]] | None = None


class Health:
    """Measures the groups of one optimizer on the steps it is armed for."""

    def __init__(self, every: int) -> None:
        self.every = check_every(every)
        self.armed = False
        self._optimizer: Optimizer | None = None
        self._hooks: list[Any] = []
        self._before: Before | None = None
        self._result: torch.Tensor | None = None

    def arm(self, step: int, optimizer: Optimizer) -> None:
        """Measure the next optimizer step when ``step`` (steps done before it) is on the
        interval; (re)attach to ``optimizer`` when it is not the one watched (a swap)."""
        if not self.every:
            return
        if optimizer is not self._optimizer:
            self.attach(optimizer)
        self.armed = step % self.every == 0

    def attach(self, optimizer: Optimizer) -> None:
        self.detach()
        self._optimizer = optimizer
        self._hooks = [
            optimizer.register_step_pre_hook(self._pre),
            optimizer.register_step_post_hook(self._post),
        ]

    def detach(self) -> None:
        for h in self._hooks:
            h.remove()
        self._hooks, self._optimizer = [], None
        self._before = None

    def take(self) -> torch.Tensor | None:
        """The measurement of the step just taken (None when it was not measured or the
        step did not run), and disarm."""
        out, self._result, self.armed = self._result, None, False
        return out

    def drop(self) -> None:
        """Forget a measurement of a step that is not the run's (a range test's)."""
        self._result, self.armed, self._before = None, False, None

    # -- the hooks ----------------------------------------------------------------------
    def _pre(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        if not self.armed:
            return
        self.armed = False
        with torch.no_grad():
            before = Before(opt)
            scale = getattr(opt, "grad_scale", None)
            if scale is not None:
                # a fused optimizer under a GradScaler unscales the gradients in place in
                # its step: their norm is taken now, still scaled, and divided by the scale
                before.grad_norms = [_norms(_grads_of(ps), 1 / scale) for ps in before.trainable]
        self._before = before

    def _post(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        if self._before is None:
            return
        before, self._before = self._before, None
        self._result = measure(opt, before)


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


def measure(opt: Optimizer, before: Before) -> torch.Tensor | None:
    """Every group's (‖g‖, ‖w‖, ‖Δw‖) as a ``(groups, 3)`` float32 tensor on the first
    parameter's device, from ``before`` (its copies are consumed: overwritten with -Δw)."""
    n_groups = len(before.trainable)
    if n_groups != len(opt.param_groups):  # a group added inside the step: not comparable
        return None
    f32 = torch.float32
    with torch.no_grad():
        copies, frozen = before.copies, before.frozen
        grads = [_grads_of(ps) for ps in before.trainable] if before.grad_norms is None else []
        flat = chain.from_iterable  # (joined in C: no generator resumed per tensor)
        every = [*copies, *flat(frozen), *flat(grads)]
        if not every:
            return None
        norms = list(torch._foreach_norm(every, dtype=f32))
        if before.grad_norms is not None:
            grads = before.grad_norms  # only their number per group is used below
            norms += [n for ns in grads for n in ns]
        deltas: list[torch.Tensor] = []
        if copies:
            torch._foreach_sub_(copies, before.flat)  # now -Δw
            deltas = list(torch._foreach_norm(copies, dtype=f32))
        at_c, at_f, at_g = 0, len(copies), len(copies) + sum(map(len, frozen))
        rows: list[list[torch.Tensor]] = []  # per group: gradients, parameters, updates
        for ps, fs, gs in zip(before.trainable, frozen, grads, strict=True):
            k, f, g = len(ps), len(fs), len(gs)
            rows += [norms[at_g : at_g + g], norms[at_c : at_c + k] + norms[at_f : at_f + f]]
            rows.append(deltas[at_c : at_c + k])
            at_c, at_f, at_g = at_c + k, at_f + f, at_g + g
        width = max(map(len, rows)) or 1
        if all(len(r) == width for r in rows):  # nothing to pad: no zero to make
            cells = list(flat(rows))
        else:
            zero = torch.zeros((), dtype=f32, device=every[0].device)
            cells = [t for r in rows for t in (*r, *[zero] * (width - len(r)))]
        try:
            stacked = torch.stack(cells)
        except RuntimeError:  # tensors on several devices (a model split over GPUs)
            first = every[0].device
            stacked = torch.stack([t.to(first, non_blocking=True) for t in cells])
        # one reduction for every group: (groups, 3, width) -> (groups, 3); the ratio
        # ‖Δw‖/‖w‖ is taken on the host once read (one device op less per measurement)
        g_w_d: torch.Tensor = torch.linalg.vector_norm(stacked.view(n_groups, 3, width), dim=2)
        return g_w_d


# -- the flush: read with the losses, recorded as columns ---------------------------------
Measured = list[tuple[int, torch.Tensor]]  # (row in the flush's buffers, (groups, 3))


def health_values(buffered: Measured) -> torch.Tensor | None:
    """The buffered measurements as one flat tensor (None when there are none)."""
    if not buffered:
        return None
    measured = [t for _, t in buffered]
    try:  # (groups, 3) each: joined on the group axis, flattened in the same order
        return torch.cat(measured).reshape(-1)
    except RuntimeError:  # measurements on several devices (an optimizer moved)
        device = measured[0].device
        return torch.cat([t.reshape(-1).to(device, non_blocking=True) for t in measured])


def with_values(first: torch.Tensor, values: torch.Tensor | None) -> torch.Tensor:
    """``first`` (a flush's losses) with ``values`` after them, to be read in one go."""
    if values is None:
        return first
    return torch.cat([first.reshape(-1), values.to(first.device, non_blocking=True)])


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
    for row, t in buffered:
        groups = t.shape[0]
        vals = read[at : at + 3 * groups]
        at += 3 * groups
        for i in range(len(by_group), groups):  # a group's columns, when first met
            by_group.append([cols.setdefault(column(s, i), [nan] * n) for s in SERIES])
        if skipped is not None and skipped[row]:
            continue  # NaN: the columns start so
        for i in range(groups):
            g, w, d = vals[3 * i : 3 * i + 3]
            g_col, w_col, ratio_col = by_group[i]
            g_col[row], w_col[row] = g, w
            ratio_col[row] = d / w if w else (math.inf if d else nan)  # (0/0: an empty group)
    return cols
