"""Which events become markers on the plots, so cause and effect line up.

A marker is any event whose ``data`` carries a ``"marker"`` key, any event of
a kind in :data:`MARKER_KINDS` (checkpoints, restores and range tests, as
those features arrive), and every applied command that changed the
optimization (``set``, ``scale-lr``, freezing, ...; pausing or stepping is
run control, not a change; saves are routine, and a restore or a range test is
drawn from its own event). Applied commands are the command events that
carry ``data`` with the command's ``kind``; rejections carry none. Changes
are drawn as full-height lines; routine events (periodic checkpoint saves,
loss spikes) as small ticks along the top.
"""

from __future__ import annotations

from dataclasses import dataclass

from optitui.store.reader import EventRow

MARKER_KINDS = frozenset({"checkpoint", "restore", "range-test", "lr-find", "marker"})
RUN_CONTROL = frozenset({"pause", "resume", "step", "stop"})
#: commands that are not a change of the optimization, or whose effect has a marker of
#: its own (the checkpoint restored, the range test): their command event draws nothing
NOT_CHANGES = RUN_CONTROL | {
    "save",
    "restore",
    "lr-find",
    "lr-find-cancel",
    "checkpoint-policy",
    "divergence",
}

#: plot colour per marker name (the event's ``data["marker"]``) or event kind
COLORS = {
    "command": "orange",
    "save": "green",
    "restore": "green",
    "checkpoint": "green",
    "lr-find": "magenta",
    "spike": "red",
    "divergence": "red",
    "oom": "red",
}
DEFAULT_COLOR = "magenta"
#: routine or frequent events: a tick along the top instead of a line
TICKS = frozenset({"save", "saved", "spike"})


@dataclass(frozen=True)
class Marker:
    step: int
    kind: str  # the event's kind
    label: str  # the marker's name, or the event's message

    @property
    def color(self) -> str:
        return COLORS.get(self.label, COLORS.get(self.kind, DEFAULT_COLOR))

    @property
    def tick(self) -> bool:
        """Routine events (periodic checkpoint saves, loss spikes) get a small tick at the
        top of the plot instead of a full-height line, so they cannot bury the changes."""
        return self.label in TICKS


def marker_for(event: EventRow) -> Marker | None:
    """The marker an event puts on the plots, or None."""
    data = event.data or {}
    if "marker" in data:
        return Marker(event.step, event.kind, str(data["marker"]) or event.message)
    if event.kind in MARKER_KINDS:
        return Marker(event.step, event.kind, event.message)
    kind = data.get("kind")
    if event.kind == "command" and isinstance(kind, str) and kind not in NOT_CHANGES:
        return Marker(event.step, "command", event.message)
    return None


def in_view(markers: list[Marker], lo: float, hi: float, buckets: int) -> list[Marker]:
    """Markers with lo <= step <= hi, at most one per plot column (the newest wins)."""
    if hi < lo:
        return []
    width = max((hi - lo) / max(buckets, 1), 1e-9)
    seen: dict[int, Marker] = {}
    for m in markers:
        if lo <= m.step <= hi:
            seen[int((m.step - lo) / width)] = m
    return list(seen.values())
