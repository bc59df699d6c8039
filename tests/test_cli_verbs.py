"""The command line around the dashboard, in process: checks before a job starts, `ls`,
the `--` hint and `run --help`."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from optitui.cli import main
from optitui.store.layout import create_run_dir
from optitui.store.records import MetricBatch, StatusUpdate
from optitui.store.writer import StoreWriter


@pytest.mark.parametrize(
    ("name", "content", "says"),
    [
        ("nope.py", None, "no such script: "),
        ("folder", "", "is not a file"),
        ("broken.py", "def setup(device:\n    pass\n", "does not parse (line 1)"),
    ],
)
def test_a_script_that_cannot_run_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, content: str | None, says: str
) -> None:
    script = tmp_path / name
    if content == "":
        script.mkdir()
    elif content is not None:
        script.write_text(content)
    root = tmp_path / "runs"
    for mode in ([], ["--headless"], ["--inline"]):
        assert main(["run", str(script), "--root", str(root), *mode]) == 2
        err = capsys.readouterr().err
        assert err.startswith("optitui: ") and says in err and err.count("\n") == 1
    assert not root.exists()  # no run directory was made


def test_script_arguments_without_the_double_dash_get_a_hint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["run", "train.py", "--epochs", "1"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "unrecognized arguments: --epochs 1" in err
    assert "go after `--`: optitui run train.py -- --epochs 1" in err
    assert "usage: optitui run [OPTIONS] SCRIPT [-- ARGS ...]" in err


def test_run_help_shows_the_script_arguments_and_scripts_without_setup(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "SCRIPT [-- ARGS ...]" in out
    assert "A script without setup() runs as it is" in out
    assert "-- --epochs 3" in out


def _store(root: Path, name: str, state: str, step: int, rate: float, loss: float) -> None:
    paths = create_run_dir(root, name, root / name)
    start = time.time() - 1000
    w = StoreWriter(paths, {"start": start, "script": f"/x/{name}.py"})
    last = start + step / 50.0  # averaged 50 steps/s over the run
    w.write(
        [
            MetricBatch({"step": [float(step)], "time": [last], "loss": [loss]}),
            StatusUpdate(state, step, 0, steps_per_s=rate, last_record=last),
        ]
    )
    w.close()
    time.sleep(0.02)  # creation times apart


def test_ls_lists_newest_first_with_speed_and_all_for_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    _store(root, "first", "finished", 1000, 606.0, 0.5)
    _store(root, "second", "stopped", 500, 999.0, 0.25)
    for i in range(3):
        _store(root, f"later{i}", "finished", 10, 1.0, 1.0)
    monkeypatch.setattr("optitui.cli.ls.NEWEST", 4)
    assert main(["ls", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        "RUN",
        "STATE",
        "STEP",
        "LOSS",
        "STEPS/S",
        "AGE",
        "SCRIPT",
        "TREND",
    ]
    names = [line.split()[0] for line in lines[1:-1]]
    assert names == ["later2", "later1", "later0", "second"]  # newest first, 4 of 5
    second = lines[4].split()
    assert second[1:6] == ["stopped", "500", "0.25", "avg", "50"]  # the average, not 999
    assert "1 older" in lines[-1] and "--all" in lines[-1]
    assert main(["ls", "--root", str(root), "--all"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines[1:]][-1] == "first"
    assert lines[-1].split()[2] == "1,000"


def test_readme_says_how_to_install_the_cpu_torch_and_check_it() -> None:
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    setup = readme.split("## Set up", 1)[1].split("\n## ", 1)[0]
    assert "--index-url https://download.pytorch.org/whl/cpu" in setup
    assert "torch.version.cuda" in setup and "+cpu" in setup


def test_commands_are_described_without_stray_spaces() -> None:
    from optitui.store.commands import Command
    from optitui.store.words import describe

    for kind in ("lr-find", "divergence", "checkpoint-policy"):
        said = describe(Command("x", kind, {}, "{}"))
        assert said == kind and f"{said}: applied" == f"{kind}: applied"


def _long_store(root: Path, name: str, rows: int, per_row: int = 4) -> None:
    """A finished run of ``rows`` metric rows whose loss falls from 10 to 0.01."""
    paths = create_run_dir(root, name, root / name)
    start = time.time() - 1000
    w = StoreWriter(paths, {"start": start, "script": f"/x/{name}.py"})
    n = rows * per_row
    for r in range(rows):
        steps = [float(r * per_row + i + 1) for i in range(per_row)]
        loss = [10.0 * 1000.0 ** (-(s - 1) / (n - 1)) for s in steps]
        w.write([MetricBatch({"step": steps, "time": [start + s for s in steps], "loss": loss})])
    w.write([StatusUpdate("finished", n, 0, last_record=start + n)])
    w.close()


def test_ls_trend_column_is_a_sparkline_read_from_a_bounded_sample(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from optitui.store.reader import RunReader

    root = tmp_path / "runs"
    _long_store(root, "long", rows=2000)
    read: list[int] = []
    whole = RunReader.metric_rows

    def counted(self: RunReader, ids: list[int]) -> Any:
        read.append(len(ids))
        return whole(self, ids)

    monkeypatch.setattr(RunReader, "metric_rows", counted)
    assert main(["ls", "--root", str(root)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    trend = line.split()[-1]
    assert len(trend) == 16 and set(trend) <= set("▁▂▃▄▅▆▇█")
    # falling over three decades: drawn on a log scale, highest first, lowest last
    assert trend[0] == "█" and trend[-1] == "▁" and list(trend) == sorted(trend, reverse=True)
    assert sum(read) <= 4 * 16 + 2  # a sample of the 2,000 rows, not the whole history


def test_ls_json_lists_the_same_runs_as_data(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "runs"
    _store(root, "first", "finished", 1000, 606.0, 0.5)
    _long_store(root, "long", rows=10)
    _store(root, "last", "stopped", 500, 999.0, float("nan"))
    (root / "broken").mkdir()
    (root / "broken" / "store.sqlite").write_bytes(b"not a database" * 100)
    monkeypatch.setattr("optitui.cli.ls.NEWEST", 3)
    assert main(["ls", "--root", str(root), "--json"]) == 1  # a run it could not read
    got = json.loads(capsys.readouterr().out)
    assert got["root"] == str(root) and got["older"] == 1
    runs = {r["run"]: r for r in got["runs"]}
    assert got["runs"][0]["run"] == "broken"  # newest first, as in the table
    assert runs["broken"]["state"] == "unreadable" and runs["broken"]["problem"]
    long = runs["long"]
    assert long["state"] == "finished" and long["step"] == 40 and long["script"] == "/x/long.py"
    assert long["speed"] == "average" and long["steps_per_s"] == pytest.approx(1.0, rel=0.01)
    assert long["trend"]["first_step"] == 1 and long["trend"]["last_step"] == 40
    assert long["trend"]["log_scale"] is True and len(long["trend"]["values"]) == 16
    assert long["loss"] == pytest.approx(0.01)
    assert runs["last"]["loss"] == "nan"  # JSON has no NaN: written as a string
