"""Commands as a person types them (``optitui send RUN set lr=3e-4 --group head``).

Shared by the CLI and the viewer, so a command reads the same everywhere.
"""

from __future__ import annotations

from typing import Any

from optitui.store.candidates import RACE_USAGE, parse_race
from optitui.store.commands import Command
from optitui.store.fields import group_ref, parse_number, parse_text

USAGE = {
    "set": "set FIELD=VALUE [FIELD=VALUE ...] [--group G] [--ramp N]",
    "scale-lr": "scale-lr FACTOR [--group G] [--ramp N]",
    "pause": "pause",
    "resume": "resume",
    "step": "step [N]",
    "stop": "stop",
    "reset-state": "reset-state [--group G]",
    "freeze": "freeze --group G",
    "unfreeze": "unfreeze --group G",
    "swap-optimizer": "swap-optimizer CLASS [FIELD=VALUE ...]",
    "lookahead": "lookahead off | lookahead [k=5] [alpha=0.5]",
    "clip": "clip MAX_NORM | clip off",
    "scheduler": "scheduler detach | scheduler attach",
    "save": "save [TAG]",
    "restore": "restore CHECKPOINT (an id, a unique id prefix, a step, or latest)",
    "checkpoint-policy": "checkpoint-policy [every=STEPS] [minutes=M] [keep_last=K] [keep_best=B]",
    "lr-find": "lr-find [start_lr=1e-7] [end_lr=10] [num_iter=100] [mode=exp|linear] "
    "[smooth_f=0.05] [diverge_th=5] [to_disk=false] [--group G]",
    "lr-find-cancel": "lr-find-cancel",
    "divergence": "divergence [action=pause|rollback|ignore] [lr_factor=0.5] [skip=10] "
    "[spike_factor=3]",
    "lr-find-apply": "lr-find-apply TEST_ID|latest RULE (steep, valley, minimum, slide)",
    "race": RACE_USAGE,
    "race-cancel": "race-cancel",
    "race-apply": "race-apply RACE_ID|latest N (N: the candidate's number, 0 = current)",
}
GROUPED = {"set", "scale-lr", "reset-state", "freeze", "unfreeze", "lr-find", "race"}
RAMPED = {"set", "scale-lr"}


def _pairs(words: list[str], example: str) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for w in words:
        name, eq, text = w.partition("=")
        if not eq or not name:
            raise ValueError(f"{w!r}: expected FIELD=VALUE, e.g. {example}")
        try:
            values[name] = parse_text(text)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
    return values


def _one_number(command: str, words: list[str], what: str) -> float:
    if len(words) != 1:
        raise ValueError(f"usage: {USAGE[command]}")
    try:
        return float(parse_number(words[0]))
    except ValueError as exc:
        raise ValueError(f"{what}: {words[0]!r} is not a number ({exc})") from None


def parse_send(
    command: str, words: list[str], group: str | None, ramp: int | None = None
) -> tuple[str, dict[str, Any]]:
    """Words to (kind, args). Raises ValueError with a message for the user."""
    if command not in USAGE:
        raise ValueError(f"unknown command {command!r}; use {', '.join(USAGE)}")
    if group is not None and command not in GROUPED:
        raise ValueError(f"{command} takes no --group")
    if ramp is not None and command not in RAMPED:
        raise ValueError(f"{command} takes no --ramp")
    args: dict[str, Any] = {}
    if group is not None:
        args["group"] = group_ref(group)
    if ramp is not None:
        args["ramp"] = ramp
    if command == "set":
        if not words:
            raise ValueError("set needs FIELD=VALUE, e.g. set lr=3e-4")
        args["values"] = _pairs(words, "lr=3e-4")
    elif command == "scale-lr":
        args["factor"] = _one_number(command, words, "factor")
    elif command == "step":
        if len(words) > 1:
            raise ValueError("step takes at most one N")
        if words:
            try:
                n = parse_number(words[0])
            except ValueError:
                n = None
            if not isinstance(n, int):
                raise ValueError(f"n: {words[0]!r} is not a whole number")
            args["n"] = n
    elif command == "swap-optimizer":
        if not words:
            raise ValueError(f"usage: {USAGE[command]}")
        args["name"] = words[0]
        args["values"] = _pairs(words[1:], "momentum=0.9")
    elif command == "lookahead":
        if words == ["off"]:
            return command, {"enabled": False}
        args["enabled"] = True
        args |= _pairs(words, "k=5")
    elif command == "clip":
        args["max_norm"] = None if words == ["off"] else _one_number(command, words, "max_norm")
    elif command == "scheduler":
        if words not in (["detach"], ["attach"]):
            raise ValueError(f"usage: {USAGE[command]}")
        args["action"] = words[0]
    elif command == "save":
        if len(words) > 1:
            raise ValueError(f"usage: {USAGE[command]}")
        if words:
            args["tag"] = words[0]
    elif command == "restore":
        if len(words) != 1:
            raise ValueError(f"usage: {USAGE[command]}")
        args["id"] = words[0]
    elif command == "checkpoint-policy":
        args |= _pairs(words, "every=1000")
    elif command == "lr-find":
        modes = [w.partition("=")[2] for w in words if w.startswith("mode=")]
        if modes:
            args["mode"] = modes[-1]
        args |= _pairs([w for w in words if not w.startswith("mode=")], "end_lr=1")
    elif command == "divergence":
        actions = [w.partition("=")[2] for w in words if w.startswith("action=")]
        if actions:
            args["action"] = actions[-1]
        args |= _pairs([w for w in words if not w.startswith("action=")], "lr_factor=0.5")
    elif command == "lr-find-apply":
        if len(words) != 2:
            raise ValueError(f"usage: {USAGE[command]}")
        args["id"], args["rule"] = words
    elif command == "race":
        race = parse_race(words, group)
        args |= {"candidates": [c.text for c in race.candidates]}
        args |= {k: v for k, v in (("steps", race.steps), ("val", race.val)) if v is not None}
    elif command == "race-apply":
        if len(words) != 2 or not words[1].isdigit():
            raise ValueError(f"usage: {USAGE[command]}")
        args["id"], args["candidate"] = words[0], int(words[1])
    elif words:
        raise ValueError(f"{command} takes no arguments")
    return command, args


def describe(cmd: Command) -> str:
    """A checked command in the words ``optitui send`` takes (the job's answers, the
    event log and ``optitui diff`` say it so)."""
    a = cmd.args
    where = "" if a.get("group") is None else f" group={a['group']}"
    ramp = f" over {a['ramp']} steps" if a.get("ramp") else ""
    if cmd.kind == "set":
        vals = " ".join(f"{k}={v}" for k, v in a["values"].items())
        return f"set {vals}{where}{ramp}"
    if cmd.kind == "scale-lr":
        return f"scale-lr {a['factor']:g}{where}{ramp}"
    if cmd.kind == "step":
        return f"step {a.get('n', 1)}"
    if cmd.kind == "swap-optimizer":
        vals = "".join(f" {k}={v}" for k, v in a.get("values", {}).items())
        return f"swap-optimizer {a['name']}{vals}"
    if cmd.kind == "lookahead":
        return f"lookahead k={a['k']} alpha={a['alpha']:g}" if a["enabled"] else "lookahead off"
    if cmd.kind == "clip":
        return "clip off" if a["max_norm"] is None else f"clip {a['max_norm']:g}"
    if cmd.kind == "scheduler":
        return f"scheduler {a['action']}"
    if cmd.kind == "save":
        return "save" + (f" {a['tag']}" if a.get("tag") else "")
    if cmd.kind == "restore":
        return f"restore {a['id']}"
    if cmd.kind == "lr-find":
        return " ".join(["lr-find", *(f"{k}={v}" for k, v in a.items() if v is not None)])
    if cmd.kind == "divergence":
        return " ".join(["divergence", *(f"{k}={v}" for k, v in a.items())])
    if cmd.kind == "lr-find-apply":
        return f"lr-find-apply {a['id']} {a['rule']}"
    if cmd.kind == "race":
        opts = "".join(f" {k}={str(a[k]).lower()}" for k in ("steps", "val") if k in a)
        return f"race{opts} {' '.join(a['candidates'])}{where}"
    if cmd.kind == "race-apply":
        return f"race-apply {a['id']} {a['candidate']}"
    if cmd.kind == "checkpoint-policy":
        return " ".join(["checkpoint-policy", *(f"{k}={v}" for k, v in a.items())])
    return f"{cmd.kind}{where}"
