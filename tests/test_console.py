"""Plain-text views of a run: the pace and ETA, sparklines, colour rules, and the
headless reporter's lines, read from stores written here step by step."""

from __future__ import annotations

import io
import math
import re
from pathlib import Path
from typing import Any

import pytest

from optitui.console import fmt
from optitui.console.pace import ETA_WINDOW_S, WINDOW_S, Pace, eta, rate_over
from optitui.console.progress import AboveLiveLine, Reporter
from optitui.console.style import use_color
from optitui.store.layout import create_run_dir
from optitui.store.records import (
    Event,
    GroupSnapshot,
    MetricBatch,
    Record,
    StatusUpdate,
    ValRecord,
)
from optitui.store.writer import StoreWriter

T0 = 1_790_000_000.0
ESC = "\x1b"


def test_pace_is_the_dashboards_rate_over_the_steps_wall_times() -> None:
    times = [T0 + i / 10 for i in range(1200)]  # 10 steps/s for two minutes
    times += [T0 + 120 + i / 50 for i in range(1, 501)]  # then 50 steps/s for ten seconds
    p = Pace()
    for start in range(0, len(times), 64):  # as the job flushes them
        p.add(times[start : start + 64])
    n = len(times)
    assert p.rate() == pytest.approx(rate_over(times, n, WINDOW_S), rel=0.02)
    assert p.rate() == pytest.approx(50.0, rel=0.02)
    assert p.rate(ETA_WINDOW_S) == pytest.approx(rate_over(times, n, ETA_WINDOW_S), rel=0.02)
    assert p.rate(ETA_WINDOW_S) == pytest.approx(1000 / 60, rel=0.05)  # 10 s fast, 50 s slow
    assert len(p._times) < 30  # only the last minute is kept
    assert eta(1000, 1600, 10.0) == pytest.approx(60.0)
    assert eta(1000, None, 10.0) is None and eta(1000, 1600, None) is None


def test_pace_counts_steps_trained_across_a_restore_and_waits_for_two() -> None:
    p = Pace()
    p.add([T0])
    assert p.rate() is None  # one step: no rate yet
    p.add([T0 + 1, T0 + 2])  # steps 2 and 3, then restored to step 1: times still advance
    p.add([T0 + 3, T0 + 4])
    assert p.rate() == pytest.approx(1.0)


def test_sparkline_spans_lowest_to_highest_and_marks_gaps() -> None:
    assert fmt.sparkline([3.0, 2.0, 1.0, math.nan, 0.0]) == "█▆▃ ▁"
    assert fmt.sparkline([1.0, 1.0]) == "▅▅"
    assert fmt.sparkline([math.nan]) == ""


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal_and_never_under_no_color(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_color(Tty()) and not use_color(io.StringIO())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())
    monkeypatch.setenv("NO_COLOR", "")  # present but empty: no-color.org says ignore it
    assert use_color(Tty())


# -- the reporter, on a store written as a job would ----------------------------------
GROUPS = [
    {"index": 0, "name": "body", "values": {"lr": 0.05}, "fields": {}},
    {"index": 1, "name": "head", "values": {"lr": 0.01}, "fields": {}},
]


class Job:
    """Writes a run store the way the trainer does, one flush at a time."""

    def __init__(self, tmp_path: Path, max_steps: int | None = 1000) -> None:
        self.paths = create_run_dir(tmp_path, "run", tmp_path / "run")
        self.w = StoreWriter(self.paths, {"max_steps": max_steps, "groups": ["body", "head"]})
        self.w.write([GroupSnapshot(0, GROUPS, time=T0)])
        self.step = 0

    def train(self, n: int, at: float, loss: float = 1.0, state: str = "running") -> None:
        steps = range(self.step + 1, self.step + n + 1)
        self.step += n
        self.w.write(
            [
                MetricBatch(
                    {
                        "step": [float(s) for s in steps],
                        "epoch": [float(s // 100) for s in steps],
                        "time": [at - 1 + (k + 1) / n for k in range(n)],  # spread over 1 s
                        "loss": [loss] * n,
                        "lr/0": [0.05] * n,
                        "lr/1": [0.01] * n,
                    }
                ),
                StatusUpdate(state, self.step, self.step // 100, steps_per_s=10.0, last_record=at),
            ]
        )

    def put(self, *records: Record) -> None:
        self.w.write(list(records))


def reporter(job: Job, out: io.StringIO, clock: list[float], **kw: Any) -> Reporter:
    kw.setdefault("every", 30.0)
    return Reporter(job.paths.root, out, clock=lambda: clock[0], **kw)


def test_progress_lines_come_at_the_interval_with_every_field(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), io.StringIO(), [T0]
    r = reporter(job, out, clock)
    r.poll_once()
    assert out.getvalue() == ""  # nothing trained yet: nothing to say
    for second in range(1, 96):  # 10 steps a second for 95 s, read every second
        clock[0] = T0 + second
        job.train(10, T0 + second, loss=2.0 if second < 60 else 1.0)
        if second == 45:
            job.put(ValRecord(450, 4, 1.5, time=T0 + second))
        r.poll_once()
    lines = out.getvalue().splitlines()
    assert len(lines) == 3  # 30 s, 60 s and 90 s after the first record (at 1 s)
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d progress   step ", x) for x in lines)
    assert "step 310/1,000 (31%)" in lines[0] and "epoch 3" in lines[0]
    assert "loss 2 (smoothed)" in lines[0]
    assert "lr body=0.05 head=0.01" in lines[0]
    assert "10 steps/s" in lines[1] and "ETA 39s" in lines[1]  # 390 steps left at 10/s
    assert "val 1.5 (step 450)" in lines[1]  # new since the last line
    assert "val" not in lines[2]  # not new any more
    assert re.search(r"loss 1\.00\d* \(smoothed\)", lines[2])  # the EMA followed the drop
    assert ESC not in out.getvalue()


def test_events_are_printed_as_they_are_recorded(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), io.StringIO(), [T0]
    r = reporter(job, out, clock, every=0.0)  # no progress lines: events only
    job.train(5, T0)
    job.put(
        Event(5, "command", "set lr=0.1 group=head: applied after step 5", time=T0 + 1),
        Event(5, "command", "scale-lr: rejected: factor must be > 0", time=T0 + 1),
    )
    r.poll_once()
    first = out.getvalue().splitlines()
    assert len(first) == 2
    assert re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d command    step 5  set lr=0\.1", first[0])
    assert first[1].endswith("scale-lr: rejected: factor must be > 0")
    job.put(
        Event(7, "warning", "loss spike at step 7", time=T0 + 2),
        Event(8, "checkpoint", "saved step00000008-manual-ab12 (manual)", time=T0 + 3),
        Event(9, "error", "loss is nan at step 9; training paused\nmore", time=T0 + 4),
        Event(9, "info", "run failed: RuntimeError: boom", time=T0 + 5),
    )
    r.poll_once()
    later = out.getvalue().splitlines()[2:]
    assert [x.split()[2] for x in later] == ["warning", "checkpoint", "error"]
    assert later[2].endswith("training paused")  # one line per event
    r.poll_once()
    assert len(out.getvalue().splitlines()) == 5  # nothing twice


def test_the_last_progress_line_comes_at_the_end(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), io.StringIO(), [T0]
    r = reporter(job, out, clock)
    job.train(40, T0 + 1)
    r.poll_once()
    job.train(10, T0 + 2, state="finished")
    clock[0] = T0 + 2
    r.stop()  # well before 30 s: still one line with the final numbers
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and "step 50/1,000" in lines[0] and "finished" in lines[0]


def test_a_paused_run_says_so_instead_of_a_pace(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), io.StringIO(), [T0]
    r = reporter(job, out, clock, every=10.0)
    job.train(10, T0)
    r.poll_once()
    job.put(StatusUpdate("paused", 10, 0, message="loss is nan at step 10; training paused"))
    clock[0] = T0 + 11
    r.poll_once()
    line = out.getvalue().splitlines()[-1]
    assert "paused (loss is nan at step 10; training paused)" in line
    assert "ETA" not in line and "steps/s" not in line
    assert "lr body=0.05 head=0.01" in line
    halved = [GROUPS[0], {**GROUPS[1], "values": {"lr": 0.005}}]
    job.put(GroupSnapshot(10, halved, time=T0 + 12))  # a command while paused
    clock[0] = T0 + 21
    r.poll_once()
    assert "lr body=0.05 head=0.005" in out.getvalue().splitlines()[-1]  # the lr now
    job.train(10, T0 + 22)
    clock[0] = T0 + 31
    r.poll_once()
    assert "lr body=0.05 head=0.01" in out.getvalue().splitlines()[-1]  # what step 20 used


def test_on_a_terminal_one_line_rewrites_itself(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    job, out, clock = Job(tmp_path), Tty(), [T0]
    r = reporter(job, out, clock, live=True, color=True)
    job.train(10, T0)
    r.poll_once()
    job.train(10, T0 + 1)
    job.put(Event(20, "command", "pause: applied after step 20", time=T0 + 1))
    r.poll_once()
    r.stop()
    text = out.getvalue()
    assert text.count("\r\x1b[2K") >= 3  # drawn, cleared for the event, drawn again
    assert "\n" in text and text.count("\n") == 1  # only the event is a line of its own
    event = text[text.index("\r\x1b[2K", 1) :].split("\n")[0]
    assert "pause: applied after step 20" in event
    assert "\x1b[36m" in text  # the command's colour
    assert text.endswith("\r\x1b[2K")  # cleared at the end for the last line


def test_a_reporter_that_cannot_read_stops_without_stopping_the_job(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), io.StringIO(), [T0]
    r = reporter(job, out, clock, poll=0.01)
    job.train(10, T0)
    job.paths.db.write_bytes(b"not a database at all" * 100)
    r.start()
    r.stop()
    assert r.failed is not None
    assert "optitui: progress lines stopped" in out.getvalue()


def test_the_scripts_own_prints_go_above_the_live_line(tmp_path: Path) -> None:
    job, out, clock = Job(tmp_path), Tty(), [T0]
    r = reporter(job, out, clock, live=True)
    job.train(10, T0)
    r.poll_once()
    assert r.live is not None and r.live.shown
    script = AboveLiveLine(out, r.live)
    script.write("epoch 1 done")  # print() writes the text, then the newline
    r.poll_once()  # a redraw between the two would erase the text
    script.write("\n")
    text = out.getvalue()
    assert text.endswith("\r\x1b[2Kepoch 1 done\n")
    r.poll_once()
    assert out.getvalue().count("step 10/1,000") == 2  # drawn again below the print


def test_the_race_table_keeps_its_val_column_in_line() -> None:
    """A change with ~noise is longer than one without: the val losses still line up."""
    from optitui.console.race_table import table
    from optitui.store.race_results import rank
    from optitui.store.reader import Race

    texts = ["current", "lr*0.5", "optimizer=Adam,lr=1e-3"]
    losses = [[1e-3 + 4e-4 * (i % 3) for i in range(20)] for _ in texts]
    losses[1] = [x + 2.21e-4 for x in losses[1]]  # inside the noise band: ~noise
    losses[2] = [x + 9e-3 for x in losses[2]]
    states = ["done"] * 3
    val: list[float | None] = [0.0807, 0.07801, 0.07457]
    results = rank(texts, losses, losses, states, val, 20)
    config = {"steps": 20, "candidates": texts}
    race = Race("r1", 5, "done", config, {"states": states, "seconds": {}}, results, None, 0.0)
    lines = [ln for ln in table(race).splitlines() if re.match(r" +\d +\d  ", ln)]
    assert len(lines) == 3 and sum("~noise" in ln for ln in lines) == 1
    assert len({ln.index(f"{v:.4g}") for ln, v in zip(lines, sorted(val), strict=True)}) == 1
    assert not any(ln != ln.rstrip() for ln in table(race).splitlines())


def test_a_cancelled_race_says_which_candidates_never_ran() -> None:
    from optitui.console.race_table import table
    from optitui.store.race_results import rank
    from optitui.store.reader import Race

    texts = ["current", "lr*0.5", "lr*2"]
    losses: list[list[float]] = [[1.0, 0.9, 0.8], [0.9, 0.85], []]
    states = ["done", "cancelled", "waiting"]
    results = rank(texts, losses, losses, states, [None] * 3, 3)
    config = {"steps": 3, "candidates": texts}
    data = {"states": states, "seconds": {}}
    race = Race("r1", 5, "cancelled", config, data, results, "cancelled in candidate 1", 0.0)
    row = next(ln for ln in table(race).splitlines() if "lr*2" in ln)
    assert "not run" in row and "waiting" not in row
