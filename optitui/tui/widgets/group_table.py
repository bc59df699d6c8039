"""The param-group table: per group its lr, every editable field, size and state
(frozen, fields being ramped, the live lr multiplier)."""

from __future__ import annotations

import math
from typing import Any

from rich.text import Text
from textual.widgets import DataTable

from optitui.tui import fmt
from optitui.tui.fmt import group_name

PENDING_MARK = "⋯"
RAMP_MARK = "↗"  # after a value that is being ramped to its target
#: the column of each group's newest update ratio ||dw||/||w||, as log10
RATIO = "log Δw/w"
#: the rule of thumb: an update about a thousandth of the weights (log10 -3)
RATIO_TARGET = -3.0


def ratio_cell(ratio: float | None) -> str:
    """log10 of an update ratio, one decimal ("-3.1"); "-inf" for no update, "" when the
    group was not measured."""
    if ratio is None or math.isnan(ratio):
        return ""
    if ratio <= 0:
        return "-inf"  # no update (a frozen group)
    if math.isinf(ratio):
        return "inf"
    return f"{math.log10(ratio):.1f}"


def ratio_style(cell: str) -> str:
    """Green within a factor of ten of 1e-3, yellow below (the group barely moves),
    red above (its weights are rewritten fast)."""
    if not cell:
        return ""
    v = float(cell)
    if abs(v - RATIO_TARGET) <= 1.0:
        return "green"
    return "yellow" if v < RATIO_TARGET else "bold red"


def editable_fields(groups: list[dict[str, Any]]) -> list[str]:
    """Editable field names over all groups, in the optimizer's order, lr first."""
    names: list[str] = ["lr"]
    for g in groups:
        for name, spec in (g.get("fields") or {}).items():
            if spec.get("kind") != "readonly" and name not in names:
                names.append(name)
    return names


#: the group column's header while the keys act on every group
ALL_GROUPS = "ALL groups"


def fit_columns(columns: dict[str, list[str]], keep: list[str], width: int) -> list[str]:
    """The columns to show in ``width`` cells, in their order: those in ``keep`` first (in
    that order), then the rest from the left, while they fit. A column is as wide as its
    widest cell or label, plus a cell of padding either side."""

    def cells(name: str) -> int:
        return max([len(name), *map(len, columns[name])]) + 2

    picked: set[str] = set()
    used = 0
    for name in [*keep, *columns]:
        if name in picked or name not in columns:
            continue
        if used + cells(name) > width:
            if name in keep:
                continue
            break
        picked.add(name)
        used += cells(name)
    return [n for n in columns if n in picked]


class GroupTable(DataTable[str | Text]):
    """One row per param group; the cursor row is the group the keys act on.

    Columns that do not fit the width are left out by priority (the group, its lr,
    its state and multiplier first), and the last column says how many are hidden:
    **e** shows every field of the selected group. While the keys act on all groups
    the header says so and every row is highlighted.
    """

    DEFAULT_CSS = """
    GroupTable {
        height: auto;
        max-height: 8;
    }
    GroupTable.-all > .datatable--even-row, GroupTable.-all > .datatable--odd-row,
    GroupTable.-all > .datatable--cursor {
        background: $accent 45%;
        text-style: bold;
    }
    GroupTable.-all > .datatable--header {
        color: $text-accent;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id, cursor_type="row", zebra_stripes=True, show_cursor=True)
        self.can_focus = False
        self.groups: list[dict[str, Any]] = []
        self.hidden: list[str] = []  # columns left out for want of width
        self.all_groups = False
        self._columns: list[str] = []
        self._shown_cells: list[list[str | Text]] = []  # the text of every cell shown, row by row
        self._keys: list[str] = []  # the key of each column shown
        self._pending: set[int | None] = set()

    def on_resize(self) -> None:
        if self.groups:
            self.set_groups(self.groups, self._pending)

    def show_all_groups(self, on: bool) -> None:
        """Mark the table as acting on every group (header and every row) or on one."""
        self.all_groups = on
        self.set_class(on, "-all")
        if self.groups:
            self.set_groups(self.groups, self._pending)
        self.refresh()

    @property
    def selected(self) -> int:
        return min(max(self.cursor_row, 0), max(len(self.groups) - 1, 0))

    def selected_group(self) -> dict[str, Any] | None:
        return self.groups[self.selected] if self.groups else None

    def label(self, index: int) -> str:
        if 0 <= index < len(self.groups):
            return group_name(self.groups[index], index)
        return f"group {index}"

    def move(self, delta: int) -> None:
        if self.groups:
            row = (self.selected + delta) % len(self.groups)
            self.move_cursor(row=row, animate=False)

    def set_groups(self, groups: list[dict[str, Any]], pending: set[int | None]) -> None:
        """Show a new group snapshot (and which groups have changes in flight)."""
        keep = self.selected
        self.groups, self._pending = groups, set(pending)
        fields = editable_fields(groups)
        ratios = [RATIO] if any("update_ratio" in g for g in groups) else []
        names = ["", "group", "lr", *ratios, *fields[1:], "params", "state", "lr×"]
        rows = [self._cells(i, g, fields, pending) for i, g in enumerate(groups)]
        if ratios:  # after the lr (fields start with it)
            rows = [
                [*r[:3], ratio_cell(g.get("update_ratio")), *r[3:]]
                for r, g in zip(rows, groups, strict=True)
            ]
        columns = {n: [r[k] for r in rows] for k, n in enumerate(names)}
        shown = names
        width = self.scrollable_content_region.width
        if width > 0 and fit_columns(columns, names, width) != names:  # not all fit
            used = [n for n in ("state", "lr×") if any(columns[n])]
            keep_first = ["", "group", "lr", *ratios, *used, "params"]
            shown = fit_columns(columns, keep_first, width - len("+9 more: e") - 2)
        # an empty state or multiplier column hides nothing worth counting
        self.hidden = [
            n for n in names if n not in shown and (any(columns[n]) or n not in ("state", "lr×"))
        ]
        more = [f"+{len(self.hidden)} more: e"] if self.hidden else []
        labels = [ALL_GROUPS if n == "group" and self.all_groups else n for n in shown] + more
        index = [names.index(n) for n in shown]
        at = index.index(names.index(RATIO)) if RATIO in shown else -1
        cells: list[list[str | Text]] = []
        for row in rows:
            # a group's name is the user's: plain Text, never console markup (the other
            # cells are the tool's own formatting and stay strings)
            line: list[str | Text] = [Text(row[k]) if k == 1 else row[k] for k in index]
            if at >= 0:  # coloured against the rule of thumb
                line[at] = Text(row[index[at]], style=ratio_style(row[index[at]]))
            cells.append(line + [""] * len(more))
        if labels == self._columns and len(cells) == len(self._shown_cells):
            self._update_cells([*shown, *more], cells)  # a live lr moved: those cells only
            return
        if labels != self._columns:
            self.clear(columns=True)
            for label, key in zip(labels, [*shown, *more], strict=True):
                self.add_column(label, key=key)
            self._columns = labels
        else:
            self.clear()
        for i, row_cells in enumerate(cells):
            self.add_row(*row_cells, key=str(i))
        self._shown_cells, self._keys = cells, [*shown, *more]
        if groups:
            self.move_cursor(row=min(keep, len(groups) - 1), animate=False)

    def _update_cells(self, keys: list[str], cells: list[list[str | Text]]) -> None:
        """Change the cells whose text changed, in place: the table keeps its rows, its
        cursor and its layout unless a column must widen."""
        for i, (old, new) in enumerate(zip(self._shown_cells, cells, strict=True)):
            for key, was, now in zip(keys, old, new, strict=True):
                if was != now:
                    self.update_cell(str(i), key, now, update_width=True)
        self._shown_cells = cells

    @staticmethod
    def _cells(i: int, g: dict[str, Any], fields: list[str], pending: set[int | None]) -> list[str]:
        values = g.get("values") or {}
        mark = PENDING_MARK if (i in pending or None in pending) else ""
        ramping = [str(f) for f in g.get("ramping") or []]
        cells = [mark, group_name(g, i)]
        cells += [
            (fmt.value(values.get(f)) + (RAMP_MARK if f in ramping else "")) if f in values else ""
            for f in fields
        ]
        mult = g.get("lr_multiplier", 1.0)
        state = ["frozen"] if g.get("frozen") else []
        state += ["lr by script"] if g.get("lr_by_script") else []
        state += ["ramping " + ",".join(ramping)] if ramping else []
        return [
            *cells,
            fmt.count(float(g.get("params", 0))),
            ", ".join(state),
            "" if mult in (None, 1.0) else fmt.value(mult),
        ]

    def mark_pending(self, pending: set[int | None]) -> None:
        self._pending = set(pending)
        for i in range(len(self.groups)):
            mark = PENDING_MARK if (i in pending or None in pending) else ""
            self.update_cell(str(i), "", mark)
            if i < len(self._shown_cells) and "" in self._keys:
                self._shown_cells[i][self._keys.index("")] = mark
