"""The viewer's data layer, without a screen: pyramids, EMA, decimation, tails, launching."""

from __future__ import annotations

import math
import subprocess
import sys
from array import array
from itertools import pairwise
from pathlib import Path
from unittest.mock import patch

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tui_support import FIXED_NOW, write_fixed_store

from optitui.launch import JobOptions, LaunchError, child_argv, start_job, store_ready
from optitui.store.layout import RunPaths
from optitui.store.output_tail import OutputTail, clean
from optitui.store.reader import EventRow
from optitui.tui import decimate, fmt, pyramid
from optitui.tui.devices import parse_nvidia_smi
from optitui.tui.feed import StoreFeed
from optitui.tui.history import Ema, History, find_breaks
from optitui.tui.markers import (
    CATEGORIES,
    PROBLEM,
    RACE,
    RESTORE,
    SAVED,
    Marker,
    in_view,
    marker_for,
)
from optitui.tui.pyramid import Pyramid

floats = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.just(math.nan),
    st.just(math.inf),
)


def brute(values: list[float], s: int, e: int) -> tuple[float, float]:
    seg = [v for v in values[s:e] if v == v]
    return (min(seg), max(seg)) if seg else (math.inf, -math.inf)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(floats, min_size=0, max_size=5000),
    chunks=st.lists(st.integers(1, 2000), min_size=1, max_size=8),
    data=st.data(),
)
def test_pyramid_minmax_matches_brute_force(
    values: list[float], chunks: list[int], data: st.DataObject
) -> None:
    raw: array[float] = array("d")
    pyr = Pyramid()
    i = 0
    while i < len(values):  # grown in uneven chunks, as a live store grows
        n = chunks[i % len(chunks)]
        raw.extend(values[i : i + n])
        pyr.update(raw, len(raw))
        i += n
    view = pyr.view(raw, len(raw))
    for _ in range(10):
        s = data.draw(st.integers(0, len(values)))
        e = data.draw(st.integers(s, len(values)))
        assert view.minmax(s, e) == brute(values, s, e)


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(floats, min_size=0, max_size=5000),
    chunks=st.lists(st.integers(1, 3000), min_size=1, max_size=4),
)
@example(values=[math.nan] * 130 + [2.0, math.inf, -math.inf] * 70, chunks=[500])
@example(values=[math.nan, -math.inf] * 64 + [math.inf] * 64 + [-0.0, 0.0] * 32, chunks=[64])
def test_a_long_first_pass_through_numpy_builds_the_python_pyramid(
    values: list[float], chunks: list[int]
) -> None:
    """Levels built by numpy (a pass of NUMPY_FROM values or more) hold the same mins and
    maxs as the Python pass: NaN never wins, infinities are kept, a NaN-only block is
    +inf / -inf."""
    raw: array[float] = array("d")
    bulk, python = Pyramid(), Pyramid()
    i = 0
    while i < len(values):
        n = chunks[i % len(chunks)]
        raw.extend(values[i : i + n])
        with patch.object(pyramid, "NUMPY_FROM", 64):
            bulk.update(raw, len(raw))
        with patch.object(pyramid, "numpy", lambda: None):
            python.update(raw, len(raw))
        i += n
    assert (bulk.mins, bulk.maxs) == (python.mins, python.maxs)
    raw.extend([1.0])  # numpy's view of the column is gone: it can grow again


def test_a_short_run_never_imports_numpy() -> None:
    """Importing numpy costs 0.1-0.2 s of an attach: only a long first pass pays it."""
    code = (
        "import sys\n"
        "from array import array\n"
        "from optitui.tui.history import History, Ema\n"
        "from optitui.tui.pyramid import Pyramid\n"
        "raw = array('d', (1.0 / (i + 1) for i in range(30_000)))\n"
        "p = Pyramid()\n"
        "for n in range(0, 30_001, 1000): p.update(raw, n)\n"
        "e = Ema(0.98); e.extend(raw, len(raw)); e.view(raw, len(raw)).at(29_999)\n"
        "assert 'numpy' not in sys.modules, 'numpy imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_pyramid_constant_run_and_a_frozen_view() -> None:
    raw = array("d", [0.1]) * 10_000
    pyr = Pyramid()
    pyr.update(raw, len(raw))
    view = pyr.view(raw, len(raw))
    assert view.minmax(0, 10_000) == (0.1, 0.1)
    raw.extend([5.0] * 100)  # growth after the view was taken is not seen by it
    pyr.update(raw, len(raw))
    assert view.minmax(0, 10_100) == (0.1, 0.1)
    assert pyr.view(raw, len(raw)).minmax(0, 10_100) == (0.1, 5.0)


@settings(max_examples=60, deadline=None)
@given(st.lists(floats, min_size=1, max_size=3000), st.floats(0.0, 0.999), st.data())
def test_ema_is_the_bias_corrected_average(
    values: list[float], beta: float, data: st.DataObject
) -> None:
    ema = Ema(beta)
    src: array[float] = array("d")
    half = data.draw(st.integers(0, len(values)))
    src.extend(values[:half])
    ema.extend(src, len(src))  # in two pieces, like live data
    src.extend(values[half:])
    ema.extend(src, len(src))
    view = ema.view(src, len(src))
    m = w = 0.0
    want = []
    for x in values:
        if math.isfinite(x):
            m = beta * m + (1 - beta) * x
            w = beta * w + (1 - beta)
        want.append(m / w if w > 0 else math.nan)
    for i in {*data.draw(st.lists(st.integers(0, len(values) - 1), max_size=20)), len(values) - 1}:
        got = view.at(i)
        if math.isnan(want[i]):
            assert math.isnan(got)
        else:
            assert got == pytest.approx(want[i], rel=1e-9, abs=1e-9)


def test_decimation_is_bounded_by_the_plot_width() -> None:
    h = History()
    for n in (1_000, 100_000):
        raw = array("d", (math.sin(i * 0.01) + 2 for i in range(n)))
        pyr = Pyramid()
        pyr.update(raw, n)
        steps = array("d", range(1, n + 1))
        pts = decimate.minmax(steps, pyr.view(raw, n), 0, n, 100)
        assert 100 <= len(pts) <= 200
        assert min(pts.ys) == pytest.approx(1.0, abs=1e-3) and max(pts.ys) == pytest.approx(
            3.0, abs=1e-3
        )
        assert pts.xs[-1] == n
        smooth = decimate.last(steps, raw.__getitem__, n - 500, n, 100)
        assert len(smooth) == 100 and smooth.xs[-1] == n
    assert h.view().length == 0


def test_log_axis_drops_what_it_cannot_show() -> None:
    raw = array("d", [1.0, -1.0, 0.0, 2.0, math.nan, 3.0])
    pyr = Pyramid()
    pyr.update(raw, 6)
    pts = decimate.minmax(array("d", range(6)), pyr.view(raw, 6), 0, 6, 10, positive=True)
    assert pts.ys == [1.0, 2.0, 3.0]


def test_history_reads_incrementally(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    feed = StoreFeed(paths.root, clock=lambda: FIXED_NOW)
    first = feed.poll()
    assert first.first and first.grew and first.view.length == 600
    assert first.view.val_length == 6 and [i for i, _ in first.view.lrs] == [0, 1]
    assert first.groups is not None and first.meta is not None and len(first.events) == 2
    assert first.output == ("optitui: training on cpu", "epoch 5: accuracy 0.93")
    again = feed.poll()
    assert not again.first and not again.grew and again.groups is None and again.meta is None
    assert again.events == () and again.output == () and again.status.state == "running"
    feed.close()


def test_output_tail(tmp_path: Path) -> None:
    log = tmp_path / "out.log"
    tail = OutputTail(log, start_bytes=20)
    assert tail.read() == []
    log.write_bytes(b"".join(f"line {i}\n".encode() for i in range(10)))
    assert tail.read() == ["line 8", "line 9"]  # a late viewer starts near the end
    with open(log, "ab") as f:
        f.write(b"no newline yet")
    assert tail.read() == []
    with open(log, "ab") as f:
        f.write(b"\n\x1b[31mred\x1b[0m\n10%\r55%\r100%\n")
    assert tail.read() == ["no newline yet", "red", "100%"]
    log.write_bytes(b"restarted\n")  # truncated: start over
    assert tail.read() == ["restarted"]
    assert clean("a\tb\x07c") == "a   bc"


def test_markers() -> None:
    def ev(kind: str, data: dict[str, object] | None, step: int = 5) -> EventRow:
        return EventRow(1, 0.0, step, kind, "m", data)

    assert marker_for(ev("command", {"kind": "set", "args": {}})) == Marker(5, "command", "m")
    assert marker_for(ev("command", {"kind": "pause", "args": {}})) is None
    # a restore or a range test is drawn by its own event, a save is routine
    for kind in ("save", "restore", "lr-find", "lr-find-cancel"):
        assert marker_for(ev("command", {"kind": kind, "args": {}})) is None, kind
    assert marker_for(ev("command", {"kind": "lr-find-apply", "args": {}})) is not None
    restore = marker_for(ev("checkpoint", {"marker": "restore"}))
    assert restore is not None and restore.category is RESTORE
    oom = marker_for(ev("error", {"marker": "oom"}))
    assert oom is not None and oom.category is PROBLEM
    saved = marker_for(ev("checkpoint", {"marker": "save"}))
    assert saved is not None and saved.category is SAVED
    # one glyph and one colour per category, none the colour of a loss series
    assert len({c.glyph for c in CATEGORIES}) == len({c.rgb for c in CATEGORIES}) == 6
    # where a race ran: its own marker, and its command draws none
    raced = marker_for(ev("race", {"marker": "race", "id": "r1"}))
    assert raced is not None and raced.category is RACE
    for kind in ("race", "race-cancel"):
        assert marker_for(ev("command", {"kind": kind, "args": {}})) is None, kind
    assert marker_for(ev("command", {"kind": "race-apply", "args": {}})) is not None
    assert marker_for(ev("command", None)) is None  # a rejection changed nothing
    assert marker_for(ev("checkpoint", None)) == Marker(5, "checkpoint", "m")
    assert marker_for(ev("info", {"marker": "range test"})) == Marker(5, "info", "range test")
    assert marker_for(ev("warning", None)) is None
    ms = [Marker(s, "command", "") for s in (1, 2, 3, 50, 200)]
    assert [m.step for m in in_view(ms, 0, 100, 10)] == [3, 50]
    # in one column a problem wins over a later change
    ms = [Marker(1, "warning", "spike"), Marker(2, "command", "")]
    assert [m.label for m in in_view(ms, 0, 100, 10)] == ["spike"]


def test_formats() -> None:
    assert [fmt.count(x) for x in (0, 999, 1000, 16576, 2_500_000)] == [
        "0",
        "999",
        "1k",
        "16.6k",
        "2.5M",
    ]
    assert [fmt.duration(s) for s in (0, 59, 252, 11100, 180000)] == [
        "0s",
        "59s",
        "4m12s",
        "3h05m",
        "2d02h",
    ]
    assert fmt.nbytes(3 * 1024**3) == "3.0 GiB" and fmt.nbytes(None) == "-"
    assert fmt.value(True) == "on" and fmt.value([0.9, 0.999]) == "(0.9, 0.999)"
    assert fmt.editable_text([0.9, 0.999]) == "0.9, 0.999" and fmt.editable_text(False) == "false"


def test_nvidia_smi_parsing() -> None:
    out = (
        "0, GPU-aa, NVIDIA A100-SXM4-40GB, 1234, 40960\n"
        "1, GPU-bb, NVIDIA A100-SXM4-40GB, 0, 40960\nbad line\n"
    )
    devices = parse_nvidia_smi(out)
    assert [d.spec for d in devices] == ["cuda:0", "cuda:1"]
    assert [d.uuid for d in devices] == ["GPU-aa", "GPU-bb"]
    assert "1,234 / 40,960 MiB in use (all processes, nvidia-smi)" in devices[0].describe()


def test_the_viewer_never_imports_torch() -> None:
    code = (
        "import sys, optitui.cli, optitui.launch, optitui.tui.app\n"
        "import optitui.tui.screens.device_picker\n"
        "bad = [m for m in sys.modules if m.split('.')[0] == 'torch' or 'trainer' in m]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_child_argv_passes_the_options_on(tmp_path: Path) -> None:
    argv = child_argv(JobOptions(Path("t.py"), "cuda:1", max_steps=5, seed=3), tmp_path)
    assert argv[:3] == [sys.executable, "-m", "optitui"]
    assert argv[3:] == [
        "run",
        "t.py",
        "--headless",
        "--run-dir",
        str(tmp_path),
        "--device",
        "cuda:1",
        "--quiet",  # output.log keeps the script's own lines; the dashboard shows progress
        "--events-shown",  # and the warnings, as the run's events
        "--max-steps",
        "5",
        "--seed",
        "3",
    ]


def test_a_job_that_fails_to_start_shows_its_output(tmp_path: Path) -> None:
    script = tmp_path / "broken.py"
    script.write_text("raise RuntimeError('no data here')\n")
    with pytest.raises(LaunchError) as info:
        start_job(JobOptions(script, root=tmp_path / "runs"), timeout=60)
    msg = str(info.value)
    assert "the job exited with code" in msg and "RuntimeError: no data here" in msg
    [run] = (tmp_path / "runs").iterdir()
    assert oct(run.stat().st_mode & 0o777) == "0o700"
    assert not store_ready(RunPaths(run))


def test_attach_without_a_running_job_says_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optitui.cli import attach, main

    monkeypatch.setattr(attach, "has_terminal", lambda: True)  # pytest's stdout is no terminal
    assert main(["attach", "--root", str(tmp_path)]) == 2
    assert "no running job under" in capsys.readouterr().err
    assert main(["attach", str(tmp_path / "nope")]) == 2
    assert "not a run directory" in capsys.readouterr().err


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 10**7), st.integers(0, 2 * 10**6), st.integers(1, 400))
def test_bucket_edges_cover_the_window_in_order(start: int, count: int, buckets: int) -> None:
    edges = decimate._bounds(start, start + count, buckets)
    assert edges[0] == start and edges[-1] == start + count
    assert all(a < b for a, b in pairwise(edges))
    assert len(edges) - 1 <= buckets


def test_plot_text_matches_plotext_ansi_output() -> None:
    from rich.console import Console
    from rich.text import Text
    from textual_plotext.plot import Plot

    from optitui.tui.plot_text import figure_text

    def figure() -> Plot:
        p = Plot()
        xs = list(range(1, 300))
        p.plot(
            xs,
            [2 / math.sqrt(i) + (i * 7919 % 100) / 1000 for i in xs],
            marker="braille",
            color="gray",
            label="loss",
        )
        p.plot(xs, [2 / math.sqrt(i) for i in xs], marker="braille", color="cyan", label="smooth")
        p.vline(150, "orange")
        p.yscale("log")
        p.title("loss")
        p.plotsize(90, 25)
        p._set_size(90, 25)
        p.theme("pro")
        return p

    ansi = Text.from_ansi(figure().build())
    direct = figure_text(figure())
    assert ansi.plain.rstrip("\n") == direct.plain
    console = Console()
    for i in range(0, len(direct.plain), 3):
        assert ansi.get_style_at_offset(console, i) == direct.get_style_at_offset(console, i), i


def test_flat_runs_keep_the_line_and_drop_the_middle() -> None:
    pts = decimate.Points([1, 2, 3, 4, 5, 6, 7], [1.0, 1.0, 1.0, 2.0, 2.0, 2.0, 2.0])
    joined = pts.flat_runs_joined()
    assert joined.xs == [1, 3, 4, 7] and joined.ys == [1.0, 1.0, 2.0, 2.0]
    short = decimate.Points([1, 2], [3.0, 3.0])
    assert short.flat_runs_joined() is short


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(1, 400)), min_size=1, max_size=6))
def test_rewinds_are_found_where_the_step_goes_back(branches: list[tuple[int, int]]) -> None:
    steps: array[float] = array("d")
    for back, length in branches:  # each branch starts at or before the last step
        first = max(1.0, steps[-1] - back) if steps else 1.0
        steps.extend(first + i for i in range(length))
    brute = [i for i in range(1, len(steps)) if steps[i] <= steps[i - 1]]
    assert find_breaks(steps, 0, len(steps)) == brute
    half = len(steps) // 2  # found incrementally too, as rows arrive
    assert find_breaks(steps, 0, half) + find_breaks(steps, half, len(steps)) == brute


def test_rows_left_by_a_rewind_are_marked_abandoned() -> None:
    # 1..10, rewound to 5 and trained to 12, then rewound to 3 and trained to 6
    steps = array("d", [*range(1, 11), *range(5, 13), *range(3, 7)])
    pieces = decimate.segments(0, len(steps), tuple(find_breaks(steps, 0, len(steps))))
    assert pieces == [(0, 10), (10, 18), (18, 22)]
    assert decimate.abandoned(steps, pieces) == [
        (0, 2, False),  # steps 1-2: shared by every branch
        (2, 10, True),  # steps 3-10 of the first branch: left
        (10, 18, True),  # the whole second branch: left by the second rewind
        (18, 22, False),  # the branch training now
    ]
    assert decimate.abandoned(steps, [(0, 10)]) == [(0, 10, False)]
