"""Optimizer health per param group: gradient norm, parameter norm and update ratio.

Every ``health_every`` steps, for every group: ‖g‖, ‖w‖ and ‖Δw‖/‖w‖ of that step,
where Δw is the update the optimizer actually applied (momentum, Adam's scaling,
weight decay and the lr all in it) and w the parameters it was applied to.

How, without a host-device sync: an optimizer step pre-hook copies the group's
trainable parameters (health steps only); the post-hook subtracts the new values
from the copies in place and takes every tensor's norm with ``torch._foreach_norm``,
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
    return g.coalesce().values() if g.is_sparse else g


class Health:
    """Measures the groups of one optimizer on the steps it is armed for."""

    def __init__(self, every: int) -> None:
        self.every = check_every(every)
        self.armed = False
        self._optimizer: Optimizer | None = None
        self._hooks: list[Any] = []
        #: per group: the trainable tensors and their copies from before the step
        self._before: list[tuple[list[torch.Tensor], list[torch.Tensor]]] | None = None
        self._result: torch.Tensor | None = None
        self._grads: list[list[torch.Tensor]] | None = None  # per group, taken before

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
            before = []
            for g in opt.param_groups:
                ps = [p for p in g["params"] if p.requires_grad]
                before.append((ps, list(torch._foreach_mul(ps, 1.0)) if ps else []))
            self._before = before
            self._grads = None
            scale = getattr(opt, "grad_scale", None)
            if scale is not None:
                # a fused optimizer under a GradScaler unscales the gradients in place in
                # its step: their norm is taken now, still scaled, and divided by the scale
                self._grads = [_norms(_grads_of(ps), 1 / scale) for ps, _ in before]

    def _post(self, opt: Optimizer, args: Any, kwargs: Any) -> None:
        if self._before is None:
            return
        (before, self._before), (grads, self._grads) = (self._before, None), (self._grads, None)
        self._result = measure(opt, before, grads)


def _grads_of(ps: list[torch.Tensor]) -> list[torch.Tensor]:
    return [_dense(p.grad) for p in ps if p.grad is not None]


def _norms(ts: list[torch.Tensor], scale: torch.Tensor | None = None) -> list[torch.Tensor]:
    if not ts:
        return []
    out = list(torch._foreach_norm(ts, dtype=torch.float32))
    if scale is not None:
        out = list(torch._foreach_mul(out, scale.to(out[0].device, torch.float32)))
    return out


def measure(
    opt: Optimizer,
    before: list[tuple[list[torch.Tensor], list[torch.Tensor]]],
    grad_norms: list[list[torch.Tensor]] | None = None,
) -> torch.Tensor | None:
    """Every group's (‖g‖, ‖w‖, ‖Δw‖/‖w‖) as a ``(groups, 3)`` float32 tensor on the first
    parameter's device; ``before`` holds, per group, the trainable tensors and their
    values before the step (consumed: overwritten with -Δw); ``grad_norms`` per group
    the gradients' norms when taken before the step (else they are taken now)."""
    groups = opt.param_groups
    if len(before) != len(groups):  # a group added inside the step: not comparable
        return None
    f32 = torch.float32
    with torch.no_grad():
        trainable = [ps for ps, _ in before]
        copies = [c for _, cs in before for c in cs]
        # a frozen tensor did not move: it counts in ‖w‖ as it is
        frozen = [[p for p in g["params"] if not p.requires_grad] for g in groups]
        grads = [] if grad_norms is not None else [_grads_of(ps) for ps in trainable]
        every = [*copies, *(p for fs in frozen for p in fs), *(g for gs in grads for g in gs)]
        if not every:
            return None
        device = every[0].device
        norms = list(torch._foreach_norm(every, dtype=f32))
        if grad_norms is not None:
            norms += [n for ns in grad_norms for n in ns]
            grads = grad_norms  # only their number per group is used below
        if copies:
            torch._foreach_sub_(copies, [p for ps in trainable for p in ps])  # now -Δw
            deltas = list(torch._foreach_norm(copies, dtype=f32))
        else:
            deltas = []
        n_c, n_f = len(copies), sum(map(len, frozen))
        at_c, at_f, at_g = 0, n_c, n_c + n_f
        rows: list[list[torch.Tensor]] = []  # per group: gradients, parameters, updates
        for ps, fs, gs in zip(trainable, frozen, grads, strict=True):
            w = norms[at_c : at_c + len(ps)] + norms[at_f : at_f + len(fs)]
            rows += [norms[at_g : at_g + len(gs)], w, deltas[at_c : at_c + len(ps)]]
            at_c, at_f, at_g = at_c + len(ps), at_f + len(fs), at_g + len(gs)
        width = max(1, *map(len, rows))
        zero = torch.zeros((), dtype=f32, device=device)
        cells = [
            t if t.device == device else t.to(device, non_blocking=True)
            for r in rows
            for t in [*r, *[zero] * (width - len(r))]
        ]
        # one reduction for every group: (groups, 3, width) -> (groups, 3)
        g_w_d = torch.linalg.vector_norm(torch.stack(cells).view(len(groups), 3, width), dim=2)
        return torch.stack([g_w_d[:, 0], g_w_d[:, 1], g_w_d[:, 2] / g_w_d[:, 1]], dim=1)


# -- the flush: read with the losses, recorded as columns ---------------------------------
Measured = list[tuple[int, torch.Tensor]]  # (row in the flush's buffers, (groups, 3))


def health_values(buffered: Measured) -> torch.Tensor | None:
    """The buffered measurements as one flat tensor (None when there are none)."""
    if not buffered:
        return None
    device = buffered[0][1].device
    return torch.cat([t.reshape(-1).to(device, non_blocking=True) for _, t in buffered])


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
    nan = float("nan")
    cols: dict[str, list[float]] = {}
    at = 0
    for row, t in buffered:
        groups = t.shape[0]
        vals = read[at : at + 3 * groups]
        at += 3 * groups
        skip = skipped is not None and bool(skipped[row])
        for i in range(groups):
            for k, series in enumerate(SERIES):
                col = cols.get(column(series, i))
                if col is None:
                    col = cols[column(series, i)] = [nan] * n
                col[row] = nan if skip else vals[3 * i + k]
    return cols
