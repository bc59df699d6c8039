"""The machine on the dashboard: the status bar's device now (utilisation and memory, or
CPU and RSS on a CPU run), each rank's GPU use in the ranks line, an idle GPU marked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tui_support import (
    FIXED_NOW,
    fixed_app,
    loaded,
    pilot_test,
    set_heartbeat,
    snapshot_ready,
    wait_until,
    write_fixed_store,
)

from optitui.store.records import MetaUpdate
from optitui.store.writer import StoreWriter
from optitui.tui.app import DashboardApp
from optitui.tui.widgets.ranks_line import RanksLine
from optitui.tui.widgets.status_bar import StatusBar

GIB = 2**30


def gpu_sample(ordinal: int, util: float, used_gib: float) -> dict[str, float]:
    return {
        "time": 1.0,
        "step": 600.0,
        "cpu_percent": 101.0,
        "rss_bytes": 3.5 * GIB,
        f"gpu{ordinal}/util_percent": util,
        f"gpu{ordinal}/mem_used_bytes": used_gib * GIB,
        f"gpu{ordinal}/mem_total_bytes": 80.0 * GIB,
        f"gpu{ordinal}/temp_c": 64.0,
        f"gpu{ordinal}/power_w": 310.0,
    }


def two_gpu_ranks(writer: StoreWriter) -> None:
    """Rank 1's GPU waits on its data: 9% busy."""
    ranks = [
        {"rank": 0, "steps_per_s": 12.3, "device_mem": 30 * GIB, "system": gpu_sample(0, 97, 31.2)},
        {"rank": 1, "steps_per_s": 12.2, "device_mem": 30 * GIB, "system": gpu_sample(1, 9, 30.9)},
    ]
    writer.write(
        [
            MetaUpdate(
                {
                    "device": "cuda:0",
                    "world_size": 2,
                    "ranks": ranks,
                    "system": {**gpu_sample(0, 97, 31.2), "rank": 0},
                }
            )
        ]
    )


def bar(app: DashboardApp) -> str:
    return app.dashboard.query_one(StatusBar).render_text(0.0).plain


@pilot_test
async def test_a_cpu_run_shows_its_process_cpu_and_rss(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(200, 34)) as pilot:
        await loaded(pilot)
        assert "CPU" not in bar(app)  # no sample yet: nothing made up
        sample = {"time": 1.0, "step": 600.0, "cpu_percent": 183.4, "rss_bytes": 1.25 * GIB}
        writer.write([MetaUpdate({"system": {**sample, "rank": 0}})])
        await wait_until(pilot, lambda: "CPU 183% RSS 1.2 GiB" in bar(app), what="the sample")
    writer.close()


@pilot_test
async def test_a_gpu_run_shows_its_gpu_and_an_idle_rank_stands_out(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(200, 34)) as pilot:
        await loaded(pilot)
        two_gpu_ranks(writer)
        await wait_until(pilot, lambda: "GPU0 97% 31.2/80.0 GiB" in bar(app), what="the GPU")
        assert "RSS" not in bar(app)  # the GPU is what a GPU run is watched by
        line = app.dashboard.query_one(RanksLine)
        await wait_until(pilot, lambda: line.display, what="the ranks line")
        plain = str(line.render())
        assert "r0 12.3/s 30.0 GiB GPU 97%" in plain and "r1 12.2/s 30.0 GiB GPU 9%" in plain
        assert "low GPU use r1 9%" in plain and "r0 97%" not in plain
    writer.close()


def test_machine_on_the_dashboard_120x36(snap_compare: Any, tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "digits-fixed", keep_open=True)
    assert writer is not None
    two_gpu_ranks(writer)
    writer.close()
    set_heartbeat(paths, FIXED_NOW - 1.0)  # as the other fixed stores: ages are the same
    assert snap_compare(
        fixed_app(paths.root), terminal_size=(120, 36), run_before=snapshot_ready(600)
    )


def test_a_sample_that_is_not_numbers_shows_nothing_made_up() -> None:
    from optitui.tui import machine

    for junk in (None, "97%", [1, 2], {"gpu0/util_percent": "high"}, {1: 2.0}):
        assert machine.describe("cuda:0", machine.sample(junk)).plain == ""
    got = machine.sample(
        {"gpu0/util_percent": float("nan"), "gpu0/mem_used_bytes": 2 * GIB, "x": True}
    )
    assert got == {"gpu0/mem_used_bytes": 2 * GIB}
    assert machine.describe("cuda:0", got).plain == "GPU0 2.0 GiB"
    # the job's own GPU among several; a device it has no series of falls back to none
    both = {**gpu_sample(0, 50, 1.0), **gpu_sample(1, 10, 2.0)}
    assert machine.describe("cuda:1", both).plain.startswith("GPU1 10%")
    assert machine.describe("cuda:7", both).plain == "CPU 101% RSS 3.5 GiB"
