"""The comparison benchmark's smoke run: every row of its table is still produced.

`python benchmarks/compare.py --quick` measures nothing worth quoting (one round, a few
hundred steps); it runs every code path of the full benchmark so that the harness
cannot rot between full runs. A tool that is not installed (the `bench` extra) must
say so in its row rather than fail.
"""

from __future__ import annotations

import hashlib
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
COMPARE = ROOT / "benchmarks" / "compare.py"
RESULTS = ROOT / "benchmarks" / "RESULTS.md"

VARIANTS = {
    "bare loop": None,
    "optitui headless": None,
    "optitui + dashboard attached": "tmux",
    "optitui --inline": "tmux",
    "TensorBoard SummaryWriter": "tensorboard",
    "trackio": "trackio",
    "wandb (offline)": "wandb",
}


def installed(need: str | None) -> bool:
    if need is None:
        return True
    if need == "tmux":
        return shutil.which("tmux") is not None
    return importlib.util.find_spec(need) is not None


def rows_of(text: str, first_cell: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith(f"| {first_cell} |")]


def digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


@pytest.mark.slow
@pytest.mark.timeout(900)  # a hang guard above the run's own 600 s: minutes under load
def test_quick_run_has_every_row(tmp_path: Path) -> None:
    pytest.importorskip("sklearn", reason="the tiny loop trains on scikit-learn's digits")
    before = digest(RESULTS)
    out = tmp_path / "quick.md"
    proc = subprocess.run(
        [sys.executable, str(COMPARE), "--quick", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a loaded machine takes minutes
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert text.strip() in proc.stdout  # the table goes to stdout too
    assert digest(RESULTS) == before  # the smoke run never overwrites the committed results

    for title in (
        "## 1. Per-step host overhead, tiny step",
        "## 1. Per-step host overhead, heavier step",
        "### 1b. optitui headless against the bare loop, paired in one process",
        "### 1c. every tool's fixed cost per step, paired in one process",
        "### 1d. the probe in your own loop against the bare loop, paired in one process",
        "## 2. Host-device syncs per 1,000 steps",
        "## 3. Dashboard frame cost against history length",
        "## 4. Attach to first full frame",
        "## 5. Command latency",
        "## 6. Checkpoint save",
        "## 7. Your own metrics: 5 tensor scalars per step",
        "## Targets",
    ):
        assert title in text, title

    overhead = text.split("### 1b.")[0]
    for variant, need in VARIANTS.items():
        rows = rows_of(overhead, variant)
        assert len(rows) == 2, (variant, rows)  # tiny and heavier loop
        for row in rows:
            if installed(need):
                assert "skipped" not in row and "failed" not in row, row
                float(row.split("|")[2])  # us/step: a number
            else:
                assert "skipped" in row and str(need) in row, row

    paired = text.split("### 1c.")[1].split("### 1d.")[0]  # every in-process tool, near-empty step
    for tool in ("optitui headless", "TensorBoard SummaryWriter", "trackio", "wandb (offline)"):
        (row,) = rows_of(paired, tool)  # measured, or marked skipped with the reason
        assert ("skipped" in row) != installed(VARIANTS[tool]), row

    # the probe in an own loop on the 0.4-ms step: added wall, CPU and thread CPU, ratios
    probe_sec = text.split("### 1d.")[1].split("## 2.")[0]
    assert "MLP (64-192-192-10), batch 64" in probe_sec
    (row,) = rows_of(probe_sec, "optitui probe (own loop)")
    cells = [c.strip() for c in row.split("|")[2:-1]]
    assert len(cells) == 5, row
    for cell in cells:
        float(cell.split()[0])  # each a measured number
    (target,) = [r for r in text.splitlines() if r.startswith("| probe/bare <= 1.02 on a 0.4 ms")]
    assert float(target.split("|")[2].split()[0]) > 0, target

    syncs = {
        "optitui headless": None,
        "TensorBoard SummaryWriter": "tensorboard",
        "trackio": "trackio",
        "wandb (offline)": "wandb",
    }
    section = text.split("## 2.")[1].split("## 3.")[0]
    for tool, need in syncs.items():
        (row,) = rows_of(section, tool)
        assert ("skipped" in row) != installed(need), row
        assert "failed" not in row, row

    # each tool with 5 tensor scalars against itself with the loss only, and its syncs
    own = text.split("## 7.")[1].split("## Targets")[0]
    for tool, need in {"optitui probe.step": None, **syncs}.items():
        if tool == "optitui headless":
            continue
        (row,) = rows_of(own, tool)
        cells = [c.strip() for c in row.split("|")[2:-1]]
        if installed(need):
            assert len(cells) == 9 and "failed" not in row, row
            for cell in cells[:4]:  # the 5 scalars' added wall and CPU: blocks, runs
                float(cell.split()[0])
            float(cells[6]), float(cells[7]), float(cells[8])  # syncs: loss only, 5, extra
        else:
            assert "skipped" in row and str(need) in row, row
    (target,) = [r for r in text.splitlines() if r.startswith("| optitui: <= 5 us/step added")]
    assert "extra syncs per 1,000: +0.0" in target, target

    # every target has a result, and each one not met points to its reason under the table
    targets = text.split("## Targets")[1]
    rows = [r for r in targets.splitlines() if r.startswith("| ") and "---" not in r][1:]
    for start in (
        "| a frame at 160x48 <= 12 ms of CPU",
        "| attach to the first full frame at",
        "| the attached dashboard uses <= 5% of a core",
        "| the whole run within 3% of the paired estimate",
    ):
        assert sum(r.startswith(start) for r in rows) == 1, start
    for row in rows:
        target, measured, result, ref = (c.strip() for c in row.strip().strip("|").split("|"))
        assert target and measured and result, row
        if result == "met":
            assert ref == "", row
        else:
            assert ref.startswith("("), row
            (reason,) = [r for r in targets.splitlines() if r.startswith(ref + " ")]
            assert len(reason) > 40, reason

    for first in ("1,000", "10,000"):  # frame cost at each history length
        assert rows_of(text, first), first
    for measure in (
        "headless app in a new process, wall s",
        "viewer RSS holding 10,000 steps, MB",
        "optitui: on the training thread",
        "optitui: total, until on disk (`saver.wait()`)",
        "`torch.save` on the training thread",
    ):
        if "RSS" in measure and not installed("tmux"):
            continue
        assert rows_of(text, measure), measure
    for step in ("1 ms", "100 ms"):  # command latency at both step times
        (row,) = rows_of(text, step)
        assert row.count("/") >= 3, row


def test_metrics_screen_frame_benchmark_quick_run() -> None:
    """`tui_metrics_frames.py --quick` draws the nine charts at both sizes and says so."""
    script = ROOT / "benchmarks" / "tui_metrics_frames.py"
    out = subprocess.run(
        [sys.executable, str(script), "--quick", "--frames", "1"],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
        check=True,
    ).stdout
    for steps in ("1,000", "10,000"):
        [line] = [row for row in out.splitlines() if row.strip().startswith(f"{steps} steps:")]
        assert "9 charts, median" in line, line


@pytest.mark.parametrize("control", [False, True])
def test_metrics_blocks_benchmark_gives_the_added_time_and_its_share(control: bool) -> None:
    """`metrics_blocks.py` measures pairs of blocks and prints the step without the
    scalars, then wall and CPU added, each with its interval and share of the step."""
    script = ROOT / "benchmarks" / "metrics_blocks.py"
    flags = ["--pairs", "3", "--block", "8"] + (["--control"] if control else [])
    out = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
        check=True,
    ).stdout
    head, step, wall, cpu = out.splitlines()
    assert head.startswith("control" if control else "5 tensor scalars: 3 pairs of 8-step")
    assert float(step.split(":")[1].split()[0]) > 0
    for line, key in ((wall, "wall"), (cpu, "cpu")):
        assert line.strip().startswith(f"added {key}") and "us/step [95% " in line, line
        assert line.endswith("of the step"), line


def test_metrics_blocks_benchmark_measures_the_floor_beside_optitui() -> None:
    """``--floor`` measures, beside optitui, a logger that only holds each step's tensors
    and reads them every 64 steps: each gets its own step and added time."""
    script = ROOT / "benchmarks" / "metrics_blocks.py"
    flags = ["--pairs", "8", "--block", "8", "--floor"]
    out = subprocess.run(
        [sys.executable, str(script), *flags],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
        check=True,
    ).stdout
    head, *rest = out.splitlines()
    assert head.startswith("5 tensor scalars: 8 pairs of 8-step"), head
    assert len(rest) == 8, out
    halves = (rest[:4], rest[4:])
    for name, (tool, step, wall, cpu) in zip(("optitui", "floor"), halves, strict=True):
        assert tool.startswith(name) and tool.endswith(":"), tool
        assert float(step.split(":")[1].split()[0]) > 0, step
        assert wall.strip().startswith("added wall") and cpu.strip().startswith("added cpu")


@pytest.mark.slow
def test_before_rows_come_from_the_other_checkout(tmp_path: Path) -> None:
    """``--before CHECKOUT`` measures that checkout's checkpoint writer in the same run
    (here this checkout stands in for it) and names its revision."""
    out = tmp_path / "before.md"
    proc = subprocess.run(
        [
            sys.executable,
            str(COMPARE),
            "--quick",
            "--sections",
            "checkpoint",
            "--before",
            str(ROOT),
            "--out",
            str(out),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,  # a hang guard: a loaded machine takes minutes
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    text = out.read_text()
    assert f"(`--before {ROOT}`)" in text
    (row,) = rows_of(text, "before: tiny-step time while the write runs / before it")
    assert row.split("|")[2].strip().endswith("x")
    (target,) = [r for r in text.splitlines() if r.startswith("| a checkpoint write slows")]
    assert "(before: " in target


def test_trainer_parts_quick_run_splits_the_added_time() -> None:
    """`trainer_parts.py --quick` gives the trainer's added time per step and its parts
    (health taken out, the flush timed, the rest), which add up to it, then the writer
    thread's share and the collector's time."""
    pytest.importorskip("sklearn", reason="the tiny loop trains on scikit-learn's digits")
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "trainer_parts.py"), "--quick"],
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard
        check=True,
    ).stdout
    lines = [line.strip() for line in out.splitlines()]

    def us(prefix: str) -> float:
        [line] = [x for x in lines if x.startswith(prefix)]
        return float(line.split(": ")[1].split()[0])

    added = us("added by the trainer")
    parts = [
        us("optimizer health every 16 steps"),
        us("the flush every 64 steps, health off"),
        us("the step's own bookkeeping (the rest)"),
    ]
    assert parts[1] > 0  # a flush takes time
    assert sum(parts) == pytest.approx(added, abs=0.2)  # each printed to 0.1
    us("the writer thread's share (records dropped)")
    assert us("garbage collection in the trainer's chunks") >= 0
