"""What the main screen shows: full history then live data, status, log, markers;
and the two ways a job can be tied to the app (child process, inline loop)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

from rich.style import Style
from rich.text import Text
from tui_support import (
    FIXED_NOW,
    fixed_app,
    fixed_settings,
    loaded,
    lr_at,
    metric_batches,
    pilot_test,
    set_heartbeat,
    wait_until,
    write_fixed_store,
)

from optitui.store.layout import create_run_dir
from optitui.store.records import Event, GroupSnapshot, MetricBatch, StatusUpdate
from optitui.store.writer import StoreWriter
from optitui.tui import fmt
from optitui.tui.app import build_app
from optitui.tui.devices import Device
from optitui.tui.screens.device_picker import DevicePickerApp
from optitui.tui.screens.quit import QuitScreen
from optitui.tui.widgets.event_log import EventLog
from optitui.tui.widgets.group_table import GroupTable
from optitui.tui.widgets.history_plot import HistoryPlot
from optitui.tui.widgets.loss_plot import LossPlot
from optitui.tui.widgets.lr_plot import LrPlot
from optitui.tui.widgets.status_bar import StatusBar


def dimmed(plot: HistoryPlot, every: bool = False) -> bool:
    """Whether some (or, with ``every``, all) drawn braille cells of ``plot`` are dim."""
    text = plot.render()
    assert isinstance(text, Text)
    cells = [
        span.style.dim is True
        for span in text.spans
        if isinstance(span.style, Style)
        and any(0x2800 < ord(ch) < 0x2900 for ch in text.plain[span.start : span.end])
    ]
    return all(cells) if every else any(cells)


def log_text(log: EventLog) -> str:
    return "\n".join(log.shown_lines())


@pilot_test
async def test_full_history_then_live_updates(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await loaded(pilot, 600)
        screen = app.dashboard
        loss, lr = screen.query_one(LossPlot), screen.query_one(LrPlot)
        assert loss.view.length == 600 and loss.view.val_length == 6
        assert "loss" in str(loss.render()) and "smoothed" in str(loss.render())
        assert lr.group_names == ["body", "head"] and "body" in str(lr.render())
        assert not dimmed(loss) and not dimmed(lr)  # one branch: nothing is dimmed
        frames = loss.frames
        writer.write(metric_batches(601, 700, 1000))
        writer.write([StatusUpdate("running", 700, 7, last_record=FIXED_NOW - 1)])
        await wait_until(pilot, lambda: loss.drawn_length == 700 and lr.drawn_length == 700)
        assert loss.frames > frames
        await wait_until(pilot, lambda: "step 700" in str(screen.query_one(StatusBar).render()))
    writer.close()


@pilot_test
async def test_status_bar_shows_progress_speed_eta_and_age(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 30)) as pilot:
        await loaded(pilot)
        text = str(app.dashboard.query_one(StatusBar).render())
        for part in (
            "run",
            "● running",
            "step 600",
            "epoch 6",
            "123 steps/s",
            "7.9k samples/s",
            "60% of 1,000",
            "ETA 3s",
            "cpu",
            "last record 3s ago",
        ):
            assert part in text, (part, text)


@pilot_test
async def test_a_stalled_job_is_visible(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    app = build_app(paths.root, settings=fixed_settings(clock=lambda: FIXED_NOW + 9.0))
    async with app.run_test(size=(160, 30)) as pilot:
        await loaded(pilot)
        bar = app.dashboard.query_one(StatusBar)
        text = bar.render_text(FIXED_NOW + 57.0)
        assert "last record 1m00s ago" in text.plain
        assert any(
            "red" in str(span.style)
            for span in text.spans
            if "last record" in text.plain[span.start : span.end]
        )
        set_heartbeat(paths, FIXED_NOW - 100.0)  # silent for longer than STALE_AFTER_S
        await wait_until(
            pilot,
            lambda: app.dashboard.status is not None and app.dashboard.status.state == "crashed",
        )
        assert "crashed" in str(bar.render())


@pilot_test
async def test_event_log_and_markers(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 40)) as pilot:
        await loaded(pilot)
        screen = app.dashboard
        log = screen.query_one(EventLog)
        text = log_text(log)
        assert "scale-lr 1.1 group=head: applied after step 300" in text
        assert "loss spike at step 300" in text
        assert "epoch 5: accuracy 0.93" in text  # the job's output tail
        assert [(m.step, m.kind) for m in screen.markers] == [(300, "command")]
        writer.write(
            [
                Event(650, "checkpoint", "saved step 650", {"path": "x"}),
                Event(
                    660, "command", "pause: applied after step 660", {"kind": "pause", "args": {}}
                ),
                Event(670, "info", "note", {"marker": "lr-find"}),
            ]
        )
        with open(paths.output, "a") as f:
            f.write("half a li")
        await wait_until(pilot, lambda: "saved step 650" in log_text(log))
        assert [(m.step, m.kind) for m in screen.markers] == [
            (300, "command"),
            (650, "checkpoint"),
            (670, "info"),
        ]
        assert "half a li" not in log_text(log)  # only whole lines
        with open(paths.output, "a") as f:
            f.write("ne\n")
        await wait_until(pilot, lambda: "half a line" in log_text(log))
    writer.close()


@pilot_test
async def test_group_table_shows_every_editable_field(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 30)) as pilot:
        await loaded(pilot)
        table = app.dashboard.query_one(GroupTable)
        labels = [str(c.label) for c in table.columns.values()]
        assert labels == [
            "",
            "group",
            "lr",
            "momentum",
            "dampening",
            "weight_decay",
            "nesterov",
            "maximize",
            "params",
            "state",
            "lr×",
        ]
        # lr: the newest recorded step's (body follows a schedule since the snapshot)
        assert [str(c) for c in table.get_row("0")[:4]] == [
            "",
            "body",
            fmt.value(lr_at(600, 1000)),
            "0.9",
        ]
        assert table.get_row("1")[-3:] == ["650", "", ""]
        from tui_support import sgd_groups

        groups = sgd_groups()
        groups[1]["frozen"] = True
        groups[1]["lr_multiplier"] = 0.5
        groups[0]["ramping"] = ["lr"]
        writer.write([GroupSnapshot(600, groups)])
        await wait_until(pilot, lambda: table.get_row("1")[-3:] == ["650", "frozen", "0.5"])
        assert table.get_cell("0", "lr") == "0.05↗"  # on its way to a target
        assert table.get_row("0")[-3:] == ["16.6k", "ramping lr", ""]
    writer.close()


@pilot_test
async def test_supervised_job_exit_is_reported(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    go = tmp_path / "exit-now"
    wait = f"while not os.path.exists({str(go)!r}): time.sleep(0.02)"
    code = f"import os, time\n{wait}\nraise SystemExit(3)"
    proc = subprocess.Popen([sys.executable, "-c", code])  # exits with 3 when told
    app = build_app(paths.root, process=proc, settings=fixed_settings())
    async with app.run_test(size=(160, 30)) as pilot:
        await loaded(pilot)
        assert f"job pid {proc.pid}" in str(app.dashboard.query_one(StatusBar).render())
        assert app.job_alive()
        go.touch()
        await wait_until(pilot, lambda: app.job_returncode == 3)
        assert "job process exited with code 3" in log_text(app.dashboard.query_one(EventLog))
        assert not app.job_alive()
        await pilot.press("q")  # nothing left to detach from: quits at once
        await wait_until(pilot, lambda: app.return_value == 0)


@pilot_test
async def test_inline_job_stops_with_the_app(tmp_path: Path) -> None:
    paths = create_run_dir(tmp_path, "inline", tmp_path / "inline")
    stop = threading.Event()
    reasons: list[str] = []

    def runner() -> str:  # a stand-in training loop: writes the store until stopped
        w = StoreWriter(paths, {"groups": ["all"], "device": "cpu"})
        step = 0
        while not stop.is_set():
            step += 10
            steps = [float(s) for s in range(step - 9, step + 1)]
            w.write(
                [
                    MetricBatch(
                        {"step": steps, "loss": [1.0 / s for s in steps], "lr/0": [0.1] * 10}
                    ),
                    StatusUpdate("running", step, 0, last_record=time.time()),
                ]
            )
            print(f"step {step}")
            stop.wait(0.02)
        w.write([StatusUpdate("stopped", step, 0)])
        w.close()
        return "stopped"

    def stopper(reason: str) -> None:
        reasons.append(reason)
        stop.set()

    app = build_app(paths.root, job_runner=runner, stopper=stopper)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: app.dashboard.plots[0].drawn_length > 50)
        assert "inline" in str(app.dashboard.query_one(StatusBar).render())
        await wait_until(pilot, lambda: "step 10" in paths.output.read_text())  # prints captured
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert {b.id for b in app.screen.query("Button")} == {"stop", "cancel"}
        await pilot.press("d")  # no detaching from an inline job
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("s")
        await wait_until(pilot, lambda: app.return_value == 0)
    assert reasons == ["stopped from the dashboard"] and app.inline_state == "stopped"


@pilot_test
async def test_device_picker(tmp_path: Path) -> None:
    devices = [Device("cuda:0", "A100", 30000, 40000), Device("cuda:1", "A100", 100, 40000)]
    app = DevicePickerApp(devices)
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.pause()
        await pilot.press("enter")  # the emptiest device is highlighted first
    assert app.return_value == "cuda:1"
    app = DevicePickerApp(devices)
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.press("up", "enter")
    assert app.return_value == "cuda:0"
    app = DevicePickerApp(devices)
    async with app.run_test(size=(100, 20)) as pilot:
        await pilot.press("escape")
    assert app.return_value is None


@pilot_test
async def test_a_restore_that_went_back_draws_each_branch_apart(tmp_path: Path) -> None:
    paths, writer = write_fixed_store(tmp_path / "run", steps=400, keep_open=True)
    assert writer is not None
    restore = {"marker": "restore", "from_step": 400, "to_step": 300}
    retrained = metric_batches(301, 500, 1000)
    for batch in retrained:  # the new branch goes elsewhere: a lower lr, a higher loss
        batch.columns["loss"] = [x * 1.5 for x in batch.columns["loss"]]
        for name in ("lr/0", "lr/1"):
            batch.columns[name] = [x * 0.5 for x in batch.columns[name]]
    writer.write(
        [
            Event(300, "checkpoint", "restored ck: rewound from step 400 to 300", restore),
            *retrained,
        ]
    )
    app = fixed_app(paths.root)
    async with app.run_test(size=(120, 34)) as pilot:
        await loaded(pilot, 600)
        screen = app.dashboard
        loss = screen.query_one(LossPlot)
        assert loss.view.breaks == (400,)
        # steps 1-300 are shared, 301-400 were left by the rewind, 301-500 is the new branch
        assert [(a, b, left) for a, b, _, left in loss.pieces(0, 600)] == [
            (0, 300, False),
            (300, 400, True),
            (400, 600, False),
        ]
        text = str(loss.render())
        assert text.count("smoothed") == 1  # the legend names the newest branch only
        # the branch left behind is dimmed, on both plots; the newest is not
        for plot in screen.plots:
            assert dimmed(plot) and not dimmed(plot, every=True)
        assert [(m.step, m.kind) for m in screen.markers][-1] == (300, "checkpoint")
        assert "rewound from step 400 to 300" in log_text(screen.query_one(EventLog))
    writer.close()
