"""The group table shows each group's newest update ratio ||dw||/||w|| as log10 next to
the lr, coloured against the 1e-3 rule of thumb (regenerate the snapshot:
pytest --snapshot-update; look at it)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from rich.text import Text
from tui_support import (
    fixed_app,
    loaded,
    metric_batches,
    pilot_test,
    snapshot_ready,
    wait_until,
    write_fixed_store,
)

from optitui.store.records import MetricBatch
from optitui.store.writer import StoreWriter
from optitui.tui.widgets.group_table import RATIO, GroupTable, ratio_cell, ratio_style

NAN = math.nan


def health_batch(first: int, last: int, ratios: tuple[float, float]) -> MetricBatch:
    """Steps ``first..last`` of the fixed run, the first of them measured."""
    (batch,) = metric_batches(first, last, 1000, chunk=last - first + 1)
    cols = dict(batch.columns)
    n = last - first + 1
    for i, r in enumerate(ratios):
        cols[f"update_ratio/{i}"] = [r] + [NAN] * (n - 1)
        cols[f"grad_norm/{i}"] = [0.5] + [NAN] * (n - 1)
        cols[f"param_norm/{i}"] = [10.0] + [NAN] * (n - 1)
    return MetricBatch(cols)


def ratio_text(table: GroupTable, row: int) -> Text:
    cell = table.get_cell(str(row), RATIO)
    assert isinstance(cell, Text)
    return cell


def test_ratio_cells_and_colours() -> None:
    assert ratio_cell(None) == ratio_cell(NAN) == ""
    assert ratio_cell(1e-3) == "-3.0" and ratio_cell(0.05) == "-1.3" and ratio_cell(0.0) == "-inf"
    assert ratio_style("-3.0") == ratio_style("-2.1") == ratio_style("-3.9") == "green"
    assert ratio_style("-5.2") == ratio_style("-inf") == "yellow"  # barely moving
    assert ratio_style("-1.3") == ratio_style("inf") == "bold red"  # rewritten fast


@pilot_test
async def test_the_table_shows_the_newest_measured_ratio_of_each_group(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert isinstance(writer, StoreWriter)
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot)
        table = app.dashboard.query_one(GroupTable)
        assert RATIO not in [str(c.label) for c in table.columns.values()]  # none measured
        writer.write([health_batch(601, 616, (2e-3, 0.05))])
        await wait_until(
            pilot, lambda: RATIO in [str(c.label) for c in table.ordered_columns], what="ratios"
        )
        assert [ratio_text(table, 0).plain, ratio_text(table, 1).plain] == ["-2.7", "-1.3"]
        assert str(ratio_text(table, 0).style) == "green"
        assert str(ratio_text(table, 1).style) == "bold red"
        # the next measurement, 16 steps on (unmeasured steps between): the newest wins
        writer.write([health_batch(617, 632, (2e-5, 1e-3))])
        await wait_until(
            pilot, lambda: ratio_text(table, 0).plain == "-4.7", what="the newer ratio"
        )
        assert str(ratio_text(table, 0).style) == "yellow"
        assert ratio_text(table, 1).plain == "-3.0"
    writer.close()


def test_group_table_with_update_ratios_120x36(snap_compare: Any, tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "digits-fixed", keep_open=True)
    assert isinstance(writer, StoreWriter)
    writer.write([health_batch(601, 616, (1.2e-3, 0.05))])
    writer.close()
    app = fixed_app(paths.root)
    assert snap_compare(app, terminal_size=(120, 36), run_before=snapshot_ready(616))


@pilot_test
async def test_group_names_with_brackets_show_as_written() -> None:
    """A group named like console markup ('[bold]head') is shown as its name, not styled."""
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield GroupTable()

    app = One()
    async with app.run_test(size=(100, 6)) as pilot:
        table = app.query_one(GroupTable)
        groups: list[dict[str, Any]] = [
            {"index": 0, "name": "[bold]head/x", "values": {"lr": 0.1}, "params": 5},
            {"index": 1, "name": "[red]", "values": {"lr": 0.2}, "params": 6},
        ]
        table.set_groups(groups, set())
        await pilot.pause()
        shown = ["".join(s.text for s in table.render_line(y)) for y in range(table.size.height)]
        assert any("[bold]head/x" in line for line in shown), shown
        assert any("[red]" in line for line in shown), shown
