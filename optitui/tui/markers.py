"""Which events become markers on the plots, so cause and effect line up.

A marker is any event whose ``data`` carries a ``"marker"`` key, any event of
a kind in :data:`MARKER_KINDS` (checkpoints, restores, range tests and races), and
every applied command that changed the optimization (``set``, ``scale-lr``,
freezing, ...; pausing or stepping is run control, not a change; saves are
routine, and a restore or a range test is drawn from its own event). Applied
commands are the command events that carry ``data`` with the command's
``kind``; rejections carry none.

Markers are small glyphs in a strip along the bottom of each plot, one glyph
and colour per :class:`Category` (named in the plot's legend), so a dozen
edits never cover the curves; **M** lists them with their step and message.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from optitui.store.reader import EventRow

MARKER_KINDS = frozenset({"checkpoint", "restore", "range-test", "lr-find", "race", "marker"})
RUN_CONTROL = frozenset({"pause", "resume", "step", "stop"})
#: commands that are not a change of the optimization, or whose effect has a marker of
#: its own (the checkpoint restored, the range test): their command event draws nothing
NOT_CHANGES = RUN_CONTROL | {
    "save",
    "restore",
    "lr-find",
    "lr-find-cancel",
    "race",
    "race-cancel",
    "checkpoint-policy",
    "divergence",
}


@dataclass(frozen=True)
class Category:
    name: str  # the legend's word
    glyph: str  # one cell wide
    rgb: tuple[int, int, int]  # no loss series' colour, nor the first three groups' lrs

    @property
    def color(self) -> str:
        """The colour as rich writes it (plotext takes ``rgb``)."""
        return "rgb({},{},{})".format(*self.rgb)


CHANGE = Category("change", "▲", (255, 215, 0))
RESTORE = Category("restore", "◀", (95, 135, 255))
SAVED = Category("ckpt", "▪", (135, 135, 175))
LR_FIND = Category("lr-find", "◆", (255, 95, 255))
RACE = Category("race", "◇", (0, 215, 175))
PROBLEM = Category("problem", "✕", (255, 70, 70))
#: in the order the legend names them
CATEGORIES = (CHANGE, RESTORE, SAVED, LR_FIND, RACE, PROBLEM)

#: category per marker name (the event's ``data["marker"]``) or event kind
BY_NAME = {
    "command": CHANGE,
    "save": SAVED,
    "saved": SAVED,
    "checkpoint": SAVED,
    "restore": RESTORE,
    "lr-find": LR_FIND,
    "range-test": LR_FIND,
    "race": RACE,
    "spike": PROBLEM,
    "divergence": PROBLEM,
    "oom": PROBLEM,
}


@dataclass(frozen=True)
class Marker:
    step: int
    kind: str  # the event's kind
    label: str  # the marker's name, or the event's message
    message: str = field(default="", compare=False)  # what happened, for the list of markers

    @property
    def category(self) -> Category:
        return BY_NAME.get(self.label, BY_NAME.get(self.kind, CHANGE))

    @property
    def color(self) -> str:
        return self.category.color


def marker_for(event: EventRow) -> Marker | None:
    """The marker an event puts on the plots, or None."""
    data = event.data or {}
    text = event.message.splitlines()[0] if event.message else ""
    if "marker" in data:
        return Marker(event.step, event.kind, str(data["marker"]) or event.message, text)
    if event.kind in MARKER_KINDS:
        return Marker(event.step, event.kind, event.message, text)
    kind = data.get("kind")
    if event.kind == "command" and isinstance(kind, str) and kind not in NOT_CHANGES:
        return Marker(event.step, "command", event.message, text)
    return None


#: which marker a plot column shows when several fall in it (first wins, then the newest)
PRECEDENCE = (PROBLEM, RESTORE, LR_FIND, RACE, CHANGE, SAVED)


def in_view(markers: list[Marker], lo: float, hi: float, buckets: int) -> list[Marker]:
    """Markers with lo <= step <= hi, at most one per plot column: a problem before a
    restore, a range test or a change, and those before a routine save; then the newest."""
    if hi < lo:
        return []
    width = max((hi - lo) / max(buckets, 1), 1e-9)
    seen: dict[int, Marker] = {}
    for m in markers:
        if lo <= m.step <= hi:
            col = int((m.step - lo) / width)
            old = seen.get(col)
            rank = PRECEDENCE.index(m.category)
            if old is None or rank <= PRECEDENCE.index(old.category):
                seen[col] = m
    return list(seen.values())
