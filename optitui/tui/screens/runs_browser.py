"""The runs browser (b): every run under the run root, newest first, to overlay on the
dashboard's plots (Space) or to steer instead of the current one (Enter)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar, Protocol

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Input, Label

from optitui.tui.messages import RunsListed, SwitchRun
from optitui.tui.overlay import cut, without_tag
from optitui.tui.overlay_feed import other_version, run_key

#: how often the list is read again while open (runs start, train and end meanwhile)
REFRESH_S = 3.0
#: (label, width) of each column: fixed, so the table never reflows as rows come and go;
#: the run's name takes what the others leave (RUN_CELLS). The optitui that wrote a run
#: is last: it is empty for most runs, and the line under the table names it too, so a
#: narrow screen gives its room to the numbers
COLUMNS = (
    ("", 1),
    ("run", 0),
    ("state", 10),
    ("step", 9),
    ("loss", 8),
    ("best val", 8),
    ("steps/s", 9),
    ("age", 4),
    ("trend", 16),
    ("optitui", 7),
)
#: the fewest and the most cells a run's name gets (at 80 columns, the fewest leaves room
#: for every column up to steps/s)
RUN_CELLS = (14, 40)
#: cells around the table: the frame, its padding and the table's scrollbar
AROUND = 6
#: how the table names each column
KEYS = tuple(label or "mark" for label, _ in COLUMNS)


class Comparing(Protocol):
    """What the browser asks of the dashboard: which run it steers, which it overlays."""

    def steered_dir(self) -> Path | None: ...

    def overlay_colors(self) -> dict[str, str]: ...

    def toggle_overlay(self, run_dir: Path) -> str: ...


def list_runs(roots: Sequence[Path], now: float) -> list[dict[str, Any]]:
    """Every run under ``roots`` (each listed once), newest first, as ``optitui ls
    --json`` has them: a bounded read of each, however long it is."""
    from optitui.cli.ls import record
    from optitui.store.layout import find_runs, made_time

    found: dict[str, Any] = {}
    for root in roots:
        for paths in find_runs(root):
            found.setdefault(run_key(paths.root), paths)
    ordered = sorted(found.values(), key=made_time, reverse=True)
    return [record(paths, now) for paths in ordered]


def run_cells(width: int) -> int:
    """How wide the run column is on a screen ``width`` cells wide."""
    others = sum(w + 2 for _, w in COLUMNS)  # each column has a cell either side
    return max(RUN_CELLS[0], min(RUN_CELLS[1], width - AROUND - others))


def cells(run: dict[str, Any], mark: Text, name_cells: int) -> tuple[Any, ...]:
    """One row of the browser: mark, run, state, step, loss, best val, steps/s, age,
    trend, and the optitui that wrote it when it is not this one."""
    from optitui.cli.ls import cells as ls_cells

    name, state, step, loss, rate, age, _, trend = ls_cells(run)
    if run.get("problem"):
        state = str(run["state"])  # the problem itself is on the line under the table
    best = run.get("best_val")
    best_text = "-" if not isinstance(best, float) else f"{best:.4g}"
    version = other_version({"optitui_version": run.get("optitui_version")}) or ""
    return (
        mark,
        cut(without_tag(name), name_cells),
        state,
        step,
        loss,
        best_text,
        rate,
        age,
        trend,
        version,
    )


class RunsBrowser(ModalScreen[None]):
    """Space overlays the highlighted run (or stops); Enter steers it; / filters by name."""

    DEFAULT_CSS = """
    RunsBrowser {
        align: center middle;
    }
    RunsBrowser > Vertical {
        width: 100%;
        height: 100%;
        border: thick $accent;
        background: $surface;
        padding: 0 1;
    }
    RunsBrowser Input {
        margin: 0 0 1 0;
    }
    RunsBrowser DataTable {
        height: 1fr;
    }
    RunsBrowser #detail {
        color: $text-muted;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "close"),
        Binding("space", "toggle_overlay", "overlay"),
        Binding("slash", "filter", "filter"),
    ]

    def __init__(
        self, owner: Comparing, roots: Sequence[Path], clock: Callable[[], float] = time.time
    ) -> None:
        super().__init__()
        self.owner = owner
        self.roots = list(roots)
        self.clock = clock
        self.runs: list[dict[str, Any]] = []  # every run read, newest first
        self.shown: list[dict[str, Any]] = []  # those the filter keeps, as in the table
        self.reads = 0
        self.said = ""  # what the last key did
        self.detail = ""  # the line under the table: counts, the highlighted run, what it is
        self.name_cells = RUN_CELLS[0]
        self._stop = threading.Event()

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label(
                "Runs · space overlay/remove · enter steer (live runs) · / filter · esc close"
            )
            yield Input(placeholder="filter by name (/)", id="filter")
            table: DataTable[Any] = DataTable(cursor_type="row", zebra_stripes=True)
            yield table
            yield Label("reading…", id="detail")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        self.name_cells = run_cells(self.app.size.width)
        for (label, width), key in zip(COLUMNS, KEYS, strict=True):
            table.add_column(label, width=width or self.name_cells, key=key)
        table.focus()
        self._list()

    def on_unmount(self) -> None:
        self._stop.set()

    @work(thread=True, exclusive=True, group="runs", exit_on_error=False)
    def _list(self) -> None:
        while not self._stop.is_set():
            self.post_message(RunsListed(list_runs(self.roots, self.clock())))
            self._stop.wait(REFRESH_S)

    @on(RunsListed)
    def _listed(self, message: RunsListed) -> None:
        self.runs = message.runs
        self.reads += 1
        self._fill()

    # -- the table ---------------------------------------------------------------------
    def _mark(self, run: dict[str, Any]) -> Text:
        key = run_key(run["path"])
        steered = self.owner.steered_dir()
        if steered is not None and key == run_key(steered):
            return Text("●", "bold")
        color = self.owner.overlay_colors().get(key)
        return Text("━", color) if color else Text("")

    def _fill(self) -> None:
        table = self.query_one(DataTable)
        chosen = self.highlighted()
        words = self.query_one("#filter", Input).value.strip().lower().split()
        before = [run_key(r["path"]) for r in self.shown]
        self.shown = [r for r in self.runs if all(w in r["run"].lower() for w in words)]
        keys = [run_key(r["path"]) for r in self.shown]
        if keys == before and table.row_count == len(keys):
            # the same rows: their cells change in place (the cursor and widths stay)
            for key, run in zip(keys, self.shown, strict=True):
                old = table.get_row(key)
                for column, value, was in zip(
                    KEYS, cells(run, self._mark(run), self.name_cells), old, strict=True
                ):
                    if value != was:
                        table.update_cell(key, column, value)
        else:
            table.clear()
            for key, run in zip(keys, self.shown, strict=True):
                table.add_row(*cells(run, self._mark(run), self.name_cells), key=key)
            if chosen is not None and run_key(chosen["path"]) in keys:
                table.move_cursor(row=keys.index(run_key(chosen["path"])), animate=False)
        self._show_detail()

    def highlighted(self) -> dict[str, Any] | None:
        i = self.query_one(DataTable).cursor_row
        return self.shown[i] if 0 <= i < len(self.shown) else None

    @on(DataTable.RowHighlighted)
    def _moved(self, event: DataTable.RowHighlighted) -> None:
        self._show_detail()

    def _show_detail(self) -> None:
        run = self.highlighted()
        n, total = len(self.shown), len(self.runs)
        counted = f"{n} of {total} runs" if n != total else f"{total} runs"
        line = counted if self.reads else "reading…"
        if run is not None:
            line += f" · {run['run']}"
            version = other_version({"optitui_version": run.get("optitui_version")})
            if version is not None and not run.get("problem"):
                line += f" · written by optitui {version}: read-only"
            if run.get("problem"):
                line += f" · {run['problem']}"
        if self.said:
            line += f"\n{self.said}"
        self.detail = line
        self.query_one("#detail", Label).update(line)

    # -- keys --------------------------------------------------------------------------
    def action_toggle_overlay(self) -> None:
        run = self.highlighted()
        if run is None:
            return
        if run.get("problem") or run["state"] == "elsewhere":
            why = run.get("problem") or f"its store is on {run.get('host')}"
            self.said = f"cannot overlay {run['run']}: {why}"
        else:
            self.said = self.owner.toggle_overlay(Path(run["path"]))
        self._fill()

    @on(DataTable.RowSelected)
    def _steer(self, event: DataTable.RowSelected) -> None:
        event.stop()
        run = self.highlighted()
        if run is not None:
            self.app.post_message(SwitchRun(str(run["path"])))

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    @on(Input.Changed, "#filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        if self.reads:  # before the first listing there is nothing to filter
            self._fill()

    @on(Input.Submitted, "#filter")
    def _filter_done(self, event: Input.Submitted) -> None:
        self.query_one(DataTable).focus()

    def action_close(self) -> None:
        box = self.query_one("#filter", Input)
        if box.has_focus:  # Esc leaves the filter first, then the browser
            self.query_one(DataTable).focus()
            return
        self.dismiss(None)
