"""Applying commands at a step boundary: all or nothing, always answered."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from optitui.store.commands import Command, CommandError
from optitui.store.fields import FieldError
from optitui.store.words import describe as describe
from optitui.trainer.control import answers, race_commands, ramps, rangetest, surgery
from optitui.trainer.control.groups import Rejection as Rejection
from optitui.trainer.control.groups import resolve_groups as resolve_groups
from optitui.trainer.control.steerable import Steerable
from optitui.trainer.core import checkpoint, dist, hparams
from optitui.trainer.core.hparams import group_label as group_label
from optitui.trainer.core.lookahead import Lookahead
from optitui.trainer.core.lr import read_lr


@dataclass(frozen=True)
class Applied:
    """A command in effect: whether param groups changed, and a word for its answer."""

    changed: bool
    note: str | None = None


class Later:
    """A command answered once its effect exists (a save: when the file is listed)."""


LATER = Later()


#: fields a momentum-cycling scheduler (OneCycleLR, CyclicLR) writes every step
CYCLED = ("momentum", "betas")


def apply(trainer: Steerable, cmd: Command) -> Applied | Later:
    """Apply ``cmd``: what it did, or LATER when it answers once its effect exists.
    Raises Rejection."""
    handler = _HANDLERS.get(cmd.kind)
    if handler is None and cmd.kind not in ("lr-find", "save", *race_commands.KINDS):
        raise Rejection(f"unknown command {cmd.kind!r}")
    _check_sharded(trainer, cmd)
    try:
        if cmd.kind == "lr-find":  # the test is named after the command that asked for it
            return Applied(_lr_find(trainer, cmd.args, cmd.id))
        if cmd.kind in race_commands.KINDS:  # and so is a race
            return Applied(*race_commands.answer(trainer, cmd, check_edit, edit))
        if cmd.kind == "save":
            return _save(trainer, cmd)
        assert handler is not None
        done = handler(trainer, cmd.args)
        return done if isinstance(done, Applied) else Applied(done)
    except (
        FieldError,
        CommandError,
        surgery.SurgeryError,
        checkpoint.CheckpointError,
        rangetest.RangeTestError,
        ValueError,
    ) as exc:
        raise Rejection(str(exc)) from None


def _check_cycled(trainer: Steerable, fields: set[str]) -> None:
    drives = trainer.lr.drives_momentum()
    hit = sorted(fields & set(CYCLED))
    if drives and hit:
        raise Rejection(
            f"{hit[0]}: driven by {drives} (cycle_momentum=True) every step; "
            "detach the scheduler to set it"
        )


def _checked_set(trainer: Steerable, args: dict[str, Any]) -> list[tuple[int, dict[str, Any]]]:
    """Each target group's values, checked as ``set`` checks them; nothing is changed."""
    targets = resolve_groups(trainer, args.get("group"))
    groups = trainer.optimizer.param_groups
    values: dict[str, Any] = args["values"]
    _check_cycled(trainer, set(values))
    steps = args.get("ramp")
    checked: list[dict[str, Any]] = []
    for i in targets:  # check every group before touching any
        try:
            vals = hparams.check_values(trainer.optimizer, groups[i], values)
            if "lr" in vals:
                trainer.lr.check_set(i, vals["lr"])
            if steps:
                for k, v in vals.items():
                    if k != "lr":
                        ramps.start_field_ramp(trainer, i, k, v, steps)  # raises for bools
        except FieldError as exc:
            raise Rejection(f"group {group_label(groups[i], i)}: {exc}") from None
        checked.append(vals)
    return list(zip(targets, checked, strict=True))


def _set(trainer: Steerable, args: dict[str, Any]) -> Applied:
    groups = trainer.optimizer.param_groups
    steps = args.get("ramp")
    checked = _checked_set(trainer, args)
    for i, vals in checked:
        for key, value in vals.items():
            if steps:
                ramp = (
                    ramps.start_lr_ramp(trainer, i, value, steps)
                    if key == "lr"
                    else ramps.start_field_ramp(trainer, i, key, value, steps)
                )
                trainer.start_ramp(ramp)
            else:
                trainer.cancel_ramp(i, key)
                if key == "lr":
                    trainer.lr.set_lr(i, value)
                else:
                    hparams.assign(trainer.optimizer, groups[i], key, value)
    targets = [i for i, _ in checked]
    return Applied(True, _by_script(trainer, targets) if "lr" in args["values"] else None)


def _by_script(trainer: Steerable, targets: list[int]) -> str | None:
    """How an lr edit lives on where the script writes the lr itself."""
    lr, groups = trainer.lr, trainer.optimizer.param_groups
    mine = [i for i in targets if i in lr.script]
    if not mine:
        return None
    each = ", ".join(f"{group_label(groups[i], i)} x{lr.mult[i]:.4g}" for i in mine)
    return f"the script writes the lr itself: multiplier on its values ({each})"


def _checked_scale(trainer: Steerable, args: dict[str, Any]) -> list[int]:
    """The target groups, once every one's lr times the factor is in range."""
    targets = resolve_groups(trainer, args.get("group"))
    factor = float(args["factor"])
    groups = trainer.optimizer.param_groups
    limit = [hparams.dtype_limit(groups[i]) for i in targets]
    for i, lim in zip(targets, limit, strict=True):
        new = read_lr(groups[i]) * factor
        if not math.isfinite(new) or new > lim:
            raise Rejection(
                f"group {group_label(groups[i], i)}: lr * {factor:g} = {new:g} is "
                f"out of range (at most {lim:g})"
            )
    return targets


def _scale(trainer: Steerable, args: dict[str, Any]) -> Applied:
    targets = _checked_scale(trainer, args)
    factor, groups = float(args["factor"]), trainer.optimizer.param_groups
    steps = args.get("ramp")
    for i in targets:
        if steps:
            target = read_lr(groups[i]) * factor
            trainer.start_ramp(ramps.start_lr_ramp(trainer, i, target, steps))
        else:
            trainer.cancel_ramp(i, "lr")
            trainer.lr.scale(i, factor)
    return Applied(True, _by_script(trainer, targets))


def _pause(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.pause()
    return False


def _resume(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.resume()
    return False


def _step(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.step_then_pause(int(args.get("n", 1)))
    return False


def _stop(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.request_stop("stop command")
    return False


def _reset(trainer: Steerable, args: dict[str, Any]) -> bool:
    surgery.reset_state(trainer.optimizer, resolve_groups(trainer, args.get("group")))
    return True


def _freeze(trainer: Steerable, args: dict[str, Any], freeze: bool) -> bool:
    surgery.set_frozen(trainer.optimizer, resolve_groups(trainer, args.get("group")), freeze)
    trainer.params_changed()
    return True


def _swap(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.swap_optimizer(surgery.build_swapped(trainer, args["name"], args.get("values", {})))
    return True


def check_edit(trainer: Steerable, kind: str, args: dict[str, Any]) -> None:
    """Raise Rejection when ``set``, ``scale-lr`` or ``swap-optimizer`` would be refused
    now; changes nothing (a race's candidates are checked so)."""
    try:
        if kind == "set":
            _checked_set(trainer, args)
        elif kind == "scale-lr":
            _checked_scale(trainer, args)
        else:  # built and thrown away: the live optimizer is not touched
            surgery.build_swapped(trainer, args["name"], args.get("values", {}))
    except (FieldError, CommandError, surgery.SurgeryError, ValueError) as exc:
        raise Rejection(str(exc)) from None


def edit(trainer: Steerable, kind: str, args: dict[str, Any]) -> tuple[bool, str | None]:
    """Apply ``set``, ``scale-lr`` or ``swap-optimizer`` through the command's own path:
    whether groups changed, and the answer's note."""
    done = apply(trainer, Command(f"edit-{kind}", kind, args, "{}"))
    assert isinstance(done, Applied)  # edits are answered at once
    return done.changed, done.note


def _lookahead(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.lookahead = (
        Lookahead(trainer.optimizer, args["k"], args["alpha"]) if args["enabled"] else None
    )
    trainer.publish_controls()
    return False


def _clip(trainer: Steerable, args: dict[str, Any]) -> bool:
    trainer.flush()  # so a batch of records has a grad norm for every step or for none
    trainer.clip = args["max_norm"]
    trainer.publish_controls()
    return False


def _scheduler(trainer: Steerable, args: dict[str, Any]) -> bool:
    if trainer.lr.scheduler is None and not trainer.lr.script:
        raise Rejection("this run has no scheduler (and the script does not write the lr)")
    if args["action"] == "detach":
        trainer.cancel_ramp(None, "lr")
        trainer.lr.detach()
    else:
        trainer.lr.attach()
    trainer.publish_controls()
    return True


def _check_sharded(trainer: Steerable, cmd: Command) -> None:
    """Refuse what copies the whole state (or turns it on) when the model is sharded."""
    if trainer.sharded is None:
        return
    a = cmd.args
    own = trainer.framework_checkpoints  # Lightning's or HF's own save handles FSDP
    needs = (
        cmd.kind == "lr-find"
        or (cmd.kind in ("save", "restore") and not own)
        or (
            cmd.kind == "checkpoint-policy" and not own and bool(a.get("every") or a.get("minutes"))
        )
        or (cmd.kind == "divergence" and a.get("action") == "rollback")
    )
    if needs:
        raise Rejection(
            f"the model is sharded across ranks ({trainer.sharded}): optitui's "
            f"{dist.SHARDED_REASON}"
        )


def _save(trainer: Steerable, cmd: Command) -> Later:
    """Answered by the checkpoint writer: applied once the file is listed, with its id."""
    answer = answers.later(trainer.recorder, cmd, trainer.step)
    try:
        trainer.save_checkpoint("manual", cmd.args.get("tag"), answer=answer, every_rank=True)
    except (RuntimeError, OSError) as exc:  # the state could not be copied to the host
        raise Rejection(f"cannot capture the state: {exc}") from None
    return LATER


def _restore(trainer: Steerable, args: dict[str, Any]) -> Applied:
    folder = trainer.paths.checkpoints
    if trainer.saver is not None:
        trainer.saver.wait()  # a save answered before this command is listed by now
    m = checkpoint.find(folder, args["id"])
    try:
        snap = checkpoint.load(folder / m.file, m)
        checkpoint.check_compatible(trainer, snap)
    except checkpoint.CheckpointError:
        raise
    except Exception as exc:  # a file may hold anything: one refusal, nothing touched yet
        raise checkpoint.CheckpointError(
            f"{m.id} cannot be used: {type(exc).__name__}: {exc}"
        ) from None
    old = trainer.step
    trainer.rewind(snap, m.id)  # publishes the new step and values itself
    return Applied(False, f"rewound from step {old} to step {trainer.step} ({m.id})")


def _policy(trainer: Steerable, args: dict[str, Any]) -> bool:
    p = trainer.policy
    every = args.get("every", p.every)
    minutes = args.get("minutes", p.minutes)
    trainer.set_policy(
        type(p)(
            every=every or None,
            minutes=minutes or None,
            keep_last=args.get("keep_last", p.keep_last),
            keep_best=args.get("keep_best", p.keep_best),
        )
    )
    return False


def _lr_find(trainer: Steerable, args: dict[str, Any], cmd_id: str) -> bool:
    if trainer.pending_test is not None:
        raise Rejection("a range test is already waiting to run")
    trainer.pending_test = rangetest.prepare(trainer, cmd_id, args)
    return False


def _lr_find_cancel(trainer: Steerable, args: dict[str, Any]) -> bool:
    if trainer.pending_test is None:
        raise Rejection("no range test is running")
    trainer.pending_test = None  # queued with this one in the same batch: never started
    return False


def resolve_apply(trainer: Steerable, cmd: Command) -> Command:
    """lr-find-apply as the plain edit it amounts to (decided once, on rank 0)."""
    try:
        kind, args = _apply_as_edit(trainer, cmd.args)
    except Rejection:
        return cmd  # every rank rejects it the same way
    return Command(cmd.id, kind, args, cmd.raw)


def _apply_as_edit(trainer: Steerable, args: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    tests = trainer.range_tests
    if not tests:
        raise Rejection("no range test has run yet")
    test = list(tests.values())[-1] if args["id"] == "latest" else tests.get(args["id"])
    if test is None:
        raise Rejection(f"no range test {args['id']!r}; have {', '.join(tests)}")
    if test.status != "done":
        raise Rejection(f"range test {test.id} is {test.status}; it has no suggestions")
    try:
        s = test.suggested(args["rule"])
    except rangetest.RangeTestError as exc:
        raise Rejection(str(exc)) from None
    if s["lr"] is None:
        raise Rejection(f"{s['rule']} gave no lr: {s['note']}")
    if test.single:
        return "set", {"values": {"lr": s["lr"]}, "group": test.ref}
    return "scale-lr", {"factor": s["factor"]}


def _lr_find_apply(trainer: Steerable, args: dict[str, Any]) -> Applied:
    kind, edit = _apply_as_edit(trainer, args)
    return _set(trainer, edit) if kind == "set" else _scale(trainer, edit)


def _divergence(trainer: Steerable, args: dict[str, Any]) -> bool:
    from dataclasses import replace

    policy = replace(trainer.guard.policy, **args)
    policy.validate()
    switched = policy.action == "rollback" != trainer.guard.policy.action
    trainer.guard.policy = policy
    if switched:
        trainer.guard.announce()
    trainer.publish_controls()
    return False


_HANDLERS: dict[str, Callable[[Steerable, dict[str, Any]], bool | Applied]] = {
    "divergence": _divergence,
    "lr-find-cancel": _lr_find_cancel,
    "lr-find-apply": _lr_find_apply,
    "restore": _restore,
    "checkpoint-policy": _policy,
    "set": _set,
    "scale-lr": _scale,
    "pause": _pause,
    "resume": _resume,
    "step": _step,
    "stop": _stop,
    "reset-state": _reset,
    "freeze": lambda t, a: _freeze(t, a, True),
    "unfreeze": lambda t, a: _freeze(t, a, False),
    "swap-optimizer": _swap,
    "lookahead": _lookahead,
    "clip": _clip,
    "scheduler": _scheduler,
}
