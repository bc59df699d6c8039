"""`optitui run` without a terminal (nohup, sbatch, CI): it trains headless, logs
progress and every event with the time, exits when the job ends, and writes no
escape codes; on a terminal, --headless keeps one live status line instead."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

from conftest import TINY_SCRIPT, wait_for, write_script

from optitui.launch import JobOptions, child_argv
from optitui.store.reader import RunReader

#: the tiny job at a few hundred steps a second, with a validation every 100 steps
SLOW_SCRIPT = TINY_SCRIPT.replace(
    "import optitui\n",
    "import optitui\nimport time\n\n"
    "def slow_mse(out, y):\n    time.sleep(0.002)\n    return nn.functional.mse_loss(out, y)\n",
).replace(
    "loss_fn=nn.functional.mse_loss, STEP_DELAY",
    "loss_fn=slow_mse, val_data=DataLoader(TensorDataset(x, y), batch_size=128), val_every=100",
)
OPTITUI = (sys.executable, "-m", "optitui")
STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d"


def optitui(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPTITUI, *args],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


def start_without_terminal(
    script: Path, run_dir: Path, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """As `nohup optitui run SCRIPT > log 2>&1 < /dev/null &` would start it."""
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "optitui",
                "run",
                str(script),
                "--run-dir",
                str(run_dir),
                *extra,
            ],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_without_a_terminal_run_trains_headless_logs_progress_and_exits(tmp_path: Path) -> None:
    script = write_script(tmp_path, SLOW_SCRIPT)
    run_dir, log = tmp_path / "runs" / "nohup", tmp_path / "train.log"
    proc = start_without_terminal(script, run_dir, log, "--max-steps", "800", "--log-every", "1")
    try:
        wait_for(lambda: (run_dir / "store.sqlite").exists(), 60, "the store")
        with RunReader(run_dir) as reader:
            wait_for(lambda: reader.status().step >= 1, 60, "training")
        # steered while paused, so that every answer comes before the run ends
        assert optitui("send", str(run_dir), "pause").returncode == 0
        assert optitui("send", str(run_dir), "scale-lr", "0.5", "--group", "head").returncode == 0
        assert optitui("send", str(run_dir), "restore", "no-such-checkpoint").returncode == 1
        assert optitui("send", str(run_dir), "save").returncode == 0
        paused = re.compile(STAMP + " progress .*  paused")
        wait_for(lambda: len(paused.findall(log.read_text())) >= 2, 30, "two lines while paused")
        assert optitui("send", str(run_dir), "resume").returncode == 0
        assert proc.wait(60) == 0  # it ends with the job: no dashboard waits for a key
    finally:
        if proc.poll() is None:
            proc.kill()
    text = log.read_text()
    assert "\x1b" not in text  # not one escape code in the log
    lines = text.splitlines()
    assert lines[0] == (
        "optitui: no terminal: running headless: training on cpu; "
        f"optitui attach {run_dir} to watch"
    )
    assert lines[-1] == f"optitui: finished at step 800; run directory {run_dir}"
    # every command's answer, as it happened, with the time
    events = [x for x in lines if re.match(STAMP + " (command|checkpoint) ", x)]
    assert any("pause" in x and "applied" in x for x in events)
    assert any("scale-lr 0.5" in x and "applied" in x for x in events)
    assert any("restore" in x and "rejected" in x and "no-such-checkpoint" in x for x in events)
    assert any("saved" in x and "(manual)" in x for x in events)
    assert any("resume" in x and "applied" in x for x in events)
    # progress lines at the interval, with every field
    progress = [x for x in lines if re.match(STAMP + " progress ", x)]
    times = [datetime.strptime(x[:19], "%Y-%m-%d %H:%M:%S") for x in progress]
    span = (times[-1] - times[0]).total_seconds()
    assert len(progress) >= 3 and span - 1 <= len(progress) - 1 <= span + 2
    running = [x for x in progress if "steps/s" in x]
    assert running, progress
    for x in running:
        assert re.search(r"step [\d,]+/800 \(\d+%\)  epoch \d+  loss \S+ \(smoothed\)", x), x
        assert re.search(r"lr body=0\.05 head=0\.0(1|05)  [\d.]+ steps/s  ETA \d", x), x
    assert any(re.search(r"val \S+ \(step \d+\)", x) for x in progress)
    assert "finished" in progress[-1] and "step 800/800" in progress[-1]


def test_quiet_prints_the_first_and_the_last_line_only(tmp_path: Path, tiny_script: Path) -> None:
    run_dir, log = tmp_path / "runs" / "quiet", tmp_path / "train.log"
    proc = start_without_terminal(tiny_script, run_dir, log, "--max-steps", "30", "--quiet")
    assert proc.wait(60) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("optitui: no terminal: running headless")
    assert lines[1] == f"optitui: finished at step 30; run directory {run_dir}"


def test_the_dashboards_job_leaves_a_metrics_warning_to_the_dashboard(tmp_path: Path) -> None:
    """Started as the dashboard starts its job, a bad metric's warning is the run's event
    only: the job's output.log keeps to its first and last line, so the dashboard does not
    show the warning a second time (as captured output)."""
    step_fn = (
        'step_fn=lambda m, b: {"loss": nn.functional.mse_loss(m(b[0]), b[1]), "vec": torch.ones(3)}'
    )
    script = write_script(
        tmp_path,
        TINY_SCRIPT.replace(", STEP_DELAY", "").replace("loss_fn=nn.functional.mse_loss", step_fn),
    )
    run_dir, log = tmp_path / "runs" / "quiet", tmp_path / "train.log"
    child = child_argv(JobOptions(script), run_dir)
    shown = [a for a in child if a in ("--quiet", "--events-shown")]
    assert shown == ["--quiet", "--events-shown"]
    proc = start_without_terminal(script, run_dir, log, "--max-steps", "30", *shown)
    assert proc.wait(60) == 0
    lines = log.read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("optitui: finished at step 30"), lines
    with RunReader(run_dir) as r:
        said = [e.message for e in r.events() if e.kind == "warning"]
    assert sum(m.startswith("metric 'vec' skipped") for m in said) == 1, said


def test_attach_without_a_terminal_refuses_with_the_hint(tmp_path: Path) -> None:
    out = optitui("attach", str(tmp_path / "some-run"))
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith("optitui: no terminal: the dashboard needs one")
    assert f"optitui status {tmp_path / 'some-run'}" in out.stderr
    assert len(out.stderr.splitlines()) == 1 and "\x1b" not in out.stderr


def test_headless_on_a_terminal_keeps_one_status_line(tmp_path: Path) -> None:
    script = write_script(tmp_path, SLOW_SCRIPT)
    run_dir = tmp_path / "runs" / "tty"
    master, slave = pty.openpty()
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}
    argv = [*OPTITUI, "run", str(script), "--headless", "--run-dir", str(run_dir)]
    proc = subprocess.Popen(
        [*argv, "--max-steps", "500"],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
    )
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            out += chunk
        elif proc.poll() is not None:
            break
    os.close(master)
    assert proc.wait(10) == 0
    text = out.decode()
    assert text.count("\r\x1b[2K") >= 2  # the status line was drawn and rewritten
    assert re.search(r"step [\d,]+/500 \(\d+%\)  ·  epoch \d+  ·  loss ", text)
    newlines = [x for x in text.replace("\r\n", "\n").split("\n") if x.strip()]
    assert newlines[0].startswith("optitui: training on cpu")  # by choice: no "no terminal"
    assert newlines[-1].endswith(f"optitui: finished at step 500; run directory {run_dir}")
    assert len(newlines) <= 2 + 5  # the status line rewrote itself (plus the saves of best)
    assert not re.search("\x1b\\[[0-9;]*m", text)  # NO_COLOR: no colour, only the line moves


def test_the_dashboards_job_keeps_its_output_log_to_its_own_lines(tmp_path: Path) -> None:
    argv = child_argv(JobOptions(tmp_path / "train.py"), tmp_path / "run")
    assert "--quiet" in argv and "--headless" in argv


def test_every_rank_under_torchrun_gets_the_log_options() -> None:
    from optitui.cli import build_parser, torchrun_argv

    args = build_parser().parse_args(
        ["run", "t.py", "--nproc-per-node", "2", "--log-every", "5", "--quiet", "--headless"]
    )
    args.script_args = ()
    argv = torchrun_argv(args)
    assert argv[argv.index("--log-every") + 1] == "5.0" and "--quiet" in argv


OWN_LOOP = """
import time
import torch
from torch import nn

model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(64, 4)
y = x.sum(1, keepdim=True)
for step in range(300):
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad()
    loss.backward()
    opt.step()
    time.sleep(0.004)
print("the script's own end")
"""


def test_a_script_without_setup_logs_its_progress_too(tmp_path: Path) -> None:
    script = write_script(tmp_path, OWN_LOOP, "own.py")
    run_dir, log = tmp_path / "runs" / "own", tmp_path / "own.log"
    proc = start_without_terminal(script, run_dir, log, "--log-every", "0.5")
    assert proc.wait(60) == 0
    text = log.read_text()
    lines = text.splitlines()
    assert "\x1b" not in text
    assert lines[0].startswith("optitui: no terminal: running headless: ")
    assert lines[0].endswith(f"optitui attach {run_dir} to watch")
    assert "the script's own end" in lines
    progress = [x for x in lines if re.match(STAMP + " progress   step ", x)]
    assert len(progress) >= 2 and "lr 0=0.05" in progress[0]
    assert "epoch" not in progress[0]  # zero-code mode cannot see the script's epochs
    assert lines[-1] == f"optitui: finished at step 300; run directory {run_dir}"


WARNED_SETUP = TINY_SCRIPT.replace(
    "loss_fn=nn.functional.mse_loss, STEP_DELAY", "step_fn=step_fn, max_steps=40"
).replace(
    "def setup(device):",
    "def step_fn(model, batch):\n"
    "    x, y = batch\n"
    "    return {'loss': nn.functional.mse_loss(model(x), y), 'weird': 'oops'}\n\n"
    "def setup(device):",
)
WARNED_LOOP = """
import torch
import optitui
from torch import nn

model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
x = torch.randn(64, 4)
with optitui.watch(opt) as probe:
    for step in range(40):
        loss = nn.functional.mse_loss(model(x), x.sum(1, keepdim=True))
        opt.zero_grad()
        loss.backward()
        opt.step()
        probe.step(loss, metrics={"weird": "oops"})
"""


def test_a_metric_warning_is_printed_once_headless_and_once_quiet(tmp_path: Path) -> None:
    """The headless reporter prints the run's warnings: the trainer then does not print
    them too (a setup() job and a watch() loop alike); with --quiet there is no reporter
    and the trainer's own line is the one."""
    for name, body in (("setup", WARNED_SETUP), ("loop", WARNED_LOOP)):
        script = write_script(tmp_path, body, f"{name}.py")
        for quiet in ((), ("--quiet",)):
            run_dir, log = tmp_path / "runs" / f"{name}{len(quiet)}", tmp_path / f"{name}.log"
            proc = start_without_terminal(script, run_dir, log, *quiet)
            assert proc.wait(60) == 0, log.read_text()
            said = [x for x in log.read_text().splitlines() if "metric 'weird'" in x]
            assert len(said) == 1, (name, quiet, said)
            assert "a str is not one real number" in said[0]
