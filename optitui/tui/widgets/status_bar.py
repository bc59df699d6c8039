"""The status bar: run state, progress, speed, device (its utilisation and memory now),
and how fresh the data is.

Always one line: when the terminal is too narrow for every field, fields are
dropped by priority (state, step, steps/s and ETA stay longest), never wrapped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.text import Text
from textual import events
from textual.widgets import Static

from optitui.store.reader import Status
from optitui.store.system import META_KEY
from optitui.tui import fmt, machine
from optitui.tui.speed import Speed

STATE_STYLES = {
    "starting": "bold",
    "running": "bold green",
    "paused": "bold yellow",
    "lr-find": "bold magenta",
    "race": "bold magenta",
    "stopped": "bold blue",
    "finished": "bold blue",
    "failed": "bold red",
    "crashed": "bold red",
}
#: a running job silent this long is shown as stalled
STALL_AFTER_S = 10.0
GAP = "  "


@dataclass(frozen=True)
class Field:
    """One field of the bar: lower ``rank`` is kept longer when space runs out."""

    rank: int
    text: Text


def _field(rank: int, text: str, style: str = "") -> Field:
    return Field(rank, Text(text, style))


class StatusBar(Static):
    """One line at the top; ages are computed from the app's injected clock."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        padding: 0 1;
    }
    """

    def __init__(self, run_name: str, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.run_name = run_name
        self.status: Status | None = None
        self.meta: dict[str, Any] = {}
        self.speed = Speed()
        self.note = ""  # e.g. "job pid 1234" or "inline"
        self._now = 0.0
        self._shown: Text | None = None

    def show(self, status: Status, meta: dict[str, Any], now: float, speed: Speed) -> None:
        self.status, self.meta, self.speed = status, meta, speed
        self.tick(now)

    def tick(self, now: float) -> None:
        self._now = now
        self._show(self.render_text(now))

    def on_resize(self, event: events.Resize) -> None:
        self._show(self.render_text(self._now))

    def _show(self, text: Text) -> None:
        """Repaint the bar alone when its text changed: one line whose size never depends
        on its text, so the screen's layout (every widget rendered again) is left as it is."""
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)

    def fields(self, now: float) -> list[Field]:
        """Every field, in the order shown."""
        out = [_field(5, self.run_name, "bold")]
        if self.note:
            out.append(_field(10, f"({self.note})", "dim"))
        st = self.status
        if st is None:
            out.append(_field(0, "reading run store…", "dim"))
            return out
        style = STATE_STYLES.get(st.state, "bold")
        out.append(_field(0, f"● {st.state}", style))
        out.append(_field(1, f"step {st.step:,}"))
        out.append(_field(8, f"epoch {st.epoch}"))
        rate, samples = self.rates(st)
        out.append(_field(2, rate))
        if samples:
            out.append(_field(9, samples))
        max_steps = self.meta.get("max_steps")
        if isinstance(max_steps, int) and max_steps > 0:
            out.append(_field(4, f"{min(st.step, max_steps) * 100 // max_steps}% of {max_steps:,}"))
            steady = self.speed.steady or self.speed.recent or st.steps_per_s
            if st.state == "running" and steady and steady > 0 and st.step < max_steps:
                out.append(_field(3, f"ETA {fmt.duration((max_steps - st.step) / steady)}"))
        device = str(self.meta.get("device", "?"))
        if st.device_mem is not None:  # torch's allocator counters, this job only
            device += f" allocated {fmt.nbytes(st.device_mem)}"
            held = (self.meta.get("memory") or {}).get("reserved")
            if isinstance(held, int):
                device += f", reserved {fmt.nbytes(held)}"
        out.append(_field(7, device))
        if st.alive:  # the machine now: the job's GPU, or its process on a CPU run
            now_text = machine.describe(
                str(self.meta.get("device", "")), machine.sample(self.meta.get(META_KEY))
            )
            if now_text.plain:
                out.append(Field(6, now_text))
        seen = st.last_record if st.last_record is not None else st.heartbeat
        if seen:
            age = max(0.0, now - seen)
            stalled = st.state == "running" and age > STALL_AFTER_S
            out.append(
                _field(
                    1 if stalled else 6,
                    f"last record {fmt.duration(age)} ago",
                    "bold red" if stalled else "dim",
                )
            )
        # a failure's message is the banner's; a finished or stopped run's is said here
        if st.message and st.state not in ("running", "paused", "failed", "crashed"):
            out.append(_field(4, st.message, "italic"))
        return out

    def rates(self, st: Status) -> tuple[str, str]:
        """(steps/s, samples/s) as shown: recent while running, "–" while paused, the run's
        average once it is over."""
        if st.state == "running":
            steps = self.speed.recent or st.steps_per_s
            per_step = None
            if st.samples_per_s and st.steps_per_s:  # the job's ratio holds whatever its clock
                per_step = st.samples_per_s / st.steps_per_s
            samples = steps * per_step if steps and per_step else st.samples_per_s
            return f"{fmt.rate(steps)} steps/s", f"{fmt.rate(samples)} samples/s"
        if st.alive:  # paused, starting, in a range test: not training at a rate
            return "– steps/s", ""
        if self.speed.average:
            return f"avg {fmt.rate(self.speed.average)} steps/s", ""
        return "", ""

    def render_text(self, now: float) -> Text:
        """The fields that fit the bar's width (all of them before the first layout)."""
        fields = [f for f in self.fields(now) if f.text.plain]
        width = self.content_region.width or self.size.width
        if width > 0:
            while len(fields) > 1 and _width(fields) > width:
                fields.remove(max(fields, key=lambda f: f.rank))
        t = Text(no_wrap=True, overflow="ellipsis", end="")
        for i, f in enumerate(fields):
            if i:
                t.append(GAP)
            t.append_text(f.text)
        return t


def _width(fields: list[Field]) -> int:
    return sum(f.text.cell_len for f in fields) + len(GAP) * (len(fields) - 1)
