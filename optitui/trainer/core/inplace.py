"""Loading saved optimizer and Lookahead state into the tensors that already exist.

``Optimizer.load_state_dict`` builds the whole new state on the device before
the old one is dropped (twice the optimizer state, briefly, on the GPU) and
puts the saved param-group values in place of the live ones, so a tensor lr
that a fused or capturable optimizer (or a CUDA graph) holds is replaced by a
new CPU tensor. Here the saved values are copied into the live tensors when
the layout matches, which is the case for every snapshot and checkpoint of
the same run; otherwise the old state is dropped first and torch's own load
runs, and tensor hyperparameters are still copied into the tensors the
optimizer held.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.optim import Optimizer

#: group keys torch's load keeps from the live group rather than the saved one
_KEPT = ("params", "param_names")


def _tensor_values(group: dict[str, Any]) -> dict[str, Any]:
    """A group's tensor-valued entries (and tuples holding tensors, like betas)."""
    return {
        k: v
        for k, v in group.items()
        if k not in _KEPT
        and (
            isinstance(v, torch.Tensor)
            or (isinstance(v, tuple | list) and any(isinstance(x, torch.Tensor) for x in v))
        )
    }


def _copy_value(old: Any, new: Any) -> Any:
    """``new`` written into ``old`` where both are tensors of one shape; else ``new``."""
    if isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor | float | int):
        if isinstance(new, torch.Tensor) and new.shape != old.shape:
            return new.to(old.device)
        with torch.no_grad():
            old.copy_(new) if isinstance(new, torch.Tensor) else old.fill_(new)
        return old
    if isinstance(old, tuple | list) and isinstance(new, tuple | list) and len(old) == len(new):
        return type(old)(_copy_value(o, n) for o, n in zip(old, new, strict=True))
    return new


def _same_layout(live: dict[str, Any], saved: dict[str, Any]) -> bool:
    if live.keys() != saved.keys():
        return False
    for k, v in live.items():
        s = saved[k]
        if isinstance(v, torch.Tensor) != isinstance(s, torch.Tensor):
            return False
        if isinstance(v, torch.Tensor) and (
            v.shape != s.shape or v.is_floating_point() != s.is_floating_point()
        ):
            return False
        if isinstance(v, list | tuple | dict):  # LBFGS histories and the like: torch's load
            return False
    return True


def load_optimizer(optimizer: Optimizer, saved: dict[str, Any]) -> None:
    """Put a saved ``optimizer.state_dict()`` back, writing into the live tensors."""
    groups = optimizer.param_groups
    saved_groups = saved["param_groups"]
    params = [p for g in groups for p in g["params"]]
    ids = [i for g in saved_groups for i in g["params"]]
    hooks = bool(
        getattr(optimizer, "_optimizer_load_state_dict_pre_hooks", None)
        or getattr(optimizer, "_optimizer_load_state_dict_post_hooks", None)
    )
    sizes_match = len(saved_groups) == len(groups) and all(
        len(s["params"]) == len(g["params"]) for s, g in zip(saved_groups, groups, strict=True)
    )
    if not sizes_match:
        optimizer.load_state_dict(saved)  # raises, with torch's own message
        return
    by_param = [
        (p, optimizer.state.get(p), saved["state"].get(i)) for p, i in zip(params, ids, strict=True)
    ]
    in_place = (
        not hooks
        and all(live is None or s is None or _same_layout(live, s) for _, live, s in by_param)
        and all(live is not None or s is None for _, live, s in by_param)
    )
    if not in_place:
        _load_after_dropping(optimizer, saved)
        return
    for p, live, s in by_param:
        if s is None:
            optimizer.state.pop(p, None)
            continue
        assert live is not None
        for k, v in s.items():
            live[k] = _copy_value(live[k], v)
    for g, sg in zip(groups, saved_groups, strict=True):
        for k in [k for k in g if k not in sg and k not in _KEPT]:
            del g[k]
        for k, v in sg.items():
            if k not in _KEPT:
                g[k] = _copy_value(g[k], v) if k in g else v


def _load_after_dropping(optimizer: Optimizer, saved: dict[str, Any]) -> None:
    """torch's own load, with the old state released first and tensor hyperparameters
    copied back into the tensors the optimizer held."""
    kept = [_tensor_values(g) for g in optimizer.param_groups]
    optimizer.state.clear()
    optimizer.load_state_dict(saved)
    for g, old in zip(optimizer.param_groups, kept, strict=True):
        for k, v in old.items():
            if k in g:
                g[k] = _copy_value(v, g[k])


def load_slow_weights(
    current: Sequence[torch.Tensor] | None,
    saved: Sequence[torch.Tensor],
    params: Sequence[torch.Tensor],
) -> list[torch.Tensor]:
    """Lookahead's slow weights from a snapshot: copied into ``current`` when it has the
    same shapes, else one new tensor each on its parameter's device (never a clone of
    the parameters that is then thrown away)."""
    if (
        current is not None
        and len(current) == len(saved)
        and all(c.shape == s.shape for c, s in zip(current, saved, strict=True))
    ):
        with torch.no_grad():
            for c, s in zip(current, saved, strict=True):
                c.copy_(s)
        return list(current)
    return [
        s.to(device=p.device, dtype=p.dtype, copy=True) for s, p in zip(saved, params, strict=True)
    ]
