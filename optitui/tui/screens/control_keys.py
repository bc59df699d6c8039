"""The keys that change the optimization: lr, any field (at once or ramped), groups,
optimizer state, scheduler, lookahead, clipping, the optimizer class, divergence policy,
and pausing. Each sends one command, shown as pending until the job answers."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from optitui.tui import fmt
from optitui.tui.fmt import group_words
from optitui.tui.live_groups import schedule_note
from optitui.tui.screens.steering_screen import SteeringScreen
from optitui.tui.widgets.group_table import GroupTable

if TYPE_CHECKING:
    from optitui.tui.screens.field_editor import Edit


class ControlKeys(SteeringScreen):
    """Actions for issue-4 style live control; mixed into the dashboard."""

    def action_move_group(self, delta: int) -> None:
        self.query_one(GroupTable).move(delta)

    def action_scale_lr(self, which: int) -> None:
        s = self.settings
        base = s.fine_factor if abs(which) == 1 else s.coarse_factor
        factor = base if which > 0 else 1.0 / base
        group, where = self.target()
        args: dict[str, Any] = {"factor": factor}
        if group is not None:
            args["group"] = group
        sign = f"×{base:g}" if which > 0 else f"÷{base:g}"
        self.send("scale-lr", args, f"lr {sign} ({where})", group)

    def action_toggle_all(self) -> None:
        self.all_groups = not self.all_groups
        self.query_one(GroupTable).show_all_groups(self.all_groups)
        self._changes_shown()
        self.notify(
            "keys act on all groups" if self.all_groups else "keys act on the selected group",
            timeout=2,
        )

    def action_edit(self) -> None:
        picked = self.selected()
        if picked is None or self.run_over():
            return
        index, where = self.target()

        def done(edit: Edit | None) -> None:
            if edit is None:
                return
            args: dict[str, Any] = {"values": {edit.field: edit.value}}
            if index is not None:
                args["group"] = index
            value = edit.value
            shown = ", ".join(map(str, value)) if isinstance(value, tuple) else value
            over = ""
            if edit.ramp is not None:
                args["ramp"] = edit.ramp
                over = f" over {edit.ramp} steps"
            self.send("set", args, f"{edit.field}={shown}{over} ({where})", index)

        from optitui.tui.screens.field_editor import FieldEditor  # loaded when first needed

        note = schedule_note(picked[2], self.controls)
        self.app.push_screen(FieldEditor(picked[2], where, schedule=note), done)

    def action_freeze(self) -> None:
        picked = self.selected()
        if picked is None:
            return
        index, label, group = picked
        kind = "unfreeze" if group.get("frozen") else "freeze"
        self.send(kind, {"group": index}, f"{kind} {group_words(label)}", index)

    def action_reset_state(self) -> None:
        index, where = self.target()
        args: dict[str, Any] = {} if index is None else {"group": index}

        def reset() -> None:
            self.send("reset-state", args, f"reset optimizer state ({where})", index)

        self.confirm(
            f"Reset the optimizer state of {where}? Momentum and running averages start "
            "again from zero ('a' toggles all groups / the selected one).",
            reset,
        )

    def action_scheduler(self) -> None:
        c = self.controls
        if "scheduler" in c and not c["scheduler"]:
            self.notify("this run has no lr scheduler", severity="warning", timeout=3)
            return
        attached = c.get("scheduler_attached", True) is not False
        action = "detach" if attached else "attach"
        what = "lr stays where it is" if attached else "the schedule drives the lr again"
        self.send("scheduler", {"action": action}, f"scheduler {action} ({what})", None)

    def action_lookahead(self) -> None:
        from optitui.tui import forms  # loaded when first needed

        current = self.controls.get("lookahead")
        if isinstance(current, dict):
            self.send("lookahead", {"enabled": False}, "lookahead off", None)
            return

        def on(args: dict[str, Any]) -> None:
            k, alpha = args.get("k", 5), args.get("alpha", 0.5)
            self.send("lookahead", args, f"lookahead on (k={k}, alpha={alpha:g})", None)

        self.ask(forms.lookahead_form(), on)

    def action_clip(self) -> None:
        from optitui.tui import forms  # loaded when first needed

        current = self.controls.get("clip")
        now = float(current) if isinstance(current, int | float) else None

        def done(args: dict[str, Any]) -> None:
            norm = args["max_norm"]
            label = "clipping off" if norm is None else f"clip grad norm at {fmt.value(norm)}"
            self.send("clip", args, label, None)

        self.ask(forms.clip_form(now), done)

    def action_swap_optimizer(self) -> None:
        from optitui.tui import forms  # loaded when first needed

        current = self.controls.get("optimizer", self.meta.get("optimizer"))
        now = current if isinstance(current, str) else None

        def done(args: dict[str, Any]) -> None:
            extra = " ".join(f"{k}={fmt.value(v)}" for k, v in args.get("values", {}).items())
            label = f"swap optimizer to {args['name']}" + (f" ({extra})" if extra else "")

            def swap() -> None:
                self.send("swap-optimizer", args, label, None)

            groups = self.query_one(GroupTable).groups
            self.confirm(forms.swap_summary(now, args, groups), swap)

        self.ask(forms.swap_form(now), done)

    def action_divergence(self) -> None:
        from optitui.tui import forms  # loaded when first needed

        current = self.controls.get("divergence")

        def done(args: dict[str, Any]) -> None:
            shown = " ".join(f"{k}={fmt.value(v)}" for k, v in args.items())
            self.send("divergence", args, f"divergence policy {shown}", None)

        self.ask(forms.divergence_form(current if isinstance(current, dict) else {}), done)

    def action_pause(self) -> None:
        paused = self.paused()
        self.send("resume" if paused else "pause", {}, "resume" if paused else "pause", None)

    def action_resume(self) -> None:
        """space while paused (the footer says "resume" then)."""
        self.action_pause()

    def paused(self) -> bool:
        """Whether the run is paused, as its last status said."""
        return self.status is not None and self.status.state == "paused"

    def action_step_key(self) -> None:
        """n where the footer does not show it: not paused, or no room (see Key)."""
        self.action_step_once()

    def action_step_once(self) -> None:
        if not self.paused():
            self.notify("n steps once while paused; space pauses", timeout=3)
            return
        self.send("step", {"n": 1}, "step 1", None)
