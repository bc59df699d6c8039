"""Which hyperparameters of a param group can be edited live, and how safely.

The fields come from what the optimizer really keeps in its param groups; the
bounds mirror its constructor's checks. Flags that change which per-parameter
state ``step()`` expects (amsgrad, centered, RMSprop momentum) get that state
created when they are switched on, so the next step cannot fail on a missing
key. Implementation switches (foreach, fused, capturable, differentiable)
are shown read-only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import torch
from torch.optim import Optimizer

from optitui.store.fields import FieldError, FieldSpec, Kind

_NON_NEG: dict[str, Any] = {"low": 0.0}
_UNIT: dict[str, Any] = {"low": 0.0, "high": 1.0, "high_open": True}

#: bounds by field name, as the torch constructors check them
COMMON: dict[str, dict[str, Any]] = {
    "lr": _NON_NEG,
    "momentum": _NON_NEG,
    "dampening": {},
    "weight_decay": _NON_NEG,
    "eps": _NON_NEG,
    "lr_decay": _NON_NEG,
    "momentum_decay": _NON_NEG,
    "rho": {"low": 0.0, "high": 1.0},
    "lambd": {},
    "t0": {},
    "alpha": {},
}
#: per-class overrides: (class name, field) -> bounds
CLASS_BOUNDS: dict[tuple[str, str], dict[str, Any]] = {
    ("RMSprop", "alpha"): _NON_NEG,
}
PAIRS: dict[str, tuple[FieldSpec, FieldSpec]] = {
    "betas": (
        FieldSpec("beta1", "float", **_UNIT),
        FieldSpec("beta2", "float", **_UNIT),
    ),
    "etas": (
        FieldSpec("etaminus", "float", low=0.0, low_open=True, high=1.0, high_open=True),
        FieldSpec("etaplus", "float", low=1.0, low_open=True),
    ),
    "step_sizes": (
        FieldSpec("min_step", "float", low=0.0),
        FieldSpec("max_step", "float", low=0.0),
    ),
}
READONLY: dict[str, str] = {
    "foreach": "implementation choice, fixed at construction",
    "fused": "implementation choice, fixed at construction",
    "capturable": "implementation choice, fixed at construction",
    "differentiable": "implementation choice, fixed at construction",
    "initial_accumulator_value": "only used when the state is created",
    "initial_lr": "kept by the scheduler",
    "max_lr": "kept by the scheduler",
    "min_lr": "kept by the scheduler",
    "base_momentum": "kept by the scheduler",
    "max_momentum": "kept by the scheduler",
}
HIDDEN = {"params", "name"}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def plain(value: Any) -> Any:
    """A group value as JSON-able data (tensors become floats; this syncs, so never per step)."""
    if isinstance(value, torch.Tensor):
        return float(value.detach().cpu()) if value.numel() == 1 else "<tensor>"
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return f"<{type(value).__name__}>"


def _capped(spec: FieldSpec, limit: float) -> FieldSpec:
    """Bound a number by what the parameters' dtype can hold (torch fails on overflow)."""
    if spec.kind == "tuple":
        return replace(spec, items=tuple(_capped(s, limit) for s in spec.items))
    if spec.kind not in ("float", "int"):
        return spec
    low = spec.low if spec.low is not None else -limit
    high = spec.high if spec.high is not None else limit
    return replace(spec, low=low, high=high)


#: No hyperparameter is anywhere near this big, and values derived from it inside
#: step() (lr / bias_correction, ...) still fit in float32; torch raises on overflow.
SANE_LIMIT = float(torch.finfo(torch.float32).max) ** 0.5


def dtype_limit(group: Mapping[str, Any]) -> float:
    """The largest magnitude a value may have for this group's parameters."""
    limits = [torch.finfo(p.dtype).max for p in group["params"] if p.is_floating_point()]
    return float(min([SANE_LIMIT, *limits]))


def field_spec(optimizer: Optimizer, key: str, value: Any, limit: float | None = None) -> FieldSpec:
    """The spec of one param-group field, from its name, class and current value."""
    spec = _field_spec(optimizer, key, value)
    return spec if limit is None else _capped(spec, limit)


def _field_spec(optimizer: Optimizer, key: str, value: Any) -> FieldSpec:
    cls = type(optimizer).__name__
    if key in READONLY:
        return FieldSpec(key, "readonly", note=READONLY[key])
    if isinstance(value, torch.Tensor):
        value = plain(value)
    if isinstance(value, bool):
        return FieldSpec(key, "bool")
    if key in PAIRS and isinstance(value, tuple | list) and len(value) == 2:
        return FieldSpec(key, "tuple", items=PAIRS[key])
    if isinstance(value, tuple | list) and value and all(_is_number(plain(v)) for v in value):
        return FieldSpec(
            key, "tuple", items=tuple(FieldSpec(f"{key}[{i}]", "float") for i in range(len(value)))
        )
    if _is_number(value):
        bounds = CLASS_BOUNDS.get((cls, key), COMMON.get(key, {}))
        kind: Kind = "int" if isinstance(value, int) and key not in COMMON else "float"
        return FieldSpec(key, kind, **bounds)
    return FieldSpec(key, "readonly", note=f"a {type(value).__name__} value")


def group_fields(optimizer: Optimizer, group: Mapping[str, Any]) -> dict[str, FieldSpec]:
    limit = dtype_limit(group)
    return {k: field_spec(optimizer, k, v, limit) for k, v in group.items() if k not in HIDDEN}


def check_values(
    optimizer: Optimizer, group: Mapping[str, Any], values: Mapping[str, Any]
) -> dict[str, Any]:
    """Normalised values for ``group``, or FieldError. Checks cross-field rules too."""
    fields = group_fields(optimizer, group)
    out: dict[str, Any] = {}
    for key, value in values.items():
        spec = fields.get(key)
        if spec is None:
            editable = sorted(k for k, s in fields.items() if s.editable)
            raise FieldError(
                key,
                value,
                f"one of this {type(optimizer).__name__} group's fields: " + ", ".join(editable),
            )
        out[key] = spec.check(value)
    merged = {k: plain(v) for k, v in group.items() if k not in HIDDEN} | out
    nesterov_ok = merged.get("momentum", 0) > 0 and merged.get("dampening", 0) == 0
    if type(optimizer).__name__ == "SGD" and merged.get("nesterov") and not nesterov_ok:
        key = next((k for k in ("nesterov", "momentum", "dampening") if k in out), "nesterov")
        raise FieldError(key, out.get(key), "nesterov needs momentum > 0 and dampening = 0")
    sizes = merged.get("step_sizes")
    if isinstance(sizes, list | tuple) and len(sizes) == 2 and sizes[0] > sizes[1]:
        raise FieldError("step_sizes", out.get("step_sizes", sizes), "min_step <= max_step")
    return out


def _prepare_state(optimizer: Optimizer, group: dict[str, Any], key: str, value: Any) -> None:
    """Create the per-parameter state a switched-on flag makes ``step()`` read."""
    cls = type(optimizer).__name__
    for p in group["params"]:
        state = optimizer.state.get(p)
        if not state:
            continue  # no state yet: step() creates all of it
        if key == "amsgrad" and value and "max_exp_avg_sq" not in state:
            # the running max of exp_avg_sq starts from its current value
            state["max_exp_avg_sq"] = state["exp_avg_sq"].clone()
        elif key == "centered" and value and "grad_avg" not in state:
            state["grad_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
        elif (
            cls == "RMSprop" and key == "momentum" and value > 0 and "momentum_buffer" not in state
        ):
            state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)


def assign(optimizer: Optimizer, group: dict[str, Any], key: str, value: Any) -> None:
    """Set one checked value; tensor-valued entries (capturable, fused) are updated in place."""
    _prepare_state(optimizer, group, key, value)
    old = group.get(key)
    if isinstance(old, torch.Tensor):
        old.fill_(value)
    elif isinstance(old, tuple | list) and any(isinstance(v, torch.Tensor) for v in old):
        for o, v in zip(old, value, strict=True):
            if isinstance(o, torch.Tensor):
                o.fill_(v)
        kept = (o if isinstance(o, torch.Tensor) else v for o, v in zip(old, value, strict=True))
        group[key] = type(old)(kept)
    elif isinstance(old, list):
        group[key] = list(value)
    elif isinstance(old, int) and not isinstance(old, bool) and isinstance(value, float):
        group[key] = int(value) if value.is_integer() and key not in COMMON else value
    else:
        group[key] = value


def group_label(group: dict[str, Any], index: int) -> str:
    """A group as viewers name it: its "name", else its index."""
    name = group.get("name")
    return str(name) if isinstance(name, str) and name else str(index)
