"""A snapshot's structure checked against the live run, before any state is touched.

A checkpoint file may hold anything its SHA-256 was computed over: a list
where a dict belongs, a step that is a string, an optimizer state tensor of
another shape. ``torch`` loads such things into the model and optimizer
without complaint and the run fails at the next step. :func:`check` refuses
them first, with the path of the first bad value, so a restore or
``--resume`` either leaves the run exactly as it was or puts back a state
the next step can use.

The rules follow what :mod:`optitui.trainer.core.state` reads: every key it
reads, with the type and shape it needs. Values that only exist in the live
objects (scheduler state) are compared with the live ``state_dict()`` for
shape. RNG states are checked by applying them and putting the current ones
back, so any format the RNG setters accept is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.optim import Optimizer

from optitui.store.fields import FieldError
from optitui.store.manifests import CheckpointError
from optitui.trainer.core import hparams

#: the keys of a snapshot; a new key in state.capture must get its rule here (a test checks)
TOP_KEYS = {
    "model",
    "optimizer",
    "optimizer_class",
    "scheduler",
    "lr_control",
    "requires_grad",
    "clip",
    "lookahead",
    "step",
    "epoch",
    "rng",
    "data",
    "scaler",
}
#: keys only some snapshots have, checked when present: every rank's RNG states (a
#: checkpoint saved by all ranks of a torch.distributed run at one step)
EXTRA_KEYS = {"rng_by_rank"}
SCALER_KEYS = {"scale", "growth_factor", "backoff_factor", "growth_interval", "_growth_tracker"}
LR_CONTROL_KEYS = {"mult", "base", "attached", "script", "unedited"}
#: keys a checkpoint of an earlier optitui may lack (the restore has a default for them)
OPTIONAL = {("lr_control", "script"), ("lr_control", "unedited"), ("scaler",)}
LOOKAHEAD_KEYS = {"k", "alpha", "count", "slow"}
DATA_KEYS = {"batch", "started", "epoch_rng"}
RNG_KEYS = {"python", "torch", "cuda", "generators", "numpy"}
MAX_COUNT = 2**62
#: param-group switches an optimizer's load_state_dict fills in when a file lacks them
FILLED_BY_TORCH = {
    "foreach",
    "fused",
    "capturable",
    "differentiable",
    "maximize",
    "decoupled_weight_decay",
}


@dataclass(frozen=True)
class Target:
    """What a snapshot is put back into."""

    model: nn.Module
    optimizer: Optimizer
    scheduler: Any
    train_data: Any = None


def bad(path: str, what: str) -> CheckpointError:
    return CheckpointError(f"damaged checkpoint: {path} {what}")


def check(snap: Any, target: Target, *, data: bool = True) -> None:
    """Raise CheckpointError unless ``snap`` can be put back into ``target`` whole."""
    if not isinstance(snap, dict):
        raise bad("the state", f"is a {type(snap).__name__}, not a dict")
    needed = TOP_KEYS - {path[0] for path in OPTIONAL if len(path) == 1}
    needed = needed if data else needed - {"data"}
    missing = sorted(needed - snap.keys())
    if missing:
        raise bad("the state", f"lacks {', '.join(missing)}")
    _model(snap["model"], target.model)
    _optimizer(snap, target.optimizer)
    _scheduler(snap["scheduler"], target.scheduler)
    _lr_control(snap["lr_control"], len(target.optimizer.param_groups))
    _requires_grad(snap["requires_grad"], target.model)
    clip = snap["clip"]
    if clip is not None and not (_number(clip) and math.isfinite(clip) and clip > 0):
        raise bad("clip", f"is {_show(clip)}; expected null or a number > 0")
    _lookahead(snap["lookahead"], target.optimizer)
    for key in ("step", "epoch"):
        _count(key, snap[key])
    _rng("rng", snap["rng"], target.train_data)
    if "rng_by_rank" in snap:
        for rank, by_rank in _dict("rng_by_rank", snap["rng_by_rank"]).items():
            if isinstance(rank, bool) or not isinstance(rank, int) or rank < 0:
                raise bad("rng_by_rank", f"has the key {_show(rank)}; expected ranks")
            _rng(f"rng_by_rank[{rank}]", by_rank, target.train_data)
    _scaler(snap.get("scaler"))
    if data:
        _data(snap["data"], target.train_data)


# -- pieces --------------------------------------------------------------------------------
def _show(value: Any) -> str:
    text = repr(value) if not isinstance(value, torch.Tensor) else f"a tensor {tuple(value.shape)}"
    return text if len(text) <= 60 else text[:57] + "..."


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _count(path: str, v: Any) -> None:
    if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_COUNT:
        raise bad(path, f"is {_show(v)}; expected a whole number >= 0")


def _dict(path: str, v: Any, keys: set[str] | None = None) -> dict[Any, Any]:
    if not isinstance(v, dict):
        raise bad(path, f"is a {type(v).__name__}, not a dict")
    if keys is not None and not keys <= v.keys():
        raise bad(path, f"lacks {', '.join(sorted(keys - v.keys()))}")
    return v


def _list(path: str, v: Any, length: int | None = None) -> list[Any]:
    if not isinstance(v, list | tuple):
        raise bad(path, f"is a {type(v).__name__}, not a list")
    if length is not None and len(v) != length:
        raise bad(path, f"has {len(v)} entries; expected {length}")
    return list(v)


def _model(saved: Any, model: nn.Module) -> None:
    saved = _dict("model", saved)
    here = model.state_dict()
    missing, extra = sorted(here.keys() - saved.keys()), sorted(saved.keys() - here.keys())
    if missing or extra:
        raise CheckpointError(
            f"other model: missing {missing[:3]}{'...' if len(missing) > 3 else ''}, "
            f"unexpected {extra[:3]}{'...' if len(extra) > 3 else ''}"
        )
    for k, t in here.items():
        s = saved[k]
        if not isinstance(s, torch.Tensor) or s.shape != t.shape or s.dtype != t.dtype:
            what = (tuple(s.shape), s.dtype) if isinstance(s, torch.Tensor) else type(s).__name__
            raise CheckpointError(
                f"other model: {k} is {what} there, {(tuple(t.shape), t.dtype)} here"
            )


def _optimizer(snap: dict[str, Any], optimizer: Optimizer) -> None:
    cls = type(optimizer).__name__
    saved_cls = snap["optimizer_class"]
    if saved_cls != cls:
        shown = (
            saved_cls if isinstance(saved_cls, str) and len(saved_cls) < 60 else _show(saved_cls)
        )
        raise CheckpointError(f"saved with optimizer {shown}; this run uses {cls}")
    saved = _dict("optimizer", snap["optimizer"], {"state", "param_groups"})
    live_groups = optimizer.param_groups
    groups = _list("optimizer.param_groups", saved["param_groups"])
    sizes = [len(g["params"]) for g in live_groups]
    if len(groups) != len(live_groups):
        raise CheckpointError(
            f"other param groups: {len(groups)} group(s) there, {len(sizes)} here"
        )
    params: list[torch.Tensor] = []  # saved index -> the live parameter it lands on
    owner: list[int] = []
    for i, (g, live) in enumerate(zip(groups, live_groups, strict=True)):
        path = f"optimizer.param_groups[{i}]"
        g = _dict(path, g, {"params"})
        ids = _list(f"{path}.params", g["params"], len(live["params"]))
        if any(isinstance(x, bool) or not isinstance(x, int) for x in ids):
            raise bad(f"{path}.params", "holds something other than parameter indices")
        params += live["params"]
        owner += [i] * len(ids)
        _group_values(path, g, live, optimizer)
    ids = [x for g in groups for x in g["params"]]
    if sorted(ids) != list(range(len(ids))):
        raise bad("optimizer.param_groups", "does not number its parameters 0..n-1 once each")
    where = dict(zip(ids, range(len(ids)), strict=True))
    _optimizer_state(_dict("optimizer.state", saved["state"]), where, params, owner, optimizer)


def _group_values(path: str, g: dict[str, Any], live: dict[str, Any], opt: Optimizer) -> None:
    limit = hparams.dtype_limit(live)
    for key, value in live.items():
        if key in hparams.HIDDEN:
            continue
        spec = hparams.field_spec(opt, key, value, limit)
        if key not in g:
            if key not in FILLED_BY_TORCH:
                raise bad(path, f"lacks {key}")
            continue
        saved = g[key]
        if isinstance(saved, torch.Tensor) and not isinstance(value, torch.Tensor):
            raise bad(f"{path}.{key}", f"is {_show(saved)}; expected a number")
        if spec.editable:
            try:
                spec.check(hparams.plain(saved))
            except FieldError as exc:
                raise bad(f"{path}.{key}", f"is not usable: {exc}") from None
        elif _kind(saved) != _kind(value) and {_kind(saved), _kind(value)} != {"none", "bool"}:
            raise bad(f"{path}.{key}", f"is {_show(saved)}; expected like {_show(value)}")


def _optimizer_state(
    state: dict[Any, Any],
    where: dict[int, int],
    params: list[torch.Tensor],
    owner: list[int],
    optimizer: Optimizer,
) -> None:
    by_group: dict[int, tuple[frozenset[str], dict[str, str]]] = {}
    live_kinds: dict[int, dict[str, str]] = {}
    for j, p in enumerate(params):  # what the live optimizer keeps, by group
        entry = optimizer.state.get(p)
        if entry:
            live_kinds.setdefault(owner[j], {}).update({k: _kind(v) for k, v in entry.items()})
    for key, entry in state.items():
        path = f"optimizer.state[{key!r}]"
        if isinstance(key, bool) or not isinstance(key, int) or key not in where:
            raise bad(path, "is not the state of one of the parameters")
        j = where[key]
        entry = _dict(path, entry)
        if not entry:
            continue
        kinds = {}
        for name, v in entry.items():
            kinds[name] = _kind(v)
            if kinds[name] == "tensor":
                if v.numel() > 1 and v.shape != params[j].shape:
                    raise bad(
                        f"{path}.{name}",
                        f"has shape {tuple(v.shape)}, the parameter {tuple(params[j].shape)}",
                    )
                if v.is_complex() != params[j].is_complex():
                    raise bad(f"{path}.{name}", f"has dtype {v.dtype}")
            elif kinds[name] not in ("number", "none"):
                raise bad(f"{path}.{name}", f"is {_show(v)}; expected a tensor or a number")
        group = owner[j]
        first = by_group.setdefault(group, (frozenset(kinds), kinds))
        if frozenset(kinds) != first[0]:
            raise bad(
                path, f"has keys {sorted(kinds)}; its group's other entries {sorted(first[0])}"
            )
        for name, kind in kinds.items():
            expected = live_kinds.get(group, {}).get(name, first[1][name])
            if kind != expected and "none" not in (kind, expected):
                raise bad(f"{path}.{name}", f"is a {kind}; the optimizer keeps a {expected}")


def _kind(v: Any) -> str:
    if v is None:
        return "none"
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int | float):
        return "number"
    if isinstance(v, torch.Tensor):
        return "tensor"
    if isinstance(v, str):
        return "str"
    if isinstance(v, dict):
        return "dict"
    if isinstance(v, list | tuple):
        return "list"
    return type(v).__name__


def same_shape(path: str, saved: Any, live: Any) -> None:
    """``saved`` has the structure of ``live``: the same keys, lengths and kinds of value."""
    ks, kl = _kind(saved), _kind(live)
    if ks != kl:
        raise bad(path, f"is {_show(saved)}; expected like {_show(live)}")
    if ks == "dict":
        if saved.keys() != live.keys():
            diff = sorted(map(str, saved.keys() ^ live.keys()))[:3]
            raise bad(path, f"has other keys than this run's ({', '.join(diff)})")
        for k in live:
            same_shape(f"{path}.{k}", saved[k], live[k])
    elif ks == "list":
        if len(saved) != len(live):
            raise bad(path, f"has {len(saved)} entries; expected {len(live)}")
        for i, (a, b) in enumerate(zip(saved, live, strict=True)):
            same_shape(f"{path}[{i}]", a, b)
    elif ks == "tensor" and saved.shape != live.shape:
        raise bad(path, f"has shape {tuple(saved.shape)}; expected {tuple(live.shape)}")


def _scheduler(saved: Any, scheduler: Any) -> None:
    if (scheduler is None) != (saved is None):
        has = scheduler is not None
        raise CheckpointError(
            "saved " + ("without" if has else "with") + " a scheduler; "
            "this run has " + ("one" if has else "none")
        )
    if scheduler is not None:
        same_shape("scheduler", saved, scheduler.state_dict())


def _lr_control(saved: Any, groups: int) -> None:
    saved = _dict(
        "lr_control", saved, LR_CONTROL_KEYS - {p[1] for p in OPTIONAL if p[0] == "lr_control"}
    )
    mult = _list("lr_control.mult", saved["mult"], groups)
    if not all(_number(m) and math.isfinite(m) and m >= 0 for m in mult):
        raise bad("lr_control.mult", "holds something other than finite numbers >= 0")
    for k, v in _dict("lr_control.base", saved["base"]).items():
        index = k if isinstance(k, int) and not isinstance(k, bool) else _index(k)
        if index is None or not 0 <= index < groups or not (_number(v) and math.isfinite(v)):
            raise bad("lr_control.base", f"has {_show(k)}: {_show(v)}")
    if not isinstance(saved["attached"], bool):
        raise bad("lr_control.attached", f"is {_show(saved['attached'])}; expected true or false")
    if "script" in saved:  # the groups whose lr the script writes
        script = _list("lr_control.script", saved["script"])
        if not all(_index(i) is not None or (_number(i) and i in range(groups)) for i in script):
            raise bad("lr_control.script", "holds something other than group indices")
    if "unedited" in saved:
        unedited = _list("lr_control.unedited", saved["unedited"], groups)
        if not all(_number(u) and math.isfinite(u) for u in unedited):
            raise bad("lr_control.unedited", "holds something other than finite numbers")


def _index(k: Any) -> int | None:
    return int(k) if isinstance(k, str) and k.isascii() and k.isdigit() else None


def _requires_grad(saved: Any, model: nn.Module) -> None:
    flags = _list("requires_grad", saved, len(list(model.parameters())))
    if not all(isinstance(f, bool) for f in flags):
        raise bad("requires_grad", "holds something other than true/false")
    if flags and not any(flags):
        raise bad("requires_grad", "freezes every parameter; nothing would train")


def _lookahead(saved: Any, optimizer: Optimizer) -> None:
    if saved is None:
        return
    saved = _dict("lookahead", saved, LOOKAHEAD_KEYS)
    k, alpha = saved["k"], saved["alpha"]
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10_000:
        raise bad("lookahead.k", f"is {_show(k)}")
    if not (_number(alpha) and 0 < alpha <= 1):
        raise bad("lookahead.alpha", f"is {_show(alpha)}")
    _count("lookahead.count", saved["count"])
    params = [p for g in optimizer.param_groups for p in g["params"]]
    for i, (s, p) in enumerate(
        zip(_list("lookahead.slow", saved["slow"], len(params)), params, strict=True)
    ):
        if not isinstance(s, torch.Tensor) or s.shape != p.shape:
            raise bad(f"lookahead.slow[{i}]", f"is {_show(s)}; expected shape {tuple(p.shape)}")


def _rng(path: str, saved: Any, train_data: Any) -> None:
    """The RNG states' shape, then each applied and the current ones put back: what the
    setters accept is valid."""
    from optitui.trainer.core import state

    saved = _dict(path, saved, RNG_KEYS)
    py = _list(f"{path}.python", saved["python"], 3)
    if not (
        isinstance(py[0], int)
        and isinstance(py[1], list | tuple)
        and all(isinstance(x, int) and not isinstance(x, bool) for x in py[1])
        and (py[2] is None or _number(py[2]))
    ):
        raise bad(f"{path}.python", "is not a Python random state")
    for key in ("torch",):
        if not isinstance(saved[key], torch.Tensor) or saved[key].dtype != torch.uint8:
            raise bad(f"{path}.{key}", f"is {_show(saved[key])}; expected a byte tensor")
    gens = state.data_generators(train_data) if train_data is not None else []
    for key in ("cuda", "generators"):
        items = _list(f"{path}.{key}", saved[key])
        if not all(isinstance(t, torch.Tensor) and t.dtype == torch.uint8 for t in items):
            raise bad(f"{path}.{key}", "holds something other than byte tensors")
    if train_data is not None and len(saved["generators"]) != len(gens):
        raise bad(f"{path}.generators", f"has {len(saved['generators'])}; the data has {len(gens)}")
    now = state.rng_state(gens)
    try:
        state.set_rng_state(saved, gens)
    except Exception as exc:
        raise bad(path, f"cannot be used: {type(exc).__name__}: {str(exc)[:120]}") from None
    finally:
        state.set_rng_state(now, gens)


def _scaler(saved: Any) -> None:
    """A GradScaler's state (or none): ignored by a run without one, so only its shape."""
    if saved is None:
        return
    saved = _dict("scaler", saved, SCALER_KEYS)
    for key in ("scale", "growth_factor", "backoff_factor"):
        v = saved[key]
        if not (_number(v) and math.isfinite(v) and v > 0):
            raise bad(f"scaler.{key}", f"is {_show(v)}; expected a finite number > 0")
    _count("scaler._growth_tracker", saved["_growth_tracker"])
    _count("scaler.growth_interval", saved["growth_interval"])


def _data(saved: Any, train_data: Any) -> None:
    saved = _dict("data", saved, DATA_KEYS)
    _count("data.batch", saved["batch"])
    if not isinstance(saved["started"], bool):
        raise bad("data.started", f"is {_show(saved['started'])}; expected true or false")
    size = _length(train_data)
    if size is not None and saved["batch"] > size:
        raise bad("data.batch", f"is {saved['batch']}, past the {size} batches of an epoch")
    if saved["epoch_rng"] is not None:
        _rng("data.epoch_rng", saved["epoch_rng"], train_data)


def _length(data: Any) -> int | None:
    try:
        return len(data) if data is not None else None
    except Exception:
        return None
