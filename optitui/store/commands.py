"""Commands from viewers to the job: their shape, limits, and how they travel.

A command is a small JSON file written atomically into the run's inbox
(temporary name, then ``rename``). This module checks the *shape* of a
command (known kind, known argument names, JSON types, sizes); whether a
value suits the optimizer is decided by the job with :mod:`optitui.store.fields`.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from dataclasses import dataclass
from typing import Any

from optitui.store.fields import float64
from optitui.store.layout import RunPaths

MAX_COMMAND_BYTES = 16 * 1024
MAX_VALUES = 32
MAX_STEPS = 1_000_000
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,80}$")
FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
#: a race's alternatives to the current settings (more makes it slower than worth it)
MAX_CANDIDATES = 12
MAX_CANDIDATE_CHARS = 200
#: steps per candidate: a race that long is a training run of its own
MAX_RACE_STEPS = 100_000

Value = bool | int | float | tuple[float, ...]


class CommandError(ValueError):
    """A command that is malformed; the message says what and what is allowed."""


@dataclass(frozen=True)
class Command:
    id: str
    kind: str
    args: dict[str, Any]
    raw: str

    @property
    def group(self) -> int | str | None:
        g = self.args.get("group")
        return g if isinstance(g, int | str) and not isinstance(g, bool) else None


# kind -> {argument: required}
KINDS: dict[str, dict[str, bool]] = {
    "set": {"values": True, "group": False, "ramp": False},
    "scale-lr": {"factor": True, "group": False, "ramp": False},
    "pause": {},
    "resume": {},
    "step": {"n": False},
    "stop": {},
    "reset-state": {"group": False},
    "freeze": {"group": True},
    "unfreeze": {"group": True},
    "swap-optimizer": {"name": True, "values": False},
    "lookahead": {"enabled": True, "k": False, "alpha": False},
    "clip": {"max_norm": True},
    "scheduler": {"action": True},
    "save": {"tag": False},
    "restore": {"id": True},
    "checkpoint-policy": {"every": False, "minutes": False, "keep_last": False, "keep_best": False},
    "lr-find": {
        "start_lr": False,
        "end_lr": False,
        "num_iter": False,
        "mode": False,
        "group": False,
        "smooth_f": False,
        "diverge_th": False,
        "to_disk": False,
    },
    "lr-find-cancel": {},
    "divergence": {"action": False, "lr_factor": False, "skip": False, "spike_factor": False},
    "lr-find-apply": {"id": True, "rule": True},
    "race": {"candidates": True, "steps": False, "val": False, "group": False},
    "race-cancel": {},
    "race-apply": {"id": True, "candidate": True},
}
TAG_RE = re.compile(r"^[A-Za-z0-9_.:+-]{1,64}$")
#: the torch.optim classes a swap-optimizer command may name (never an import path)
SWAPPABLE = (
    "SGD",
    "Adam",
    "AdamW",
    "RMSprop",
    "Adagrad",
    "Adadelta",
    "Adamax",
    "NAdam",
    "RAdam",
    "ASGD",
    "Rprop",
)


def new_id() -> str:
    """Sortable and unique: nanoseconds, pid, randomness."""
    return f"{time.time_ns():020d}-{os.getpid()}-{os.urandom(3).hex()}"


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CommandError(f"{name}: expected a number, got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise CommandError(f"{name}: expected a finite number, got {value!r}")
    if isinstance(value, int) and abs(value) > 2**53:
        raise CommandError(f"{name}: {value} is out of range")
    return float(value)


def check_value(name: str, value: Any) -> Value:
    """A hyperparameter value as it may travel: bool, finite number, or a short tuple of them."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        _number(name, value)
        return value
    if isinstance(value, list | tuple):
        if not 1 <= len(value) <= 8:
            raise CommandError(f"{name}: expected 1 to 8 numbers, got {len(value)}")
        return tuple(_number(f"{name}[{i}]", v) for i, v in enumerate(value))
    raise CommandError(
        f"{name}: expected a number, true/false or a list of numbers, got {type(value).__name__}"
    )


def check_group(value: Any) -> int | str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CommandError(f"group: expected a group index or name, got {value!r}")
    if isinstance(value, int) and not 0 <= value < 100_000:
        raise CommandError(f"group: index {value} is out of range")
    if isinstance(value, str) and not 1 <= len(value) <= 100:
        raise CommandError("group: a name must have 1 to 100 characters")
    return value


def validate(kind: Any, args: Any) -> dict[str, Any]:
    """Check a command's kind and arguments; returns normalised arguments."""
    if not isinstance(kind, str) or kind not in KINDS:
        raise CommandError(f"unknown command {kind!r}; known: {', '.join(KINDS)}")
    if not isinstance(args, dict):
        raise CommandError(f"{kind}: arguments must be an object")
    spec = KINDS[kind]
    extra = set(args) - set(spec)
    if extra:
        raise CommandError(f"{kind}: unknown argument(s) {sorted(map(str, extra))}")
    missing = [a for a, req in spec.items() if req and a not in args]
    if missing:
        raise CommandError(f"{kind}: missing argument(s) {missing}")
    out: dict[str, Any] = {}
    if "group" in args:
        out["group"] = check_group(args["group"])
    check = _CHECKS.get(kind)
    if check is not None:
        out |= check(args)
    return out


def _values(kind: str, values: Any, *, allow_empty: bool = False) -> dict[str, Value]:
    if not isinstance(values, dict) or (not values and not allow_empty):
        raise CommandError(f"{kind}: values must be a non-empty object of field: value")
    if len(values) > MAX_VALUES:
        raise CommandError(f"{kind}: at most {MAX_VALUES} fields at once")
    checked: dict[str, Value] = {}
    for name, v in values.items():
        if not isinstance(name, str) or not FIELD_RE.match(name):
            raise CommandError(f"{kind}: {name!r} is not a field name")
        checked[name] = check_value(name, v)
    return checked


def _whole(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise CommandError(f"{name}: expected a whole number in {low}..{high}, got {value!r}")
    return value


def _ramp(args: dict[str, Any]) -> dict[str, Any]:
    if args.get("ramp") is None:
        return {}
    return {"ramp": _whole("ramp", args["ramp"], 1, MAX_STEPS)}


def _check_set(args: dict[str, Any]) -> dict[str, Any]:
    return {"values": _values("set", args["values"])} | _ramp(args)


def _check_scale(args: dict[str, Any]) -> dict[str, Any]:
    factor = _number("factor", args["factor"])
    if not factor > 0:
        raise CommandError(f"factor: must be > 0, got {factor}")
    return {"factor": factor} | _ramp(args)


def _check_step(args: dict[str, Any]) -> dict[str, Any]:
    return {"n": _whole("n", args.get("n", 1), 1, MAX_STEPS)}


def _check_swap(args: dict[str, Any]) -> dict[str, Any]:
    name = args["name"]
    if name not in SWAPPABLE:
        raise CommandError(f"name: {name!r} is not one of {', '.join(SWAPPABLE)}")
    return {
        "name": name,
        "values": _values("swap-optimizer", args.get("values", {}), allow_empty=True),
    }


def _check_lookahead(args: dict[str, Any]) -> dict[str, Any]:
    enabled = args["enabled"]
    if not isinstance(enabled, bool):
        raise CommandError(f"enabled: expected true or false, got {enabled!r}")
    k = _whole("k", args.get("k", 5), 1, 10_000)
    alpha = _number("alpha", args.get("alpha", 0.5))
    if not 0 < alpha <= 1:
        raise CommandError(f"alpha: expected a number in (0, 1], got {alpha:g}")
    return {"enabled": enabled, "k": k, "alpha": alpha}


def _check_clip(args: dict[str, Any]) -> dict[str, Any]:
    value = args["max_norm"]
    if value is None:
        return {"max_norm": None}
    max_norm = _number("max_norm", value)
    if not max_norm > 0:
        raise CommandError(f"max_norm: got {value!r}; allowed: a number > 0, or off (no clipping)")
    return {"max_norm": max_norm}


def _check_scheduler(args: dict[str, Any]) -> dict[str, Any]:
    action = args["action"]
    if action not in ("detach", "attach"):
        raise CommandError(f"action: expected 'detach' or 'attach', got {action!r}")
    return {"action": action}


def _check_save(args: dict[str, Any]) -> dict[str, Any]:
    tag = args.get("tag")
    if tag is not None and (not isinstance(tag, str) or not TAG_RE.match(tag)):
        raise CommandError(f"tag: {tag!r}: use 1 to 64 letters, digits and _ . : + -")
    return {"tag": tag}


def _check_restore(args: dict[str, Any]) -> dict[str, Any]:
    ref = args["id"]
    if not isinstance(ref, str) or not ID_RE.match(ref):
        raise CommandError(f"id: {ref!r} is not a checkpoint id, step or 'latest'")
    return {"id": ref}


def _check_policy(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.get("every") is not None:
        out["every"] = _whole("every", args["every"], 0, 10**9)  # 0 turns it off
    if args.get("minutes") is not None:
        minutes = _number("minutes", args["minutes"])
        if not 0 <= minutes <= 10**6:
            raise CommandError(f"minutes: expected 0 (off) to 1e6, got {minutes:g}")
        out["minutes"] = minutes
    if args.get("keep_last") is not None:
        out["keep_last"] = _whole("keep_last", args["keep_last"], 0, 10_000)
    if args.get("keep_best") is not None:
        if not isinstance(args["keep_best"], bool):
            raise CommandError(f"keep_best: expected true or false, got {args['keep_best']!r}")
        out["keep_best"] = args["keep_best"]
    if not out:
        raise CommandError("checkpoint-policy: give every, minutes, keep_last or keep_best")
    return out


def _check_lr_find(args: dict[str, Any]) -> dict[str, Any]:
    from optitui.lrfind.schedule import SweepConfig

    out: dict[str, Any] = {}
    for key in ("start_lr", "end_lr", "smooth_f", "diverge_th"):
        if args.get(key) is not None:
            out[key] = _number(key, args[key])
    if args.get("num_iter") is not None:
        out["num_iter"] = _whole("num_iter", args["num_iter"], 2, 100_000)
    if args.get("mode") is not None:
        if args["mode"] not in ("exp", "linear"):
            raise CommandError(f"mode: expected 'exp' or 'linear', got {args['mode']!r}")
        out["mode"] = args["mode"]
    if args.get("to_disk") is not None:
        if not isinstance(args["to_disk"], bool):
            raise CommandError(f"to_disk: expected true or false, got {args['to_disk']!r}")
        out["to_disk"] = args["to_disk"]
    try:  # the same checks the sweep itself makes, before anything runs
        SweepConfig(**{k: v for k, v in out.items() if k != "to_disk"})
    except ValueError as exc:
        raise CommandError(str(exc)) from None
    return out


def _check_lr_apply(args: dict[str, Any]) -> dict[str, Any]:
    from optitui.lrfind.suggest import RULES

    ref, rule = args["id"], args["rule"]
    if not isinstance(ref, str) or not ID_RE.match(ref):
        raise CommandError(f"id: {ref!r} is not a range test id (or 'latest')")
    if rule not in RULES:
        raise CommandError(f"rule: {rule!r}; use one of {', '.join(RULES)}")
    return {"id": ref, "rule": rule}


def _check_divergence(args: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.get("action") is not None:
        if args["action"] not in ("pause", "rollback", "ignore"):
            raise CommandError(f"action: {args['action']!r}; use pause, rollback or ignore")
        out["action"] = args["action"]
    if args.get("lr_factor") is not None:
        f = _number("lr_factor", args["lr_factor"])
        if not 0 < f <= 1:
            raise CommandError(f"lr_factor: expected a number in (0, 1], got {f:g}")
        out["lr_factor"] = f
    if args.get("skip") is not None:
        out["skip"] = _whole("skip", args["skip"], 0, 1_000_000)
    if args.get("spike_factor") is not None:
        f = _number("spike_factor", args["spike_factor"])
        if not f > 1:
            raise CommandError(f"spike_factor: expected a number > 1, got {f:g}")
        out["spike_factor"] = f
    if not out:
        raise CommandError("divergence: give action, lr_factor, skip or spike_factor")
    return out


def _check_race(args: dict[str, Any]) -> dict[str, Any]:
    """The shape of a race: candidates as typed (each one is checked by the job with the
    rules of the command it reads like, see ``optitui.store.candidates``)."""
    cands = args["candidates"]
    if not isinstance(cands, list) or not 1 <= len(cands) <= MAX_CANDIDATES:
        raise CommandError(f"candidates: expected a list of 1 to {MAX_CANDIDATES} candidates")
    for c in cands:
        if not isinstance(c, str) or not 1 <= len(c) <= MAX_CANDIDATE_CHARS:
            raise CommandError(f"candidates: {_short(c)} is not a candidate's text")
    out: dict[str, Any] = {"candidates": list(cands)}
    if args.get("steps") is not None:
        out["steps"] = _whole("steps", args["steps"], 1, MAX_RACE_STEPS)
    if args.get("val") is not None:
        if not isinstance(args["val"], bool):
            raise CommandError(f"val: expected true or false, got {args['val']!r}")
        out["val"] = args["val"]
    return out


def _check_race_apply(args: dict[str, Any]) -> dict[str, Any]:
    ref = args["id"]
    if not isinstance(ref, str) or not ID_RE.match(ref):
        raise CommandError(f"id: {ref!r} is not a race id (or 'latest')")
    return {"id": ref, "candidate": _whole("candidate", args["candidate"], 0, MAX_CANDIDATES)}


_CHECKS: dict[str, Any] = {
    "race": _check_race,
    "race-apply": _check_race_apply,
    "divergence": _check_divergence,
    "lr-find": _check_lr_find,
    "lr-find-apply": _check_lr_apply,
    "save": _check_save,
    "restore": _check_restore,
    "checkpoint-policy": _check_policy,
    "set": _check_set,
    "scale-lr": _check_scale,
    "step": _check_step,
    "swap-optimizer": _check_swap,
    "lookahead": _check_lookahead,
    "clip": _check_clip,
    "scheduler": _check_scheduler,
}


def parse(raw: bytes, fallback_id: str) -> Command:
    """Decode and check one command file. Raises CommandError with the reason."""
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandError(f"command is {len(raw)} bytes; the limit is {MAX_COMMAND_BYTES}")
    try:
        text = raw.decode("utf-8")
        obj = json.loads(
            text, parse_constant=_reject_constant, parse_int=json_int, parse_float=json_float
        )
    except CommandError:
        raise
    # ValueError covers malformed JSON and Python's limit on integer digits
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CommandError(f"not a JSON command: {str(exc)[:200]}") from None
    if not isinstance(obj, dict):
        raise CommandError("a command must be a JSON object")
    cid = obj.get("id", fallback_id)
    if not isinstance(cid, str) or not ID_RE.match(cid):
        raise CommandError(f"id: {_short(cid)} is not a valid command id")
    extra = set(obj) - {"id", "kind", "args", "sent"}
    if extra:
        raise CommandError(f"unknown key(s) {_short(sorted(map(str, extra)))}")
    kind = obj.get("kind")
    args = validate(kind, obj.get("args", {}))
    return Command(cid, str(kind), args, text)


def _short(value: Any, limit: int = 80) -> str:
    """A value's repr for a message, cut to ``limit`` characters."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


#: digits a JSON integer may have (2**53 has 16; anything longer is out of range anyway)
MAX_INT_DIGITS = 40


def json_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise CommandError(f"a number with {len(text.lstrip('-'))} digits is out of range")
    return int(text)


def json_float(text: str) -> float:
    if len(text) > MAX_INT_DIGITS * 2:
        raise CommandError(f"a number written with {len(text)} characters is out of range")
    try:
        return float64(text)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _reject_constant(name: str) -> Any:
    raise CommandError(f"{name} is not a finite number")


# -- sending ---------------------------------------------------------------------
def send(
    paths: RunPaths, kind: str, args: dict[str, Any] | None = None, *, cid: str | None = None
) -> str:
    """Write a command into the run's inbox atomically; returns its id (``cid``, when a
    client far away chose it, else a new one)."""
    args = dict(args or {})
    validate(kind, args)  # fail here, with the same message, rather than at the job
    if cid is None:
        cid = new_id()
    elif not ID_RE.match(cid):
        raise CommandError(f"command id {cid!r}: expected 1 to 80 of A-Z a-z 0-9 _ . -")
    body = json.dumps({"id": cid, "kind": kind, "args": args, "sent": time.time()})
    tmp = paths.inbox / f".{cid}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, body.encode())
    finally:
        os.close(fd)
    os.rename(tmp, paths.inbox / f"{cid}.json")
    return cid


# -- receiving -------------------------------------------------------------------
@dataclass(frozen=True)
class Rejected:
    id: str
    kind: str
    payload: str
    reason: str
