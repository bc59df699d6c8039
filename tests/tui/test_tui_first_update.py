"""A history read ahead (while Textual starts) goes into the dashboard's first frame: no
frame of empty plots is drawn before it, and the next read waits as a read after any
update does. A read ahead still going, or one that failed, is left to the feed's thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
from tui_support import FIXED_NOW, fixed_settings, loaded, pilot_test, write_fixed_store

from optitui.tui.app import build_app
from optitui.tui.feed import FeedUpdate, StoreFeed, follow
from optitui.tui.history import History
from optitui.tui.overlay_feed import OverlayFeed, overlay_run
from optitui.tui.screens.dashboard import DashboardScreen
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.history_plot import HistoryPlot


def read_ahead(run_dir: Path) -> StoreFeed:
    feed = StoreFeed(run_dir)
    feed.prefetch()
    assert feed._prefetch is not None
    feed._prefetch.join()  # done, not yet taken
    return feed


@pilot_test
async def test_a_history_read_ahead_is_in_the_first_frame(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=600)
    feed = read_ahead(paths.root)
    app = build_app(paths.root, feed=feed, settings=fixed_settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        plots = app.dashboard.plots
        assert [p.drawn_length for p in plots] == [600, 600]
        assert [p.frames for p in plots] == [1, 1]  # never drawn empty
        assert app.dashboard.updates == 1


@pilot_test
async def test_without_a_read_ahead_the_plots_draw_empty_then_the_history(
    tmp_path: Path,
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=600)
    app = build_app(paths.root, feed=StoreFeed(paths.root), settings=fixed_settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert [p.drawn_length for p in app.dashboard.plots] == [600, 600]


def test_ready_takes_only_a_finished_read_and_next_raises_a_failed_one(
    tmp_path: Path,
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=50)
    assert StoreFeed(paths.root).ready() is None  # nothing read ahead
    feed = read_ahead(paths.root)
    first = feed.ready()
    assert isinstance(first, FeedUpdate) and first.first and first.view.length == 50
    assert feed.ready() is None  # taken once
    assert not feed.next().first  # the next read is the second
    (paths.root / "store.sqlite").write_bytes(b"not a database" * 100)
    broken = read_ahead(paths.root)
    assert broken.ready() is None
    with pytest.raises(sqlite3.DatabaseError):
        broken.next()


class Counted:
    """A feed that records its read, then stops the follower."""

    def __init__(self, calls: list[str], stop: threading.Event) -> None:
        self.calls, self.stop = calls, stop
        self.history = History()

    def next(self) -> FeedUpdate:
        self.calls.append("read")
        self.stop.set()
        raise OSError("nothing here")

    def ready(self, wait: float = 0.0) -> FeedUpdate | None:
        return None

    def close(self) -> None: ...


@pytest.mark.parametrize("handed", [False, True])
def test_a_handed_first_update_makes_the_first_read_wait(handed: bool) -> None:
    calls: list[str] = []
    stop = threading.Event()

    def interval() -> float:
        calls.append("wait")
        return 0.0

    feed = Counted(calls, stop)
    consumed = threading.Event()
    consumed.set()  # the handed update is on screen
    follow(feed, lambda _u: None, consumed, stop, interval, handed=handed)
    assert calls[:2] == (["wait", "read"] if handed else ["read", "wait"])


def test_a_handed_first_update_is_read_on_only_once_consumed() -> None:
    calls: list[str] = []
    stop, consumed = threading.Event(), threading.Event()
    feed = Counted(calls, stop)
    t = threading.Thread(
        target=follow, args=(feed, lambda _u: None, consumed, stop, lambda: 0.0, None, None, True)
    )
    t.start()
    try:
        t.join(0.3)  # the UI has not taken the update yet: nothing is read
        assert calls == [] and t.is_alive()
        consumed.set()
        t.join(10)
        assert calls[:1] == ["read"] and not t.is_alive()
    finally:
        stop.set()
        t.join(10)


def first_frame_svg(run_dir: Path, ahead: bool) -> str:
    feed = StoreFeed(run_dir, clock=lambda: FIXED_NOW)
    if ahead:
        feed.prefetch()
        assert feed._prefetch is not None
        feed._prefetch.join()

    async def shot() -> str:
        app = build_app(run_dir, feed=feed, settings=fixed_settings())
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            return app.export_screenshot()

    return asyncio.run(shot())


def test_a_history_read_ahead_draws_the_same_screen(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=600, state="done")
    assert first_frame_svg(paths.root, ahead=True) == first_frame_svg(paths.root, ahead=False)


class Gated:
    """Reads ahead that cannot end before the dashboard opens (as a long history, or
    several runs read at once, on a busy machine): each read waits for ``gate``."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, before_mount: bool) -> None:
        """``before_mount``: the gate opens as the dashboard starts to open, else once it
        has opened (and given up waiting)."""
        self.gate = threading.Event()
        gate = self.gate
        for cls in (StoreFeed, OverlayFeed):
            poll = cls.poll

            def gated(self: StoreFeed, poll: Any = poll) -> FeedUpdate:
                if threading.current_thread().name == "optitui-prefetch":
                    assert gate.wait(10)
                return poll(self)  # type: ignore[no-any-return]

            monkeypatch.setattr(cls, "poll", gated)
        on_mount = DashboardScreen.on_mount

        def opening(screen: DashboardScreen) -> None:
            if before_mount:
                gate.set()
            on_mount(screen)
            gate.set()

        monkeypatch.setattr(DashboardScreen, "on_mount", opening)


@pilot_test
async def test_a_read_ahead_still_going_as_the_dashboard_opens_is_in_the_first_frame(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """attach RUN OTHER: the steered run's and the overlay's reads, both under way when
    the dashboard mounts, are waited for, and the first frame has both."""
    a, _ = write_fixed_store(tmp_path / "a", steps=600)
    b, _ = write_fixed_store(tmp_path / "b", steps=400)
    Gated(monkeypatch, before_mount=True)
    feed = StoreFeed(a.root)
    feed.prefetch()
    other = overlay_run(b.root, prefetch=True)
    app = build_app(a.root, feed=feed, overlays=[other], settings=fixed_settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        plots = app.dashboard.plots
        assert [p.drawn_length for p in plots] == [600, 600]
        assert [p.frames for p in plots] == [1, 1]  # never drawn empty
        assert [len(p.drawn_overlays) for p in plots] == [1, 1]
        assert app.dashboard.updates == 1


@pilot_test
async def test_the_dashboard_waits_for_a_read_ahead_for_a_while_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read that has not ended within ``first_read_wait`` is drawn once it ends."""
    paths, _ = write_fixed_store(tmp_path / "run", steps=600)
    Gated(monkeypatch, before_mount=False)
    drawn: dict[str, list[int]] = {}  # per plot, the history length of each frame
    build = HistoryPlot._build

    def recorded(plot: HistoryPlot, force: bool) -> bool:
        made = build(plot, force)
        if made:
            drawn.setdefault(type(plot).__name__, []).append(plot.drawn_length)
        return made

    monkeypatch.setattr(HistoryPlot, "_build", recorded)
    feed = StoreFeed(paths.root)
    feed.prefetch()
    app = build_app(paths.root, feed=feed, settings=fixed_settings(first_read_wait=0.05))
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert [p.drawn_length for p in app.dashboard.plots] == [600, 600]
    # empty first (the wait given up), then the history once its read ended (a busy
    # machine may draw one more frame of it: the smoothing that follows, a redraw)
    assert sorted(drawn) == ["LossPlot", "LrPlot"]
    for lengths in drawn.values():
        assert lengths[0] == 0 and 600 in lengths, lengths


def test_first_read_wait_is_bounded() -> None:
    with pytest.raises(ValueError, match="first_read_wait"):
        ViewerSettings(first_read_wait=-1.0)


@pilot_test
async def test_the_run_switched_to_is_in_the_first_frame_after_the_switch(
    tmp_path: Path,
) -> None:
    """Enter in the runs browser: the dashboard on the run now steered draws its history
    in its first frame, not a frame of empty plots first."""
    a, _ = write_fixed_store(tmp_path / "a", steps=600)
    b, _ = write_fixed_store(tmp_path / "b", steps=400)
    app = build_app(a.root, settings=fixed_settings())
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        first = app.dashboard
        await app.switch_to(b.root)
        assert app.dashboard is not first
        await loaded(pilot)
        plots = app.dashboard.plots
        assert [p.drawn_length for p in plots] == [400, 400]
        assert [p.frames for p in plots] == [1, 1]
        assert [len(p.drawn_overlays) for p in plots] == [1, 1]  # the run steered before
