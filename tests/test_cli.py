"""`optitui send`, `export` and `ls` against a real job in another process."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import start_headless, wait_for

from optitui.store.reader import RunReader
from optitui.store.words import parse_send


def optitui(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "optitui", *args], capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def live_run(tmp_path: Path, tiny_script: Path) -> Iterator[Path]:
    run_dir = tmp_path / "runs" / "live"
    proc, _ = start_headless(tiny_script, run_dir, min_step=11)
    try:
        yield run_dir
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


def test_send_round_trip(live_run: Path) -> None:
    ok = optitui("send", str(live_run), "set", "lr=0.003", "momentum=0.5", "--group", "head")
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("applied after step ")
    step = int(ok.stdout.split()[3].rstrip(":"))
    with RunReader(live_run) as r:
        at, groups = r.groups()
        assert at == step
        assert groups[1]["values"]["lr"] == 0.003 and groups[1]["values"]["momentum"] == 0.5
        assert groups[0]["values"]["lr"] == 0.05

    bad = optitui("send", str(live_run), "set", "lr=-1")
    assert bad.returncode == 1
    assert "rejected at step" in bad.stderr and "lr: got -1" in bad.stderr

    by_name = optitui("send", "live", "pause", "--root", str(live_run.parent))
    assert by_name.returncode == 0, by_name.stderr

    usage = optitui("send", str(live_run), "set", "lr")
    assert usage.returncode == 2 and "expected FIELD=VALUE" in usage.stderr
    unknown = optitui("send", str(live_run), "launch")
    assert unknown.returncode == 2 and "unknown command 'launch'" in unknown.stderr

    stop = optitui("send", str(live_run), "stop")
    assert stop.returncode == 0
    with RunReader(live_run) as r:
        wait_for(lambda: r.status().state == "stopped", 30, "stopped")
    gone = optitui("send", str(live_run), "resume", "--timeout", "2")
    assert gone.returncode == 3 and "the run is stopped" in gone.stderr


def test_export_help_names_every_kind_of_column(capsys: pytest.CaptureFixture[str]) -> None:
    """The help lists what the README's export section lists: the health and skip columns,
    the user's own metrics, and how NaN and infinity are written."""
    from optitui.cli import main

    with pytest.raises(SystemExit):
        main(["export", "--help"])
    said = " ".join(capsys.readouterr().out.split())
    for part in ("skipped", "update_ratio/<group>", "your own metrics", "Infinity", "val_loss"):
        assert part in said, part


def test_export_round_trip(live_run: Path, tmp_path: Path) -> None:
    assert optitui("send", str(live_run), "scale-lr", "0.5").returncode == 0
    assert optitui("send", str(live_run), "stop").returncode == 0
    with RunReader(live_run) as r:
        wait_for(lambda: r.status().state == "stopped", 30, "stopped")
        steps = r.status().step
        loss = r.read_metrics().columns["loss"]
    out = optitui("export", str(live_run), "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert len(rows) == steps
    assert [int(row["step"]) for row in rows] == list(range(1, steps + 1))
    assert {"lr/body", "lr/head", "loss", "epoch", "time", "val_loss"} <= set(rows[0])
    assert float(rows[-1]["loss"]) == loss[-1]
    assert float(rows[0]["lr/body"]) == 0.05 and float(rows[-1]["lr/body"]) == 0.025
    target = tmp_path / "m.jsonl"
    assert optitui("export", str(live_run), "--format", "jsonl", "-o", str(target)).returncode == 0
    lines = [json.loads(x) for x in target.read_text().splitlines()]
    assert len(lines) == steps and lines[-1]["loss"] == loss[-1] and lines[0]["step"] == 1

    ls = optitui("ls", "--root", str(live_run.parent))
    assert ls.returncode == 0
    line = next(x for x in ls.stdout.splitlines() if x.startswith("live"))
    assert line.split()[1:3] == ["stopped", f"{steps:,}"]  # ls writes 1,107


def test_export_of_a_missing_run() -> None:
    out = optitui("export", "/nonexistent/run")
    assert out.returncode == 2 and "not a run directory" in out.stderr


@pytest.mark.parametrize(
    ("words", "expected"),
    [
        (
            ["set", "lr=3e-4", "betas=0.9,0.95"],
            ("set", {"values": {"lr": 3e-4, "betas": (0.9, 0.95)}}),
        ),
        (["set", "nesterov=true"], ("set", {"values": {"nesterov": True}})),
        (["scale-lr", "0.5"], ("scale-lr", {"factor": 0.5})),
        (["step"], ("step", {})),
        (["step", "10"], ("step", {"n": 10})),
        (["pause"], ("pause", {})),
    ],
)
def test_parse_send(words: list[str], expected: tuple[str, dict[str, object]]) -> None:
    assert parse_send(words[0], words[1:], None) == expected


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["set", "lr=abc"], "is not a number"),
        (["scale-lr"], "usage: scale-lr FACTOR"),
        (["step", "x"], "not a whole number"),
        (["pause", "now"], "takes no arguments"),
    ],
)
def test_parse_send_errors(words: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_send(words[0], words[1:], None)


def test_help_and_module_entry() -> None:
    out = optitui("--help")
    assert out.returncode == 0 and "optitui send RUN" in out.stdout


def test_arguments_after_double_dash_reach_the_script(tmp_path: Path) -> None:
    from conftest import write_script

    script = write_script(
        tmp_path,
        """
import sys, torch, optitui
from torch import nn
def setup(device):
    m = nn.Linear(2, 1)
    return optitui.Job(model=m, optimizer=torch.optim.SGD(m.parameters(), lr=0.1),
                       train_data=[(torch.zeros(4, 2), torch.zeros(4, 1))],
                       loss_fn=nn.functional.mse_loss, max_steps=2,
                       extra={"argv": sys.argv[1:]})
""",
    )
    out = optitui(
        "run",
        str(script),
        "--headless",
        "--run-dir",
        str(tmp_path / "r"),
        "--",
        "--epochs",
        "3",
        "--headless",
    )
    assert out.returncode == 0, out.stderr
    with RunReader(tmp_path / "r") as r:
        assert r.meta()["extra"]["argv"] == ["--epochs", "3", "--headless"]
    assert optitui("ls", "--", "x").returncode == 2


def test_nproc_per_node_picks_the_run_directory_before_the_ranks_start(tmp_path: Path) -> None:
    """Every rank is told the same --run-dir (a script without setup() needs it before
    its process group exists); a given one is passed on as it is."""
    from optitui.cli import build_parser, torchrun_argv

    def run_dir(argv: list[str]) -> str:
        args = build_parser().parse_args(argv)
        args.script_args = ()
        out = torchrun_argv(args)
        assert out[:3] == [sys.executable, "-m", "torch.distributed.run"]
        return out[out.index("--run-dir") + 1]

    picked = Path(
        run_dir(["run", "own.py", "--headless", "--nproc-per-node", "2", "--root", str(tmp_path)])
    )
    assert picked.parent == tmp_path and picked.name.startswith("own-") and not picked.exists()
    given = str(tmp_path / "mine")
    assert (
        run_dir(["run", "own.py", "--headless", "--nproc-per-node", "2", "--run-dir", given])
        == given
    )
