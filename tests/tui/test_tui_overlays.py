"""Other runs over the steered run's plots: names, colours, the x axis, and what happens
when an overlaid run is odd (vanishes, other group names, another optitui, too many)."""

from __future__ import annotations

import os
import shutil
from array import array
from pathlib import Path
from typing import Any

import pytest
from tui_support import (
    fixed_settings,
    loaded,
    metric_batches,
    pilot_test,
    sgd_groups,
    stamp_meta,
    step_time,
    wait_until,
    write_fixed_store,
)

from optitui.store.layout import RunPaths, create_run_dir
from optitui.store.writer import StoreWriter
from optitui.tui import decimate
from optitui.tui.app import DashboardApp, build_app
from optitui.tui.decimate import Points
from optitui.tui.feed import StoreFeed
from optitui.tui.history import HistoryView
from optitui.tui.overlay import (
    MAX_OVERLAYS,
    Overlay,
    extent,
    final_pieces,
    overlay_points,
    short_names,
    without_tag,
)
from optitui.tui.overlay_feed import overlay_run
from optitui.tui.screens.runs_browser import RunsBrowser
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot

TAG_A, TAG_B = "0123456789abcdef", "fedcba9876543210"
A_NAME = f"digits-20260921-122640-{TAG_A}"
B_NAME = f"digits-20260921-130102-{TAG_B}"


def view_of(paths: RunPaths) -> HistoryView:
    feed = StoreFeed(paths.root, pyramids=False)
    try:
        return feed.next().view
    finally:
        feed.close()


def smoothed(
    view: HistoryView, x: array[float], s: int, e: int, nb: int, log: bool
) -> list[Points]:
    return [decimate.last(x, view.smooth.at, s, e, nb, log)]


def renamed(*names: str) -> list[dict[str, Any]]:
    groups = sgd_groups()
    for g, name in zip(groups, names, strict=True):
        g["name"] = name
    return groups


# -- names and the x axis, without a screen ------------------------------------------------
def test_short_names_keep_the_part_that_tells_runs_apart() -> None:
    assert short_names([A_NAME, B_NAME]) == ["12:26:40", "13:01:02"]
    assert short_names([f"sgd-20260921-122640-{TAG_A}", f"adam-20260921-130102-{TAG_B}"]) == [
        "sgd-12:26:40",
        "adam-13:01:02",
    ]
    assert short_names(["run-a", "run-b", "run-c"]) == ["a", "b", "c"]
    assert short_names(["lr0.1", "lr0.3"]) == ["lr0.1", "lr0.3"]
    # the same second: the random tag is all that differs
    same = [f"d-20260921-122640-{TAG_A}", f"d-20260921-122640-{TAG_B}"]
    assert short_names(same) == ["12:26:40-0123", "12:26:40-fedc"]
    long = short_names(["a-" + "x" * 40, "b-" + "y" * 40])
    assert all(len(n) == 18 and "…" in n for n in long)
    assert without_tag(A_NAME) == "digits-20260921-122640" and without_tag("lr0.1") == "lr0.1"


def test_overlay_lines_follow_the_window_and_the_x_axis(tmp_path: Path) -> None:
    b, _ = write_fixed_store(tmp_path / B_NAME, steps=400, state="finished")
    ov = Overlay("b", (255, 95, 135), view_of(b))
    # by step, all of it: the run's own steps
    pts = overlay_points(ov, smoothed, (1.0, 600.0), 100, False, 0.0, False)
    assert len(pts) == 1 and pts[0].xs[0] >= 1 and pts[0].xs[-1] == 400.0
    assert len(pts[0]) <= 100
    assert extent(ov, False, 0.0) == (1.0, 400.0)
    # a window: only its steps
    [part] = overlay_points(ov, smoothed, (300.0, 600.0), 100, False, 0.0, False)
    assert min(part.xs) >= 300 and max(part.xs) == 400.0
    assert overlay_points(ov, smoothed, (450.0, 600.0), 100, False, 0.0, False) == []
    # by time: seconds since its first step, from the steered run's origin
    origin = 5_000.0
    [timed] = overlay_points(ov, smoothed, (origin, origin + 60.0), 100, True, origin, False)
    t0 = step_time(1)
    assert timed.xs[0] >= origin and timed.xs[-1] == pytest.approx(origin + step_time(400) - t0)
    lo, hi = extent(ov, True, origin) or (0.0, 0.0)
    assert lo == origin and hi == pytest.approx(origin + step_time(400) - t0)


def test_an_overlay_is_drawn_from_its_final_branch(tmp_path: Path) -> None:
    """A run that restored an earlier checkpoint: the rows it went back from are not drawn,
    and no line goes back in x."""
    paths = create_run_dir(tmp_path, "r", tmp_path / "rewound")
    w = StoreWriter(paths, {"groups": ["body", "head"]})
    w.write([*metric_batches(1, 300, 600), *metric_batches(201, 400, 600)])
    w.close()
    view = view_of(paths)
    assert final_pieces(view) == [(0, 200), (300, 500)]
    pts = overlay_points(
        Overlay("r", (255, 0, 0), view), smoothed, (1.0, 400.0), 80, False, 0.0, False
    )
    xs = [x for p in pts for x in p.xs]
    assert xs == sorted(xs) and xs[-1] == 400.0


# -- on the dashboard ------------------------------------------------------------------------
def two_runs(tmp_path: Path, b_steps: int = 900) -> tuple[RunPaths, RunPaths]:
    root = tmp_path / "runs"
    a, _ = write_fixed_store(root / A_NAME, steps=600)
    b, _ = write_fixed_store(
        root / B_NAME,
        steps=b_steps,
        state="finished",
        max_steps=b_steps,
        loss_scale=1.6,
        groups=renamed("encoder", "decoder"),
    )
    return a, b


def app_with(a: RunPaths, *others: RunPaths, **settings: Any) -> DashboardApp:
    settings.setdefault("runs_root", a.root.parent)
    overlays = [overlay_run(o.root) for o in others]
    return build_app(a.root, settings=fixed_settings(**settings), overlays=overlays)


async def overlays_drawn(pilot: Any, *lengths: int) -> None:
    await loaded(pilot)
    screen = pilot.app.dashboard
    await wait_until(
        pilot,
        lambda: (
            screen.overlay_lengths() == lengths
            and all(p.shows(p.view.length, lengths) for p in screen.plots)
        ),
        what=f"overlays of {lengths} rows drawn",
    )


def log_text(app: DashboardApp) -> str:
    return "\n".join(app.dashboard.query_one(EventLog).shown_lines())


@pilot_test
async def test_overlays_are_named_coloured_and_widen_the_window(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path)
    app = app_with(a, b, window=200)
    async with app.run_test(size=(160, 48)) as pilot:
        await overlays_drawn(pilot, 900)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        for plot in (loss, lr):
            assert ("━", "13:01:02", (255, 95, 135)) in plot.legend()
            assert plot.drawn_x == (1.0, 900.0)  # all steps: every run's whole history
            assert "13:01:02" in str(plot.header(160))
        # the steered run's last 200 steps: the overlay is cut to them
        await pilot.press("w")
        await wait_until(pilot, lambda: loss.drawn_x == (401.0, 600.0), what="the window")
        assert lr.drawn_x == (401.0, 600.0)
        assert ("━", "13:01:02", (255, 95, 135)) in loss.legend()
        # groups with other names: drawn by position, and said once
        text = log_text(app)
        assert f"overlaid as 13:01:02: {B_NAME}" in text
        assert "lr of 13:01:02 overlaid by position: its groups are encoder, decoder; " in text
        assert text.count("overlaid by position") == 1
        # X: by wall time since each run's first step
        await pilot.press("w", "X")
        await wait_until(pilot, lambda: loss.shows(600, (900,)) and loss.x_time)
        assert "by time" in loss.title()
        t0 = step_time(1)
        assert loss.drawn_x == (pytest.approx(t0), pytest.approx(step_time(900)))
        assert "7s" in str(loss.render())  # 899 steps at 123.4 steps/s: ticks in seconds
        await pilot.press("X")
        await wait_until(pilot, lambda: loss.drawn_x == (1.0, 900.0), what="steps again")


@pilot_test
async def test_a_short_title_still_says_by_time(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path, b_steps=300)
    app = app_with(a, b)
    async with app.run_test(size=(80, 24)) as pilot:
        await overlays_drawn(pilot, 300)
        loss, lr = app.dashboard.query_one(LossPlot), app.dashboard.query_one(LrPlot)
        await pilot.press("X")
        await wait_until(pilot, lambda: loss.x_time and loss.drawn_x != (1.0, 600.0))
        # at 80 columns the legend leaves room for a short title only
        header = str(loss.header(loss.size.width))
        assert header.startswith(loss.title(short=True) + "  ") and "by time" in header
        assert lr.title(short=True) == "lr · by time"
        await pilot.press("w")  # a window: said too
        await wait_until(pilot, lambda: "last 2000" in str(loss.header(loss.size.width)))
        assert "by time" in str(loss.header(loss.size.width))
        await pilot.press("X")
        await wait_until(pilot, lambda: not loss.x_time)
        assert "by time" not in str(loss.header(loss.size.width))


@pilot_test
async def test_a_run_that_vanishes_is_dropped_with_a_notice(tmp_path: Path) -> None:
    a, b = two_runs(tmp_path, b_steps=300)
    app = app_with(a, b)
    notes: list[str] = []
    async with app.run_test(size=(120, 36)) as pilot:
        await overlays_drawn(pilot, 300)
        app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
        shutil.rmtree(b.root)
        screen = app.dashboard
        await wait_until(pilot, lambda: not screen.overlay_runs, what="the overlay dropped")
        await wait_until(pilot, lambda: all(p.shows(600, ()) for p in screen.plots))
        assert all(p.overlays == () for p in screen.plots)
        assert f"{B_NAME} is gone (its directory was removed); dropped from the overlays" in (
            log_text(app)
        )
        assert any("dropped from the overlays" in n for n in notes)


@pilot_test
async def test_more_than_eight_overlays_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a, _ = write_fixed_store(root / "main", steps=50)
    others = [write_fixed_store(root / f"r{i}", steps=20, state="finished")[0] for i in range(9)]
    app = app_with(a)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        screen = app.dashboard
        said = [screen.toggle_overlay(o.root) for o in others]
        assert said[:8] == [f"r{i}: overlaid" for i in range(8)]
        assert said[8] == "at most 8 runs can be overlaid: remove one first (b, then Space)"
        assert len(screen.overlay_runs) == MAX_OVERLAYS
        colours = [ov.color for ov in screen.overlay_runs.values()]
        assert len(set(map(str, colours))) == MAX_OVERLAYS  # each its own
        assert screen.toggle_overlay(a.root) == "main is the run the keys steer"
        assert screen.toggle_overlay(others[0].root) == "r0: no longer overlaid"
        assert screen.toggle_overlay(others[8].root) == "r8: overlaid"
        # the freed colour goes to the new one
        assert screen.overlay_runs[str(others[8].root)].color == colours[0]


@pilot_test
async def test_eight_overlays_are_all_drawn_and_the_browser_still_lists_on_two_cores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # asyncio's default thread pool has (cpus + 4) threads: the steered run's reader and
    # one per overlay live as long as the dashboard, and must leave room for the rest
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 2, raising=False)
    root = tmp_path / "runs"
    a, _ = write_fixed_store(root / "main", steps=50)
    others = [
        write_fixed_store(root / f"r{i}", steps=20 + i, state="finished")[0]
        for i in range(MAX_OVERLAYS)
    ]
    app = app_with(a, *others)
    async with app.run_test(size=(160, 48)) as pilot:
        await overlays_drawn(pilot, *range(20, 20 + MAX_OVERLAYS))
        await pilot.press("b")
        browser = app.screen
        assert isinstance(browser, RunsBrowser)
        await wait_until(pilot, lambda: browser.reads > 0, what="the runs listed")
        assert len(browser.runs) == MAX_OVERLAYS + 1


@pilot_test
async def test_runs_of_another_optitui_are_read_only_or_refused_by_name(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    a, _ = write_fixed_store(root / "main", steps=100)
    older, _ = write_fixed_store(root / "older", steps=80, state="finished")
    stamp_meta(older, "optitui_version", '"0.0.9"')
    other, _ = write_fixed_store(root / "other", steps=80, state="finished")
    stamp_meta(other, "optitui_version", '"9.9.9"')
    stamp_meta(other, "schema_version", "2")
    app = app_with(a, older, other)
    async with app.run_test(size=(120, 36)) as pilot:
        await loaded(pilot)
        screen = app.dashboard
        await wait_until(pilot, lambda: list(screen.overlay_runs) == [str(older.root)])
        await overlays_drawn(pilot, 80)
        text = log_text(app)
        assert "older was written by optitui 0.0.9: shown read-only" in text
        assert (
            "other was written by optitui 9.9.9: run store schema version 2; this optitui "
            "reads version 1; dropped from the overlays"
        ) in text
        assert app.switch_problem(older.root) == (
            "older was written by optitui 0.0.9: shown read-only, not steered"
        )


# -- the command line ------------------------------------------------------------------------
class NoScreen:
    """Stands in for the dashboard: the command line's checks are what is tested."""

    return_code = 0

    def run(self) -> None:
        pass


def test_attach_checks_every_run_before_a_dashboard_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from optitui.cli import attach, main

    monkeypatch.setattr(attach, "has_terminal", lambda: True)
    opened: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "optitui.tui.app.build_app", lambda *args, **kw: opened.append(kw) or NoScreen()
    )
    a, b = two_runs(tmp_path, b_steps=50)
    root = str(a.root.parent)
    newer, _ = write_fixed_store(a.root.parent / "newer", steps=10)
    stamp_meta(newer, "optitui_version", '"9.9.9"')
    stamp_meta(newer, "schema_version", "2")

    def refused(*args: str) -> str:
        assert main(["attach", *args, "--root", root]) == 2
        return capsys.readouterr().err

    err = refused(str(a.root), *[f"r{i}" for i in range(9)])
    assert "9 runs to overlay: at most 8 can be drawn over the steered run" in err
    assert "cannot be overlaid" in refused(str(a.root), "gpu1:runs/x")
    assert "cannot be overlaid" in refused("gpu1:runs/x", str(a.root))
    assert f"{B_NAME}: named twice (already given as {b.root})" in refused(
        str(a.root), str(b.root), B_NAME
    )
    assert "named twice (already the run the keys steer)" in refused(A_NAME, str(a.root))
    assert "nope: not a run directory" in refused(A_NAME, "nope")
    assert "newer: written by optitui 9.9.9: run store schema version 2" in refused(A_NAME, "newer")
    assert opened == []  # nothing opened for any of them
    assert main(["attach", A_NAME, B_NAME, "--root", root]) == 0
    [kw] = opened
    assert [ov.paths.root for ov in kw["overlays"]] == [b.root]
    assert kw["settings"].runs_root == a.root.parent
    for ov in kw["overlays"]:
        ov.feed.next()  # the prefetched read, handed over
        ov.feed.close()


def test_attach_and_the_dashboard_agree_on_the_overlay_limit() -> None:
    from optitui.cli import attach

    assert attach.MAX_OVERLAYS == MAX_OVERLAYS
