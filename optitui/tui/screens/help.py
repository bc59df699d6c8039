"""The help screen: every key of the dashboard, what attach/detach mean, and what a
probe-driven run (``optitui.watch``, zero-code, framework callbacks) cannot do."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = """\
The job trains in its own process (unless started with --inline); this
dashboard only reads its run store and drops commands in its inbox.
Quit with q: detach leaves the job training, stop ends it. Losing the
terminal detaches too. `optitui attach [RUN_DIR]` opens a dashboard on a
running job again; several may be open at once.

Changes show as pending (⋯) until the job applies them at a step boundary
(✓ with the step) or rejects them (✗ with the reason). Markers along the
bottom of the plots: ▲ a change, ◀ a checkpoint restored, ▪ a checkpoint
saved, ◆ a range test, ✕ a problem (divergence, out of memory, a loss
spike); M lists them with their step. After a restore the old branch is
drawn dimmed. Under 100 columns one plot shows at a time: p switches.

m shows every other metric the run records (your own, val_<name>, the
optimizer's health) as a small chart each, with the markers: / filters by
name, enter opens one at full size (l log-y, w window, [ ] , . 0 zoom and
pan), u pins it under the loss plot (u again removes it).

Other runs can be drawn over the plots (optitui attach RUN OTHER...): each
in its own colour, named in the legend by the part of its name that tells
it apart. b lists every run under the run root: space overlays one (or
stops), enter steers it instead (live runs of this optitui only), / filters.
X places every run by wall time since its first step instead of by step.

The range test (r) sweeps the lr over a few batches, then puts everything
back; pick a suggestion with 1-4 to apply it, Esc cancels. Checkpoints (c)
restore with Enter; the state before a restore is saved first, so a
restore can be undone from the same list."""


class HelpScreen(ModalScreen[None]):
    """Closes on any of escape, q, ? or F1."""

    DEFAULT_CSS = """
    HelpScreen {
        align: center middle;
    }
    HelpScreen > VerticalScroll {
        width: 80;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def __init__(
        self,
        keys: list[tuple[str, str]],
        probe_mode: str = "",
        limits: list[str] | None = None,
        hint: str = "",
    ) -> None:
        super().__init__()
        self.keys = keys
        self.probe_mode = probe_mode
        self.limits = list(limits or [])
        self.hint = hint

    def text(self) -> str:
        width = max((len(k) for k, _ in self.keys), default=4) + 2
        lines = [f"{k:<{width}}{what}" for k, what in self.keys]
        out = "Keys\n\n" + "\n".join(lines) + "\n\n" + ABOUT
        if self.limits:
            out += f"\n\nThis run is in {self.probe_mode} mode. What needs the probe:\n"
            out += "\n".join(f"- {limit}" for limit in self.limits)
            if self.hint:
                out += f"\n{self.hint}"
        return out

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(self.text(), markup=False)

    def action_close(self) -> None:
        self.dismiss(None)
