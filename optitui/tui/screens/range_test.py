"""The LR range test, live: the curve as it grows, then the suggestions to pick from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from optitui.store.access import RunAccess
from optitui.store.reader import LIVE_STATES, RangeTest
from optitui.tui import fmt
from optitui.tui.screens.following import Following
from optitui.tui.widgets.range_plot import COLORS, MARKS, RangePlot


@dataclass(frozen=True)
class RangeTestChoice:
    """What the user decided: apply ``rule`` (its ``lr``), or cancel the test (rule None)."""

    rule: str | None
    lr: float | None = None


def suggestion_text(n: int, s: dict[str, Any]) -> Text:
    """One line of the list: key, rule, lr, factor on the current lr, and how far to trust it."""
    rule, lr, factor, note = str(s.get("rule")), s.get("lr"), s.get("factor"), s.get("note")
    t = Text(no_wrap=True, overflow="ellipsis")
    t.append(f"{n} ", "bold")
    t.append(f"{MARKS.get(rule, '?')} {rule:<8}", COLORS.get(rule, ""))
    t.append(f" lr {lr:<9.3g}" if isinstance(lr, int | float) else " lr -        ")
    t.append(f" ×{factor:<8.3g}" if isinstance(factor, int | float) else " ×-       ")
    if lr is None:
        t.append(f" no answer: {note or 'the curve gives none'}", "dim")
    elif note:
        t.append(f" ⚠ untrusted: {note}", "bold yellow")
    else:
        t.append(" ok", "green")
    return t


class RangeTestScreen(Following[RangeTest, RangeTestChoice | None]):
    """Dismisses with a :class:`RangeTestChoice`, or None when closed without one."""

    DEFAULT_CSS = """
    RangeTestScreen OptionList {
        max-height: 8;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "apply(0)", "apply a suggestion", key_display="1-4"),
        Binding("2", "apply(1)", "valley", show=False),
        Binding("3", "apply(2)", "minimum", show=False),
        Binding("4", "apply(3)", "slide", show=False),
        Binding("escape", "leave", "cancel test / close"),
    ]

    def __init__(self, run: RunAccess, test_id: str) -> None:
        super().__init__(run, test_id)
        self.test_id = test_id

    @property
    def test(self) -> RangeTest | None:
        return self.found

    def read(self, found_id: str) -> RangeTest | None:
        return self.run.range_test(found_id)

    def plot(self) -> RangePlot:
        return RangePlot(id="curve")

    def show(self) -> None:
        test = self.test
        head = Text(no_wrap=False)
        head.append("LR range test ", "bold")
        head.append(fmt.short_id(self.test_id), "dim")
        head.append(" ")
        if test is None:
            head.append("  waiting for the job to start it…")
        else:
            cfg = test.config
            groups = cfg.get("groups") or []
            scope = "all groups, ratios kept" if not cfg.get("single_group") else f"group {groups}"
            head.append(f"  {test.status}", "bold magenta" if test.status == "running" else "bold")
            head.append(f"  {len(test.lrs)}/{cfg.get('num_iter', '?')} iterations")
            head.append(f"  at step {test.step:,}  {scope}  {cfg.get('mode', 'exp')}")
        self.query_one("#head", Static).update(head)
        self.query_one(RangePlot).show(test)
        self._show_suggestions(test)
        self.query_one("#message", Static).update(self._message())

    def _show_suggestions(self, test: RangeTest | None) -> None:
        options = self.query_one(OptionList)
        suggestions = test.suggestions if test is not None else []
        options.display = bool(suggestions)
        if options.option_count == len(suggestions):
            return  # suggestions are written once, when the test is done
        options.clear_options()
        for n, s in enumerate(suggestions, 1):
            options.add_option(
                Option(suggestion_text(n, s), id=str(s.get("rule")), disabled=s.get("lr") is None)
            )
        if suggestions:
            first = next((i for i, s in enumerate(suggestions) if s.get("lr") is not None), None)
            options.highlighted = first
            options.focus()

    def _message(self) -> Text:
        if self.outcome is not None and not self.outcome.applied:
            return Text(f"the job refused the test: {self.outcome.reason}", "bold red")
        test = self.test
        if test is not None and test.status != "running":
            t = Text()
            if test.message:
                t.append(
                    f"{test.status}: {test.message}\n",
                    "bold red" if test.status == "failed" else "",
                )
            if test.status == "done" and test.suggestions:
                t.append("1-4 (or ↑↓ Enter) applies a suggestion; ")
                t.append("Esc closes without a change", "dim")
            return t
        if self.run_state not in LIVE_STATES:
            return Text(f"the run is {self.run_state}", "bold red")
        return Text("Esc cancels the test; the run goes back to exactly where it was", "dim")

    # -- choices ------------------------------------------------------------------------
    def action_apply(self, index: int) -> None:
        test = self.test
        if test is None or test.status != "done" or not test.suggestions:
            self.notify("suggestions come when the test is done; Esc cancels it", timeout=3)
            return
        if not 0 <= index < len(test.suggestions):
            return
        s = test.suggestions[index]
        lr = s.get("lr")
        if not isinstance(lr, int | float):
            self.notify(f"{s.get('rule')} has no suggestion: {s.get('note')}", timeout=4)
            return
        self.dismiss(RangeTestChoice(str(s.get("rule")), float(lr)))

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.action_apply(event.option_index)

    def action_leave(self) -> None:
        self.dismiss(RangeTestChoice(None) if self.running else None)
