"""The status bar: run state, progress, speed, device, and how fresh the data is."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from optitui.store.reader import Status
from optitui.tui import fmt

STATE_STYLES = {
    "starting": "bold",
    "running": "bold green",
    "paused": "bold yellow",
    "lr-find": "bold magenta",
    "stopped": "bold blue",
    "finished": "bold blue",
    "failed": "bold red",
    "crashed": "bold red",
}
#: a running job silent this long is shown as stalled
STALL_AFTER_S = 10.0


class StatusBar(Static):
    """Two short lines at the top; ages are computed from the app's injected clock."""

    DEFAULT_CSS = """
    StatusBar {
        height: auto;
        background: $panel;
        padding: 0 1;
    }
    """

    def __init__(self, run_name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_name = run_name
        self.status: Status | None = None
        self.meta: dict[str, Any] = {}
        self.note = ""  # e.g. "job pid 1234" or "inline"

    def show(self, status: Status, meta: dict[str, Any], now: float) -> None:
        self.status, self.meta = status, meta
        self.tick(now)

    def tick(self, now: float) -> None:
        self.update(self.render_text(now))

    def render_text(self, now: float) -> Text:
        t = Text(no_wrap=False, overflow="fold")
        t.append(self.run_name, "bold")
        if self.note:
            t.append(f"  ({self.note})", "dim")
        st = self.status
        if st is None:
            t.append("  reading run store…", "dim")
            return t
        t.append("  ● ", STATE_STYLES.get(st.state, "bold"))
        t.append(st.state, STATE_STYLES.get(st.state, "bold"))
        t.append(f"  step {st.step:,}  epoch {st.epoch}")
        t.append(f"  {fmt.rate(st.steps_per_s)} steps/s  {fmt.rate(st.samples_per_s)} samples/s")
        max_steps = self.meta.get("max_steps")
        if isinstance(max_steps, int) and max_steps > 0:
            t.append(f"  {min(st.step, max_steps) * 100 // max_steps}% of {max_steps:,}")
            if st.state == "running" and st.steps_per_s and st.steps_per_s > 0:
                t.append(f"  ETA {fmt.duration((max_steps - st.step) / st.steps_per_s)}")
        t.append(f"  {self.meta.get('device', '?')}")
        if st.device_mem is not None:
            t.append(f" {fmt.nbytes(st.device_mem)}")
        seen = st.last_record if st.last_record is not None else st.heartbeat
        if seen:
            age = max(0.0, now - seen)
            stalled = st.state == "running" and age > STALL_AFTER_S
            t.append(f"  last record {fmt.duration(age)} ago", "bold red" if stalled else "dim")
        if st.message and st.state not in ("running", "paused"):
            t.append(f"  {st.message}", "italic")
        return t
