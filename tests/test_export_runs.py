"""`optitui export` of several runs into one table, and what it says about runs it
cannot read (one line, exit 2, nothing written)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from conftest import corrupt_run, from_a_newer_optitui

from optitui.cli import main
from optitui.store.layout import create_run_dir
from optitui.store.records import MetricBatch, StatusUpdate, ValRecord
from optitui.store.writer import StoreWriter


def stored_run(
    root: Path, name: str, groups: list[str], steps: int, *, grad_norm: bool = False
) -> Path:
    """A finished run with ``steps`` steps of loss and one lr per group (and a val loss)."""
    paths = create_run_dir(root, name, root / name)
    w = StoreWriter(paths, {"groups": groups, "script": f"/x/{name}.py"})
    cols: dict[str, list[float]] = {
        "step": [float(s) for s in range(1, steps + 1)],
        "epoch": [0.0] * steps,
        "time": [1000.0 + s for s in range(steps)],
        "loss": [1.0 / s for s in range(1, steps + 1)],
    }
    if grad_norm:
        cols["grad_norm"] = [2.0] * steps
    for i in range(len(groups)):
        cols[f"lr/{i}"] = [0.1 * (i + 1)] * steps
    w.write([MetricBatch(cols), ValRecord(steps, 0, 0.5), StatusUpdate("finished", steps, 0)])
    w.close()
    return paths.root


@pytest.fixture
def two_runs(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "runs"
    return (
        stored_run(root, "a", ["body", "head"], 3),
        stored_run(root, "b", ["0"], 2, grad_norm=True),
    )


def test_export_writes_several_runs_into_one_csv_with_a_run_column(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    out = tmp_path / "both.csv"
    assert main(["export", str(a), "b", "--root", str(b.parent), "-o", str(out)]) == 0
    assert "5 rows written" in capsys.readouterr().err
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    header = out.read_text().splitlines()[0].split(",")
    # every run's columns, the run's name first and the branch of a restore kept
    assert header[:2] == ["run", "branch"] and header[-1] == "val_loss"
    assert {"lr/body", "lr/head", "lr/0", "grad_norm", "loss", "step"} <= set(header)
    assert [(r["run"], r["step"]) for r in rows] == [
        ("a", "1"),
        ("a", "2"),
        ("a", "3"),
        ("b", "1"),
        ("b", "2"),
    ]
    assert rows[0]["lr/head"] == "0.2" and rows[0]["lr/0"] == "" and rows[0]["grad_norm"] == ""
    assert rows[3]["lr/0"] == "0.1" and rows[3]["lr/body"] == "" and rows[3]["grad_norm"] == "2.0"
    assert [r["val_loss"] for r in rows] == ["", "", "0.5", "", "0.5"]
    assert all(r["branch"] == "0" for r in rows)


def test_export_jsonl_of_several_runs_has_the_same_keys_on_every_line(
    two_runs: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = two_runs
    assert main(["export", str(a), str(b), "--format", "jsonl"]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["run"] for x in lines] == ["a", "a", "a", "b", "b"]
    assert len({tuple(x) for x in lines}) == 1  # one set of keys, in one order
    assert lines[0]["lr/0"] is None and lines[4]["lr/0"] == 0.1 and lines[4]["loss"] == 0.5


def test_export_of_infinite_and_nan_values_is_standard_json_and_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON has no infinity: +-inf are the strings "Infinity" and "-Infinity" in JSON
    lines (NaN null), each line parses under a strict parser; CSV keeps inf and -inf."""
    paths = create_run_dir(tmp_path, "r", tmp_path / "r")
    w = StoreWriter(paths, {"groups": ["0"], "script": "/x/r.py"})
    inf, nan = float("inf"), float("nan")
    cols = {"step": [1.0, 2.0, 3.0], "epoch": [0.0] * 3, "time": [1.0, 2.0, 3.0]}
    cols |= {"loss": [inf, 1.0, nan], "lr/0": [0.1] * 3, "user:up": [inf, -inf, 2.0]}
    w.write([MetricBatch(cols), StatusUpdate("finished", 3, 0)])
    w.close()

    def strict(text: str) -> object:
        def no_constant(name: str) -> object:
            raise ValueError(f"not JSON: {name}")

        return json.loads(text, parse_constant=no_constant)

    assert main(["export", str(paths.root), "--format", "jsonl"]) == 0
    lines = [strict(x) for x in capsys.readouterr().out.splitlines()]
    assert [(x["loss"], x["up"]) for x in lines] == [  # type: ignore[index]
        ("Infinity", "Infinity"),
        (1.0, "-Infinity"),
        (None, 2.0),
    ]
    assert main(["export", str(paths.root)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["loss"], r["up"]) for r in rows] == [("inf", "inf"), ("1.0", "-inf"), ("", "2.0")]


def test_export_names_runs_that_share_a_directory_name_as_given(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first = stored_run(tmp_path / "one", "same", ["0"], 1)
    second = stored_run(tmp_path / "two", "same", ["0"], 1)
    assert main(["export", str(first), str(second)]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["run"] for r in rows] == [str(first), str(second)]


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (lambda root: root / "missing", "not a run directory"),
        (corrupt_run, "the run store cannot be read"),
        (
            lambda root: from_a_newer_optitui(stored_run(root, "newer", ["0"], 2)),
            "written by optitui 9.1.0: run store schema version 2",
        ),
        (lambda root: root / "a", "the same run as"),  # named twice
    ],
    ids=["missing", "corrupt", "other-version", "twice"],
)
def test_export_refuses_a_run_it_cannot_read_in_one_line_and_writes_nothing(
    two_runs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad: object,
    said: str,
) -> None:
    a, _ = two_runs
    target = bad(a.parent)  # type: ignore[operator]
    out = tmp_path / "out.csv"
    assert main(["export", str(a), str(target), "-o", str(out)]) == 2
    got = capsys.readouterr()
    assert got.out == "" and len(got.err.splitlines()) == 1, got.err
    assert got.err.startswith("optitui: ") and said in got.err
    assert not out.exists()


def test_export_into_a_directory_or_of_a_remote_run_says_why(
    two_runs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, _ = two_runs
    assert main(["export", str(a), "-o", str(tmp_path)]) == 2
    assert "cannot write" in capsys.readouterr().err
    assert main(["export", "gpu1:runs/x"]) == 2
    err = capsys.readouterr().err
    assert "reads runs on this host" in err and "ssh gpu1 optitui export" in err


class ClosedPipe(io.StringIO):
    """stdout read by `head`, which stopped reading: every write is a broken pipe."""

    def write(self, s: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


@pytest.mark.parametrize("system", [False, True])
def test_export_into_a_pipe_closed_early_ends_quietly(
    two_runs: tuple[Path, Path],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    system: bool,
) -> None:
    """`optitui export RUN | head` is not an error: no message, exit 0."""
    a, _ = two_runs
    monkeypatch.setattr("sys.stdout", ClosedPipe())
    assert main(["export", str(a), *(["--system"] if system else [])]) == 0
    assert capsys.readouterr().err == ""
