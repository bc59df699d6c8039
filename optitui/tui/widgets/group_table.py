"""The param-group table: per group its lr, every editable field, size and state
(frozen, fields being ramped, the live lr multiplier)."""

from __future__ import annotations

from typing import Any

from textual.widgets import DataTable

from optitui.tui import fmt

PENDING_MARK = "⋯"
RAMP_MARK = "↗"  # after a value that is being ramped to its target


def editable_fields(groups: list[dict[str, Any]]) -> list[str]:
    """Editable field names over all groups, in the optimizer's order, lr first."""
    names: list[str] = ["lr"]
    for g in groups:
        for name, spec in (g.get("fields") or {}).items():
            if spec.get("kind") != "readonly" and name not in names:
                names.append(name)
    return names


def group_name(group: dict[str, Any], index: int) -> str:
    name = group.get("name")
    return str(name) if name not in (None, "") else str(index)


class GroupTable(DataTable[str]):
    """One row per param group; the cursor row is the group the keys act on."""

    DEFAULT_CSS = """
    GroupTable {
        height: auto;
        max-height: 8;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=True)
        self.can_focus = False
        self.groups: list[dict[str, Any]] = []
        self._columns: list[str] = []

    @property
    def selected(self) -> int:
        return min(max(self.cursor_row, 0), max(len(self.groups) - 1, 0))

    def selected_group(self) -> dict[str, Any] | None:
        return self.groups[self.selected] if self.groups else None

    def label(self, index: int) -> str:
        if 0 <= index < len(self.groups):
            return group_name(self.groups[index], index)
        return str(index)

    def move(self, delta: int) -> None:
        if self.groups:
            row = (self.selected + delta) % len(self.groups)
            self.move_cursor(row=row, animate=False)

    def set_groups(self, groups: list[dict[str, Any]], pending: set[int | None]) -> None:
        """Show a new group snapshot (and which groups have changes in flight)."""
        keep = self.selected
        self.groups = groups
        fields = editable_fields(groups)
        columns = ["", "group", *fields, "params", "state", "lr×"]
        if columns != self._columns:
            self.clear(columns=True)
            for c in columns:
                self.add_column(c, key=c)
            self._columns = columns
        else:
            self.clear()
        for i, g in enumerate(groups):
            values = g.get("values") or {}
            mark = PENDING_MARK if (i in pending or None in pending) else ""
            ramping = [str(f) for f in g.get("ramping") or []]
            cells = [mark, group_name(g, i)]
            cells += [
                (fmt.value(values.get(f)) + (RAMP_MARK if f in ramping else ""))
                if f in values
                else ""
                for f in fields
            ]
            mult = g.get("lr_multiplier", 1.0)
            state = ["frozen"] if g.get("frozen") else []
            state += ["ramping " + ",".join(ramping)] if ramping else []
            cells += [
                fmt.count(float(g.get("params", 0))),
                ", ".join(state),
                "" if mult in (None, 1.0) else fmt.value(mult),
            ]
            self.add_row(*cells, key=str(i))
        if groups:
            self.move_cursor(row=min(keep, len(groups) - 1), animate=False)

    def mark_pending(self, pending: set[int | None]) -> None:
        for i in range(len(self.groups)):
            mark = PENDING_MARK if (i in pending or None in pending) else ""
            self.update_cell(str(i), "", mark)
