"""The status bar: one line at every width, and speeds measured over the steps' wall times."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_support import FIXED_NOW, fixed_app, loaded, pilot_test, wait_until, write_fixed_store

from optitui.store.records import MetricBatch, StatusUpdate
from optitui.tui.widgets.status_bar import StatusBar


def bar_text(app: object) -> str:
    return str(app.dashboard.query_one(StatusBar).render())  # type: ignore[attr-defined]


@pytest.mark.parametrize("width", [80, 100, 160])
@pilot_test
async def test_the_status_bar_is_one_line_and_keeps_what_matters(
    tmp_path: Path, width: int
) -> None:
    paths, writer = write_fixed_store(
        tmp_path / "a-long-run-name-20260921-122640-ab12", keep_open=True
    )
    assert writer is not None
    # numbers grow: a long run with a large step count and device memory
    writer.write([StatusUpdate("running", 1_234_567, 98, 123.4, 7897.6, 3 * 2**30, FIXED_NOW - 3)])
    app = fixed_app(paths.root)
    async with app.run_test(size=(width, 30)) as pilot:
        await loaded(pilot)
        bar = app.dashboard.query_one(StatusBar)
        await wait_until(pilot, lambda: "1,234,567" in bar_text(app))
        assert bar.size.height == 1 and bar.region.y == 0
        text = bar.render_text(FIXED_NOW)
        assert text.cell_len <= bar.content_region.width, text.plain
        for kept in ("● running", "step 1,234,567", "steps/s"):
            assert kept in text.plain, (width, text.plain)
        if width >= 160:
            assert "last record 3s ago" in text.plain and "ETA" not in text.plain  # at 100%
    writer.close()


def _steps(first: int, last: int, t0: float, per_s: float) -> MetricBatch:
    steps = range(first, last + 1)
    return MetricBatch(
        {
            "step": [float(s) for s in steps],
            "time": [t0 + (s - first) / per_s for s in steps],
            "loss": [1.0 for _ in steps],
            "lr/0": [0.1 for _ in steps],
        }
    )


@pilot_test
async def test_steps_per_second_is_windowed_a_dash_while_paused_and_the_average_after(
    tmp_path: Path,
) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", steps=0, keep_open=True)
    assert writer is not None
    # 300 steps at 10/s, a ten-minute pause, then 20 steps at 10/s again: the job's own
    # figure for its last flush counts the pause (20 steps in 602 s)
    resumed = FIXED_NOW - 5.0
    writer.write(
        [
            _steps(1, 300, resumed - 632.0, 10.0),
            _steps(301, 320, resumed, 10.0),
            StatusUpdate("running", 320, 3, 20 / 602, 640 / 602, None, resumed + 1.9),
        ]
    )
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 30)) as pilot:
        await loaded(pilot, 320)
        await wait_until(pilot, lambda: "step 320" in bar_text(app))
        text = bar_text(app)
        assert "10 steps/s" in text and "320 samples/s" in text, text
        assert "ETA 1m08s" in text, text  # 680 steps left at 10/s
        writer.write([StatusUpdate("paused", 320, 3, 20 / 602, 640 / 602, None, resumed + 1.9)])
        await wait_until(pilot, lambda: "paused" in bar_text(app))
        text = bar_text(app)
        assert "– steps/s" in text and "ETA" not in text and "samples/s" not in text, text
        writer.write(
            [StatusUpdate("stopped", 320, 3, 606.0, 19392.0, None, resumed + 1.9, "stopped")]
        )
        await wait_until(pilot, lambda: "stopped" in bar_text(app))
        text = bar_text(app)
        # the run's average over its wall time (319 steps in 633.9 s), not the last figure
        assert "avg 0.503 steps/s" in text and "606" not in text, text
    writer.close()
