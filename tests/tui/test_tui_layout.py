"""Layout at every size: axes, legends and markers that never cover the curves, one plot
at a time on a narrow terminal, a table that says what it left out."""

from __future__ import annotations

import math
import re
from pathlib import Path

from rich.text import Text
from tui_support import (
    fixed_app,
    loaded,
    pilot_test,
    wait_until,
    write_fixed_store,
    write_showcase_store,
)

from optitui.store.records import MetricBatch
from optitui.tui.chart_text import LEFT, Chart, Curve, draw
from optitui.tui.markers import CATEGORIES
from optitui.tui.screens.markers import MarkersScreen
from optitui.tui.widgets.group_table import ALL_GROUPS, GroupTable
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot

LABEL = re.compile(r"^\s*([0-9.e+-]+)\s*┤")


def y_labels(text: str) -> list[tuple[int, float]]:
    """(row, value) of each y tick label of a plot's text, top row first."""
    out = []
    for row, line in enumerate(text.splitlines()):
        m = LABEL.match(line)
        if m:
            out.append((row, float(m.group(1))))
    return out


@pilot_test
async def test_a_constant_lr_gets_an_upright_axis_around_its_value(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", steps=0, keep_open=True)
    assert writer is not None
    steps = range(1, 201)
    writer.write(
        [
            MetricBatch(
                {
                    "step": [float(s) for s in steps],
                    "loss": [1.0 / s for s in steps],
                    "lr/0": [0.002] * 200,
                    "lr/1": [0.002] * 200,
                }
            )
        ]
    )
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 40)) as pilot:
        await loaded(pilot, 200)
        text = str(app.dashboard.query_one(LrPlot).render())
        labels = y_labels(text)
        values = [v for _, v in labels]
        assert len(values) >= 2 and values == sorted(values, reverse=True), labels  # upright
        assert min(values) < 0.002 < max(values), labels  # around the value
        # the line is drawn at the height of the 0.002 label
        row = next(r for r, v in labels if v == 0.002)
        line = text.splitlines()[row]
        assert any(0x2800 < ord(c) < 0x2900 for c in line), line


@pilot_test
async def test_legends_sit_above_the_curves_and_markers_in_a_strip(tmp_path: Path) -> None:
    paths = write_showcase_store(tmp_path / "run", state="running")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        for plot in app.dashboard.plots:
            lines = str(plot.render()).splitlines()
            header, canvas = lines[0], lines[2:-2]  # less the frame and the step labels
            names = ("loss", "smoothed", "val") if isinstance(plot, LossPlot) else ("body",)
            assert all(n in header for n in names), header
            assert "▲ change" in header or isinstance(plot, LrPlot), header
            assert not any(n in row for row in canvas for n in names)  # no legend on a curve
            glyphs = {c.glyph for c in CATEGORIES}
            *curves, strip = canvas
            assert {"▲", "◆", "▪", "✕"} <= set(strip), strip  # every kind in the strip
            assert not any(g in row for row in curves for g in glyphs)
            # no full-height lines: inside the frame, no column is drawn on every row
            inside = [row[row.index("┤") + 1 : -1] if "┤" in row else row[-80:-1] for row in curves]
            width = min(map(len, inside))
            assert not any(all(r[c] == "│" for r in inside) for c in range(width))
        # m lists every marker with its step and what happened
        await pilot.press("M")
        screen = app.screen
        assert isinstance(screen, MarkersScreen)
        texts = [str(o.prompt) for o in screen.query_one("OptionList").options]  # type: ignore[attr-defined]
        assert any("150" in t and "set momentum=0.95" in t and "change" in t for t in texts)
        assert any("520" in t and "problem" in t for t in texts)
        assert len(texts) == len(app.dashboard.markers)
        await pilot.press("escape")
        assert app.screen is app.dashboard


@pilot_test
async def test_a_narrow_terminal_shows_one_plot_and_says_what_the_table_left_out(
    tmp_path: Path,
) -> None:
    paths = write_showcase_store(tmp_path / "run", state="running")
    app = fixed_app(paths.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        assert loss.display and loss.size.width >= 76 and loss.size.height >= 9
        assert lr.size.width == 0
        await pilot.press("p")
        await wait_until(pilot, lambda: lr.size.width >= 76 and loss.size.width == 0)
        await pilot.press("p")
        await wait_until(pilot, lambda: loss.size.width >= 76)
        # the table keeps group and lr, and names how many columns it left out
        table = app.dashboard.query_one(GroupTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[:3] == ["", "group", "lr"] and labels[-1] == f"+{len(table.hidden)} more: e"
        assert "params" in labels and table.hidden and "nesterov" in table.hidden
        assert table.virtual_size.width <= table.size.width
        # every key of the footer is on screen
        keys = list(app.dashboard.query("FooterKey"))
        assert keys and all(k.region.right <= 80 for k in keys), [k.region for k in keys]
        assert any("quit" in str(k.render()) for k in keys)
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert all(p.size.width > 50 for p in app.dashboard.plots)  # side by side
        assert not app.dashboard.query_one(GroupTable).hidden


@pilot_test
async def test_all_groups_shows_in_the_header_and_on_every_row(tmp_path: Path) -> None:
    paths = write_showcase_store(tmp_path / "run", state="running")
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        table = app.dashboard.query_one(GroupTable)

        def rows() -> list[str]:
            return [
                str(table.get_component_styles(f"datatable--{c}").background)
                for c in ("even-row", "odd-row", "cursor")
            ]

        before = rows()
        await pilot.press("a")
        labels = [str(c.label) for c in table.columns.values()]
        assert labels[1] == ALL_GROUPS
        after = rows()
        assert len(set(after)) == 1 and after != before  # every row alike, and marked
        await pilot.press("a")
        assert [str(c.label) for c in table.columns.values()][1] == "group"
        assert rows() == before


@pilot_test
async def test_dialogs_and_the_probe_hint_wrap_instead_of_cutting_at_80_columns(
    tmp_path: Path,
) -> None:
    from textual.widgets import Label

    from optitui.store.records import MetaUpdate
    from optitui.tui.screens.confirm import ConfirmScreen
    from optitui.tui.screens.form import FormScreen
    from optitui.tui.widgets.probe_notice import ProbeNotice

    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    hint = (
        "probe = optitui.watch(optimizer, model=model, scheduler=scheduler) and "
        "probe.step(loss) after optimizer.step() lift these limits"
    )
    writer.write([MetaUpdate({"probe": {"mode": "zero-code", "limits": ["x"], "hint": hint}})])
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        notice = app.dashboard.query_one(ProbeNotice)
        await wait_until(pilot, lambda: notice.display and notice.size.height >= 2)
        assert "lift these limits" in str(notice.render())
        # z: the whole question shows, wrapped
        await pilot.press("z")
        assert isinstance(app.screen, ConfirmScreen)
        question = app.screen.query_one("#question", Label)
        await pilot.pause()
        assert question.size.height >= 2 and question.size.width <= 76
        assert str(question.render()).rstrip().endswith("the selected one).")
        await pilot.press("n")
        # o: the form's title, wrapped
        await pilot.press("o")
        assert isinstance(app.screen, FormScreen)
        title = app.screen.query_one("#title", Label)
        await pilot.pause()
        assert title.size.height >= 2 and "starts fresh" in str(title.render())
        await pilot.press("escape")


@pilot_test
async def test_a_run_of_a_few_steps_names_each_step_tick_once_where_it_is(
    tmp_path: Path,
) -> None:
    """4 steps on five ticks (1, 1.75, 2.5, ...) read "1 2 2 3 4", a label under no step;
    each tick is on the whole step it names."""
    paths, _ = write_fixed_store(tmp_path / "run", steps=4)
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        for plot, shown in ((loss, ["1", "2", "3", "4"]), (lr, ["1", "2", "4"])):  # 5, 3 ticks
            last = str(plot.render()).splitlines()[-1]
            assert last.split() == shown, last
            axis = plot.step_axis(1.0, 4.0)
            assert axis is not None
            ticks, labels = axis[1]
            assert [float(label) for label in labels] == list(ticks), axis


def test_a_metric_chart_of_a_few_steps_names_each_step_once_under_it() -> None:
    """The metrics screen's charts too: 4 steps on five labels read 1 2 3 4, each label
    under its step's column; a long run's labels stay spread evenly."""
    curve = Curve([1.0, 2.0, 3.0, 4.0], [0.5, 0.4, 0.3, 0.2], "white", newest=True)
    strip = draw(Chart(Text("acc"), [curve], 1.0, 4.0, x_ticks=5), 60, 8).lines[-1].plain
    assert strip.split() == ["1", "2", "3", "4"], strip
    cols = 60 - LEFT
    for step in (2, 3):  # under the column its step is drawn in
        at = LEFT + round((step - 1) / 3 * (cols - 1))
        assert strip[at] == str(step), strip
    long = draw(Chart(Text("acc"), [curve], 1.0, 401.0, x_ticks=5), 60, 8).lines[-1].plain
    assert long.split() == ["1", "101", "201", "301", "401"], long


def test_tick_labels_give_the_value_at_their_height_in_a_narrow_band() -> None:
    """A metric moving in the third decimal (2.2904 .. 2.3096): each y label is the value
    at its own row (within half a row), never a rounding that belongs rows away (2.31
    beside 2.3055), and no two labels read the same."""
    vals = [2.3094, 2.2960, 2.3046, 2.2977, 2.2969, 2.3096, 2.3010, 2.2904]
    xs = [float(i) for i in range(len(vals))]
    for height in (8, 12, 24, 48):
        drawn = draw(Chart(Text("band"), [Curve(xs, vals, "red")], 0.0, 7.0), 60, height)
        assert drawn.y is not None
        lo, hi = drawn.y
        rows = height - 2
        row_height = (hi - lo) / (rows - 1)
        found = y_labels("\n".join(line.plain for line in drawn.lines))
        assert len(found) >= 2, (height, found)
        assert len({v for _, v in found}) == len(found)
        for line, value in found:
            at = hi - (line - 1) * row_height  # line 0 is the title
            assert abs(value - at) <= 0.5 * row_height, (height, line, value, at)


def test_big_and_small_values_are_written_whole_in_a_few_cells() -> None:
    """1e18 is 1.15e+18, not 1.15e+09G; a label too long for the axis is rounded and its
    exponent written short, never cut (0.000125 is not 0.00012)."""
    from optitui.tui.chart_text import fit, short

    assert short(2.0**60) == "1.15e+18"
    assert short(2.0**70) == "1.18e+21"
    assert (short(1500.0), short(2.5e6), short(1.5e9)) == ("1.5k", "2.5M", "1.5G")
    assert short(1_000_500.0, 5) == "1.0005M"
    # rounded up to the next unit: written in it, never 1e+03k
    assert (short(999_950.0), short(999_960_000.0), short(999.7)) == ("1M", "1G", "1k")
    assert (short(999_400.0), short(-999_950.0)) == ("999k", "-1M")
    assert fit("0.000125", 7) == "1.25e-4"
    assert fit("2.295", 7) == "2.295"
    assert fit("123456789", 7) == "1.235e8"
    for text in ("0.000125", "123456789", "1.23456789e-05", "0.0001234567"):
        got = fit(text, 7)
        assert len(got) <= 7 and math.isclose(float(got), float(text), rel_tol=5e-3), got
