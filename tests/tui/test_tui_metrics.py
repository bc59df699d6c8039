"""The metrics screen (m): a chart per metric, the filter, a chart at full size, the
markers on every chart, other runs overlaid, a metric pinned under the loss plot, and
metrics that are odd (all NaN, one point, markup in the name, hundreds of names)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from metrics_support import per_step, write_metrics_store
from rich.text import Text
from test_tui_overlays import app_with
from textual.widgets import Static
from tui_support import fixed_app, loaded, pilot_test, wait_until, write_fixed_store

from optitui.store.records import StatusUpdate
from optitui.store.writer import StoreWriter
from optitui.tui.app import DashboardApp
from optitui.tui.chart_text import LABEL_CELLS
from optitui.tui.markers import CATEGORIES
from optitui.tui.screens.markers import MarkersScreen
from optitui.tui.screens.metric_full import MetricFullScreen
from optitui.tui.screens.metrics import MetricsScreen
from optitui.tui.widgets.chart_grid import ChartGrid
from optitui.tui.widgets.command_status import CommandStatus
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.metric_chart import MetricChart
from optitui.tui.widgets.system_panel import SystemPanel, gauges

#: the metrics of the fixed store, in the order the screen shows them
NAMES = ["[bold]odd", "acc", "train/tokens_per_s", "test/once", "val_acc", "val_f1", "grad_norm"]
GLYPHS = {c.glyph for c in CATEGORIES}


async def open_metrics(pilot: Any, length: int = 600) -> ChartGrid:
    """m on a loaded dashboard; the grid once it drew the per-step metrics' pyramids."""
    await loaded(pilot, length)
    await pilot.press("m")
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, MetricsScreen), what="metrics")
    grid = app.screen.query_one(ChartGrid)
    await wait_until(
        pilot,
        lambda: all(s.values.levels for s in grid.view.metrics.series if s.length >= 64),
        what="every metric's pyramid",
    )
    await wait_until(
        pilot,
        lambda: grid.drawn or (grid.frames and not grid.view.metrics.series),
        what="charts drawn",
    )
    return grid


def screen_text(app: DashboardApp) -> str:
    """The metrics screen's head line and grid, as drawn."""
    screen = app.screen
    head = screen.query_one("#head", Static).render()
    return f"{head}\n{screen.query_one(ChartGrid).render()}"


@pilot_test
async def test_m_shows_a_chart_per_metric_in_sections_with_every_marker(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        grid = await open_metrics(pilot)
        assert grid.names == NAMES
        # a prefix of its own (train/) is no section
        assert [b.title for b in grid.bands() if b.title] == [
            "metrics",
            "validation",
            "optimizer health",
        ]
        assert grid.drawn == NAMES  # 160x48 holds them all
        # every chart's bottom line has the markers in its steps: the change at 300 (or
        # the spike beside it), the save at 450, the range test at 500
        for name in NAMES:
            strip = grid._chart(name, grid.chart_width(), grid.chart_rows())[-1].plain
            assert "▪" in strip and "◆" in strip and ({"▲", "✕"} & set(strip)), name
        # the markers' list moved to M
        await pilot.press("escape")
        assert app.screen is app.dashboard
        await pilot.press("M")
        await wait_until(pilot, lambda: isinstance(app.screen, MarkersScreen), what="M")


@pilot_test
async def test_the_filter_narrows_the_grid_and_esc_goes_back(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot)
        await pilot.press("slash", "v", "a", "l")
        assert grid.names == ["val_acc", "val_f1"]
        await pilot.press("enter")  # back to the grid, the filter kept
        assert grid.has_focus and grid.names == ["val_acc", "val_f1"]
        await pilot.press("slash", "backspace", "backspace", "backspace", "n", "o", "p", "e")
        await pilot.pause()
        assert grid.names == [] and "no metric matches the filter" in screen_text(app)
        await pilot.press("escape")  # leaves the filter
        assert grid.has_focus
        await pilot.press("escape")  # leaves the screen
        assert app.screen is app.dashboard


@pilot_test
async def test_q_goes_back_too_and_is_a_letter_in_the_filter(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot)
        await pilot.press("slash", "q")
        await pilot.pause()
        assert isinstance(app.screen, MetricsScreen) and grid.words == "q"
        await pilot.press("escape", "q")  # out of the filter, then off the screen
        await wait_until(pilot, lambda: app.screen is app.dashboard, what="the dashboard")


@pilot_test
async def test_enter_opens_a_chart_full_size_with_log_y_and_window_toggles(
    tmp_path: Path,
) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root, window=200)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot)
        await pilot.press("down", "down", "down", "down")
        assert grid.selected == "grad_norm"
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, MetricFullScreen), what="full")
        chart = app.screen.query_one(MetricChart)
        await wait_until(pilot, lambda: chart.last is not None)
        assert chart.last is not None
        # 20 down to 0.06: over two decades, so log by itself
        assert chart.last.log and chart.last.x == (1.0, 600.0)
        assert "log-y" in chart.last.lines[0].plain
        await pilot.press("l")
        await wait_until(pilot, lambda: chart.last is not None and not chart.last.log)
        await pilot.press("w")  # the last 200 steps
        await wait_until(pilot, lambda: chart.last is not None and chart.last.x == (401.0, 600.0))
        await pilot.press("left_square_bracket")  # zoomed in: the last 100
        await wait_until(pilot, lambda: chart.last is not None and chart.last.x == (501.0, 600.0))
        await pilot.press("escape")
        assert isinstance(app.screen, MetricsScreen)
        assert grid.selected == "grad_norm"


@pilot_test
async def test_a_pinned_metric_shows_under_the_loss_plot(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        grid = await open_metrics(pilot)
        assert not pinned.display  # nothing pinned yet
        await pilot.press("right", "right", "right", "right")
        assert grid.selected == "val_acc"
        await pilot.press("u", "escape")
        assert app.screen is app.dashboard and app.dashboard.pinned == "val_acc"
        await wait_until(pilot, lambda: pinned.last is not None and pinned.size.height >= 5)
        assert pinned.last is not None and pinned.last.lines[0].plain.startswith(" val_acc ")
        assert pinned.last.y is not None and 0.5 < pinned.last.y[1] < 1.0
        await pilot.press("m", "right", "right", "right", "right", "u", "escape")  # unpinned
        await wait_until(pilot, lambda: not pinned.display)
        assert app.dashboard.pinned is None


@pilot_test
async def test_the_pinned_chart_lines_up_with_the_loss_plot(tmp_path: Path) -> None:
    """Under the loss plot, the pinned chart's y axis line is in the loss plot's column,
    its step labels are the loss plot's in the same cells, and a marker is in the same
    column in both, at each size; unpinned, the loss plot's labels take their own room
    again, and by time (X) the chart keeps its own layout (it is by step)."""
    paths = write_metrics_store(tmp_path / "digits-metrics")
    for size in ((160, 48), (120, 36), (100, 30)):
        await lined_up(paths.root, size)


async def lined_up(run: Path, size: tuple[int, int]) -> None:
    app = fixed_app(run, pinned="val_acc")
    async with app.run_test(size=size) as pilot:
        await loaded(pilot, 600)
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        loss = app.dashboard.query_one(LossPlot)
        # the chart has the loss plot's last frame (its next redraw follows the plot's)
        await wait_until(pilot, lambda: pinned.frame is not None and pinned.frame == loss.line_up())
        pinned.render()  # drawn for that frame now, not at the next refresh
        assert pinned.last is not None
        above = str(loss.render()).split("\n")[1:]  # the figure, without the title
        below = [line.plain for line in pinned.last.lines[1:]]
        left = above[0].index("┌")
        assert left == LABEL_CELLS, (size, above[0])
        assert {line[left] for line in above[1:-2]} <= {"│", "┤"}
        assert {line[left] for line in below[:-1]} <= {"│", "┤"}, (size, below)
        steps = {j: ch for j, ch in enumerate(above[-1]) if ch != " "}
        assert len(steps) >= 4 and {j: below[-1][j] for j in steps} == steps, size
        marks = {j: ch for j, ch in enumerate(above[-3]) if ch in GLYPHS}
        shown = {j: ch for j, ch in enumerate(below[-1]) if ch in GLYPHS}
        assert shown and shown.items() <= marks.items(), (size, marks, shown)
        right = above[0].index("┐")
        assert max(len(line.rstrip()) for line in below[:-1]) <= right, size
        await pilot.press("X")  # by time: the chart is by step, so its own layout
        await wait_until(pilot, lambda: pinned.frame is None and loss.by_time())
        app.dashboard.pin_metric(None)
        await wait_until(pilot, lambda: not loss.dirty)
        await pilot.pause()
        assert str(loss.render()).split("\n")[1].index("┌") < LABEL_CELLS


@pilot_test
async def test_a_metric_pinned_from_the_settings_shows_at_once(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root, pinned="acc")
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, 600)
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        await wait_until(pilot, lambda: pinned.last is not None and pinned.last.y is not None)
        assert pinned.display and pinned.metric == "acc"


@pilot_test
async def test_odd_metrics_all_nan_one_point_markup_in_the_name(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        grid = await open_metrics(pilot)
        odd = [line.plain for line in grid._chart("[bold]odd", 52, 10)]
        assert odd[0].startswith(" [bold]odd  NaN")  # the name as written, not markup
        assert any("only NaN so far" in line for line in odd)
        once = [line.plain for line in grid._chart("test/once", 52, 10)]
        assert once[0].startswith(" test/once  0.5") and any("•" in line for line in once)
        assert "[bold]odd" in screen_text(app)


def test_a_name_with_control_characters_keeps_to_one_line() -> None:
    """A newline or a tab in a metric's name is shown escaped: the title stays one row
    of the grid; printable names (unicode too) are shown as they are."""
    from optitui.tui.metric_history import titled

    assert titled("new\nline", []) == "new\\nline"
    assert titled("tab\tname\x1b", []) == "tab\\tname\\x1b"
    assert titled("損失/acc", []) == "損失/acc"


@pilot_test
async def test_hundreds_of_metrics_open_and_filter(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "wide", steps=0, keep_open=True)
    assert isinstance(writer, StoreWriter)
    extra = {f"user:layer{i:03d}/act": float(i) for i in range(300)}
    writer.write(list(per_step(1, 200, extra)))
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot, 200)
        assert len(grid.names) == 304  # and acc, train/tokens_per_s, [bold]odd, grad_norm
        # 300 names, each with a prefix of its own: one section, not 300
        assert [b.title for b in grid.bands() if b.title] == ["metrics", "optimizer health"]
        assert len(grid.drawn) < 20  # only the charts in view are drawn
        await pilot.press("slash", *"layer299")
        assert grid.names == ["layer299/act"]
        await pilot.press("enter", "down", "down")  # the cursor stays on the one chart
        assert grid.selected == "layer299/act"


@pilot_test
async def test_overlaid_runs_are_drawn_on_the_metrics_charts_in_their_colours(
    tmp_path: Path,
) -> None:
    a = write_metrics_store(tmp_path / "runs" / "digits-20260921-122640")
    b = write_metrics_store(tmp_path / "runs" / "digits-20260921-130102", worse=1.5)
    app = app_with(a, b)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot, 600)
        await wait_until(pilot, lambda: app.dashboard.overlay_lengths() == (600,))
        grid = await open_metrics(pilot)
        [ov] = app.dashboard.shown_overlays()
        colour = "rgb({},{},{})".format(*ov.color)
        for name in ("acc", "val_acc", "grad_norm"):
            lines = grid._chart(name, grid.chart_width(), grid.chart_rows())
            styles = {str(s.style) for line in lines for s in line.spans}
            assert colour in styles, name
        assert ov.name in screen_text(app)


def test_metric_range_leaves_a_spike_out_and_keeps_the_newest() -> None:
    from optitui.tui import y_range

    calm = [0.5 + 0.001 * i for i in range(200)]
    lo, hi = y_range.metric([*calm[:100], 50.0, *calm[100:]]) or (0, 0)
    assert hi < 1.0 and lo >= 0.5  # the spike is not on the axis
    lo, hi = y_range.metric([*calm, -40.0]) or (0, 0)
    assert lo > 0.0  # nor a collapse for one step
    lo, hi = y_range.metric(calm, keep=[3.0]) or (0, 0)
    assert hi == 3.0  # the newest value always is
    assert y_range.metric(calm) == (0.5, calm[-1])  # a steady trend is never clipped
    assert not math.isnan(hi)


def test_the_history_keeps_metric_pyramids_only_once_asked(tmp_path: Path) -> None:
    from optitui.store.reader import RunReader
    from optitui.tui.history import History

    paths = write_metrics_store(tmp_path / "run")
    h = History()
    with RunReader(paths.root) as r:
        assert h.read(r)
        assert not any(s.values.levels for s in h.view().metrics.series if not s.logged)
        h.extra.wanted = True
        assert h.read(r)  # nothing new, but the pyramids started: a new view
        view = h.view()
        assert all(s.values.levels for s in view.metrics.series if not s.logged)
        assert not h.read(r)
    [acc] = view.metrics.of("acc")
    assert acc.values.minmax(0, 600) == (min(acc.values.raw), max(acc.values.raw))
    logged = {s.name for s in view.metrics.series if s.logged}
    assert logged == {"val_acc", "val_f1", "test/once"}


# -- pictures (regenerate: pytest --snapshot-update; look at each) ----------------------
def metrics_app(tmp_path: Path, **settings: Any) -> DashboardApp:
    return fixed_app(write_metrics_store(tmp_path / "digits-metrics").root, **settings)


def after(*keys: str) -> Any:
    async def run_before(pilot: Any) -> None:
        grid = await open_metrics(pilot)
        await pilot.press(*keys)
        await pilot.pause(0.3)
        if isinstance(pilot.app.screen, MetricFullScreen):
            chart = pilot.app.screen.query_one(MetricChart)
            await wait_until(pilot, lambda: chart.last is not None)
        else:  # a frame of the charts the filter leaves
            frames = grid.frames
            grid.refresh()
            await wait_until(
                pilot, lambda: grid.frames > frames and set(grid.drawn) <= set(grid.names)
            )
        pilot.app.clear_notifications()
        await pilot.pause()

    return run_before


def test_metrics_screen_80x24(snap_compare: Any, tmp_path: Path) -> None:
    assert snap_compare(metrics_app(tmp_path), terminal_size=(80, 24), run_before=after())


def test_metrics_screen_160x48(snap_compare: Any, tmp_path: Path) -> None:
    app = metrics_app(tmp_path)
    assert snap_compare(app, terminal_size=(160, 48), run_before=after("right"))


def test_metrics_screen_filtered_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = metrics_app(tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=after("slash", *"val", "enter"))


def test_metric_full_size_log_y_160x48(snap_compare: Any, tmp_path: Path) -> None:
    keys = ("down", "down", "down", "enter")  # grad_norm: log-y by itself
    app = metrics_app(tmp_path)
    assert snap_compare(app, terminal_size=(160, 48), run_before=after(*keys))


def test_metric_pinned_under_the_loss_plot_120x36(snap_compare: Any, tmp_path: Path) -> None:
    app = metrics_app(tmp_path, pinned="val_acc")

    async def run_before(pilot: Any) -> None:
        await loaded(pilot, 600)
        pinned = pilot.app.dashboard.query_one("#pinned", MetricChart)
        await wait_until(pilot, lambda: pinned.last is not None and pinned.last.y is not None)
        await pilot.pause()

    assert snap_compare(app, terminal_size=(120, 36), run_before=run_before)


@pilot_test
async def test_the_machine_section_shows_each_gpu_and_the_process_as_gauges(
    tmp_path: Path,
) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await open_metrics(pilot)
        panel = app.screen.query_one(SystemPanel)
        await wait_until(pilot, lambda: panel.display and panel.machine)
        lines = [line.plain for line in panel.lines(160)]
        assert lines[0].startswith("── machine")
        gpu0 = next(line for line in lines if line.startswith("GPU0 util"))
        assert "91%" in gpu0 and "30.0/80.0 GiB" in gpu0 and "61°C 310 W" in gpu0
        assert "█" in gpu0 and any(c in gpu0 for c in "▅▆▇█")  # a bar and a history
        [gpu1] = [line for line in lines if line.startswith("GPU1 util")]
        assert "18%" in gpu1
        [bar1] = [g for m in panel.machine for grp in gauges(m, 20, 1) for g in grp][2:3]
        assert bar1.label == "GPU1 util" and bar1.low  # an idle GPU stands out
        assert any(line.startswith("CPU") and "RSS" in line for line in lines)
        assert any(line.startswith("host mem") and "12.5/24.0 GiB" in line for line in lines)


@pilot_test
async def test_no_machine_section_without_machine_series(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        await open_metrics(pilot, 600)
        assert not app.screen.query_one(SystemPanel).display
        assert "no metrics recorded yet" in screen_text(app)


@pilot_test
async def test_an_infinite_metric_shows_inf_not_nan(tmp_path: Path) -> None:
    """inf is a value (the export writes it): the title says inf, never 'only NaN'."""
    paths, writer = write_fixed_store(tmp_path / "inf", steps=0, keep_open=True)
    assert isinstance(writer, StoreWriter)
    writer.write(list(per_step(1, 200, {"user:ppl": math.inf, "user:low": -math.inf})))
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot, 200)
        for name, shown in (("ppl", "inf"), ("low", "-inf")):
            lines = [line.plain for line in grid._chart(name, 52, 10)]
            assert lines[0].startswith(f" {name}  {shown}"), lines[0]
            assert not any("NaN" in line for line in lines), lines
            assert any("no finite value so far" in line for line in lines), lines
        odd = [line.plain for line in grid._chart("[bold]odd", 52, 10)]
        assert any("only NaN so far" in line for line in odd)


@pilot_test
async def test_health_series_are_named_by_their_group(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", steps=0, keep_open=True)
    assert isinstance(writer, StoreWriter)
    writer.write(list(per_step(1, 200, {"update_ratio/1": 1e-3, "param_norm/0": 4.0})))
    writer.close()
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 36)) as pilot:
        grid = await open_metrics(pilot, 200)
        await wait_until(pilot, lambda: grid.groups == ("body", "head"))
        title = grid._chart("update_ratio/1", 52, 10)[0].plain
        assert title.startswith(" update_ratio/head ")
        await pilot.press("slash", *"head", "enter")  # the filter finds it by its group
        assert grid.names == ["update_ratio/1"]


def test_metric_full_size_80x24(snap_compare: Any, tmp_path: Path) -> None:
    app = metrics_app(tmp_path)
    assert snap_compare(app, terminal_size=(80, 24), run_before=after("right", "enter"))


@pilot_test
async def test_a_health_series_pinned_by_its_groups_name_is_that_groups(tmp_path: Path) -> None:
    """``--pin update_ratio/head`` (the name the export and the metrics screen give it)
    draws group 1's series, titled by the group; the metrics screen's head names it so."""
    paths, writer = write_fixed_store(tmp_path / "run", steps=0, keep_open=True)
    assert isinstance(writer, StoreWriter)
    writer.write(list(per_step(1, 200, {"update_ratio/1": 1e-3, "param_norm/0": 4.0})))
    writer.close()
    app = fixed_app(paths.root, pinned="update_ratio/head")
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, 200)
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        await wait_until(pilot, lambda: pinned.last is not None and pinned.last.y is not None)
        assert app.dashboard.pinned == "update_ratio/1" == pinned.metric
        assert pinned.last is not None and pinned.last.lines[0].plain.startswith(
            " update_ratio/head  0.001"
        )
        grid = await open_metrics(pilot, 200)
        assert grid.groups == ("body", "head")
        assert "under the loss: update_ratio/head" in screen_text(app)


@pilot_test
async def test_a_pinned_name_nothing_is_recorded_under_says_so(tmp_path: Path) -> None:
    paths = write_metrics_store(tmp_path / "digits-metrics")
    app = fixed_app(paths.root, pinned="val_acx")
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot, 600)
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        await wait_until(pilot, lambda: pinned.last is not None)
        assert pinned.last is not None
        text = "\n".join(line.plain for line in pinned.last.lines)
        assert "nothing recorded under this name (m lists the metrics)" in text
        # the loss and the lrs are no metrics of their own: the chart says where they are
        for name, said in (
            ("loss", "the loss is drawn in the loss plot"),
            ("lr/body", "the lrs are drawn in the lr plot"),
        ):
            app.dashboard.pin_metric(name)
            await wait_until(pilot, lambda n=name: pinned.last is not None and pinned.metric == n)
            pinned.render()
            assert pinned.last is not None
            assert said in "\n".join(line.plain for line in pinned.last.lines), name


def test_a_group_without_a_name_is_its_index_in_a_health_series_name() -> None:
    """The dashboard labels a group without a name ``group 0``; its health series keep
    the index the export names them by (``grad_norm/0``), and either form pins it."""
    from optitui.tui.metric_history import column_of, titled

    groups = ("group 0", "head")
    assert titled("grad_norm/0", groups) == "grad_norm/0"
    assert titled("grad_norm/1", groups) == "grad_norm/head"
    assert column_of("grad_norm/head", groups) == "grad_norm/1"
    assert column_of("grad_norm/group 0", groups) == "grad_norm/0"
    assert column_of("grad_norm/0", groups) == "grad_norm/0"
    assert column_of("update_ratio/nope", groups) == "update_ratio/nope"
    assert column_of("acc/head", groups) == "acc/head"  # not a health series


@pilot_test
async def test_a_pinned_chart_gives_its_room_back_when_the_loss_plot_has_too_little(
    tmp_path: Path,
) -> None:
    """At 80x24 a two-row banner leaves the plots too few rows to share: the pinned chart
    goes (saying so) and the loss plot keeps its curve rows; it comes back with the room."""
    paths, writer = write_fixed_store(tmp_path / "run", steps=0, keep_open=True)
    assert isinstance(writer, StoreWriter)
    writer.write(list(per_step(1, 600, {"update_ratio/1": 1e-3})))
    app = fixed_app(paths.root, pinned="update_ratio/1")
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot, 600)
        pinned = app.dashboard.query_one("#pinned", MetricChart)
        loss = app.dashboard.query_one(LossPlot)
        await wait_until(pilot, lambda: pinned.display and pinned.size.height >= 5)
        why = "loss is nan at step 600; training paused by the divergence guard: " + "x" * 40
        writer.write([StatusUpdate("paused", 600, 6, message=why)])
        await wait_until(pilot, lambda: not pinned.display, what="the pinned chart gone")
        assert loss.size.height >= 8  # title, frame, 3 rows of curve, markers, labels
        assert not app.dashboard.pinned_fits()
        await wait_until(
            pilot,
            lambda: any("update_ratio/head is pinned" in n.message for n in app._notifications),
            what="the notice, naming the series by its group",
        )
        writer.write([StatusUpdate("running", 600, 6)])
        await wait_until(pilot, lambda: pinned.display, what="the pinned chart back")
        # two lines of command answers (a pause, then a resume) leave it room at 80x24
        answers = app.dashboard.query_one(CommandStatus)
        answers.update(Text("✓ pause: applied after step 600\n✓ resume: applied after step 600"))
        await wait_until(pilot, lambda: answers.size.height == 2, what="two answer lines")
        await pilot.pause()
        assert pinned.display and app.dashboard.pinned_fits() and loss.size.height >= 8
    writer.close()
