"""The small forms behind the steering keys: their fields, and the command they make.

Textual-free: a :class:`Form` is data plus a ``parse`` function from the texts
typed to the command's arguments, checked with the same rules ``optitui send``
applies (:mod:`optitui.store.words`, :mod:`optitui.store.commands`). ``parse``
raises ValueError naming the field, what was given and what is allowed, and
then nothing is sent. Blank fields mean the job's defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optitui.store.commands import SWAPPABLE, validate
from optitui.store.words import parse_send
from optitui.tui import fmt
from optitui.tui.fmt import group_words

#: the classes `o` offers: every torch.optim optimizer the job knows how to swap to
OPTIMIZERS = SWAPPABLE
#: the range test's defaults as the job applies them (optitui.trainer.control.rangetest.DEFAULTS)
LR_FIND_DEFAULTS = {"start_lr": "1e-7", "end_lr": "10", "num_iter": "100"}


@dataclass(frozen=True)
class FormField:
    name: str
    label: str
    value: str = ""  # pre-filled text
    placeholder: str = ""  # shown while empty, e.g. the default a blank means
    choices: tuple[tuple[str, str], ...] = ()  # (value, label): a pick list, not free text


@dataclass(frozen=True)
class Form:
    title: str
    fields: tuple[FormField, ...]
    parse: Callable[[dict[str, str]], dict[str, Any]]
    note: str = ""
    start: str = ""  # the field that has the focus first (default: the first text box)
    hint: str = "Enter sends · Esc cancels · Tab next field"


def number(name: str, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a number") from None


def whole(name: str, text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{name}: {text!r} is not a whole number") from None


def checked(kind: str, args: dict[str, Any]) -> dict[str, Any]:
    """``args`` when a job would accept their shape (CommandError is a ValueError)."""
    validate(kind, args)
    return args


def lookahead_form() -> Form:
    def parse(t: dict[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = {"enabled": True}
        if t["k"].strip():
            args["k"] = whole("k", t["k"].strip())
        if t["alpha"].strip():
            args["alpha"] = number("alpha", t["alpha"].strip())
        return checked("lookahead", args)

    return Form(
        "Lookahead on: every k steps, move the slow weights alpha of the way",
        (
            FormField("k", "k (steps)", placeholder="5"),
            FormField("alpha", "alpha", placeholder="0.5"),
        ),
        parse,
        "slow weights start from the current weights; k turns it off again",
    )


def clip_form(current: float | None) -> Form:
    def parse(t: dict[str, str]) -> dict[str, Any]:
        text = t["max_norm"].strip()
        if not text:
            raise ValueError("max_norm: enter a number > 0, or off")
        _, args = parse_send("clip", [text], None)
        return checked("clip", args)

    shown = "" if current is None else fmt.editable_text(float(current))
    return Form(
        f"Gradient clipping (now {'off' if current is None else fmt.value(current)})",
        (FormField("max_norm", "max grad norm", shown, "e.g. 1.0, or off"),),
        parse,
    )


def swap_form(current: str | None) -> Form:
    def parse(t: dict[str, str]) -> dict[str, Any]:
        _, args = parse_send("swap-optimizer", [t["name"], *t["values"].split()], None)
        if args["name"] == current and not args.get("values"):
            raise ValueError(
                f"class: the optimizer is {current} already; pick another class, or give "
                "FIELD=VALUE pairs to start it again with those"
            )
        return checked("swap-optimizer", args)

    first = current if current in OPTIMIZERS else OPTIMIZERS[0]
    return Form(
        f"Swap the optimizer (now {current or '?'}): lr and weight decay carry over; "
        "other fields take the new class's defaults; the optimizer state starts fresh",
        (
            FormField("name", "class", first, choices=tuple((o, o) for o in OPTIMIZERS)),
            FormField("values", "FIELD=VALUE ...", "", "e.g. momentum=0.9 nesterov=true"),
        ),
        parse,
        "you are asked to confirm, with what changes, before anything is sent",
        start="name",
        hint="Enter opens the class list · Tab: FIELD=VALUE, Enter there sends · Esc cancels",
    )


def swap_summary(current: str | None, args: dict[str, Any], groups: list[dict[str, Any]]) -> str:
    """What a swap changes, for the question before it is sent: which fields carry over,
    which start again from the new class's defaults (with their values now), and the
    optimizer state that is dropped."""
    name = str(args["name"])
    given: dict[str, Any] = dict(args.get("values") or {})
    kept = ["lr", "weight_decay"]
    reset: dict[str, list[str]] = {}
    for g in groups:
        specs = g.get("fields") or {}
        for field, value in (g.get("values") or {}).items():
            spec = specs.get(field) or {}
            if field in kept or field in given or spec.get("kind") == "readonly":
                continue
            shown = reset.setdefault(field, [])
            text = fmt.value(value)
            if text not in shown:
                shown.append(text)
    lines = [f"Swap the optimizer {current or '?'} → {name} for every group?"]
    lines.append(f"Carried over: {', '.join(kept)} (and the scheduler).")
    if given:
        lines.append("Set: " + " ".join(f"{k}={fmt.value(v)}" for k, v in given.items()) + ".")
    if reset:
        what = ", ".join(f"{k} (now {' / '.join(v)})" for k, v in reset.items())
        lines.append(
            f"Reset to {name}'s defaults where it has them: {what}; momentum and "
            "beta1 map onto each other when one class has the one and not the other."
        )
    lines.append(
        "Dropped: the optimizer state of every parameter (momentum buffers, moments, "
        "step counts); it builds up again from zero."
    )
    return "\n".join(lines)


def divergence_form(current: dict[str, Any]) -> Form:
    actions = (
        ("pause", "pause: stop stepping and say so"),
        ("rollback", "rollback: last good state, lower lr, skip batches"),
        ("ignore", "ignore: warn and train on"),
    )

    def parse(t: dict[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = {"action": t["action"]}
        for name in ("lr_factor", "spike_factor"):
            if t[name].strip():
                args[name] = number(name, t[name].strip())
        if t["skip"].strip():
            args["skip"] = whole("skip", t["skip"].strip())
        return checked("divergence", args)

    def text(name: str) -> str:
        v = current.get(name)
        return "" if v is None else fmt.editable_text(v)

    return Form(
        "On a non-finite loss or gradient norm",
        (
            FormField("action", "action", str(current.get("action") or "pause"), choices=actions),
            FormField("lr_factor", "rollback lr ×", text("lr_factor"), "0.5"),
            FormField("skip", "rollback skips", text("skip"), "10 (batches)"),
            FormField("spike_factor", "spike warning at", text("spike_factor"), "3 (× recent min)"),
        ),
        parse,
    )


def lr_find_form(selected: tuple[int, str] | None) -> Form:
    scopes = [("all", "all groups (their lr ratios kept)")]
    if selected is not None:
        scopes.append(("group", f"{group_words(selected[1])} only (the others keep their lr)"))

    def parse(t: dict[str, str]) -> dict[str, Any]:
        args: dict[str, Any] = {}
        for name in ("start_lr", "end_lr"):
            if t[name].strip():
                args[name] = number(name, t[name].strip())
        if t["num_iter"].strip():
            args["num_iter"] = whole("num_iter", t["num_iter"].strip())
        if t["mode"] != "exp":
            args["mode"] = t["mode"]
        if t["scope"] == "group" and selected is not None:
            args["group"] = selected[0]
        return checked("lr-find", args)

    d = LR_FIND_DEFAULTS
    return Form(
        "LR range test on the live job (training resumes exactly where it was)",
        (
            FormField("start_lr", "start lr", placeholder=d["start_lr"]),
            FormField("end_lr", "end lr", placeholder=d["end_lr"]),
            FormField("num_iter", "iterations", placeholder=d["num_iter"]),
            FormField("mode", "schedule", "exp", choices=(("exp", "exp"), ("linear", "linear"))),
            FormField("scope", "sweep", "all", choices=tuple(scopes)),
        ),
        parse,
        "Enter with blanks: the defaults shown",
    )


def race_form(selected: tuple[int, str] | None) -> Form:
    scopes = [("all", "all groups")]
    if selected is not None:
        scopes.append(("group", f"{group_words(selected[1])} only (lr*F and fields)"))

    def parse(t: dict[str, str]) -> dict[str, Any]:
        words = t["candidates"].split()
        if t["steps"].strip():
            words.insert(0, f"steps={t['steps'].strip()}")
        if t["val"] != "auto":
            words.insert(0, f"val={t['val']}")
        group = str(selected[0]) if t["scope"] == "group" and selected is not None else None
        _, args = parse_send("race", words, group)
        return checked("race", args)

    return Form(
        "Optimizer race: each candidate from the state the run is in, on the same batches; "
        "the run goes on exactly where it was",
        (
            FormField("steps", "steps", placeholder="50 (per candidate)"),
            FormField(
                "candidates", "candidates", "lr*0.5 lr*2", "lr*F  FIELD=V,..  optimizer=C,.."
            ),
            FormField(
                "val",
                "validation",
                "auto",
                choices=(
                    ("auto", "on when the job has val_data"),
                    ("true", "on"),
                    ("false", "off"),
                ),
            ),
            FormField("scope", "groups", "all", choices=tuple(scopes)),
        ),
        parse,
        "current runs first as candidate 0; one bad candidate refuses the whole race",
        start="candidates",
    )


def save_form() -> Form:
    def parse(t: dict[str, str]) -> dict[str, Any]:
        words = t["tag"].split()
        _, args = parse_send("save", words, None)
        return checked("save", args)

    return Form(
        "Save a checkpoint",
        (FormField("tag", "tag", placeholder="optional; Enter for none"),),
        parse,
    )
