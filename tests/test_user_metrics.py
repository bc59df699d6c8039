"""The user's own metrics: step_fn mappings, probe.step(metrics=), probe.log, optitui.log,
bad values, no extra host-device reads, the store at scale, old stores and export."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import sqlite3
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from jobs import command, drive, make_trainer, tiny_job
from torch import nn

import optitui
from optitui.cli import main
from optitui.store import export
from optitui.store.layout import create_run_dir
from optitui.store.metrics import USER_PREFIX as U
from optitui.store.reader import RunReader
from optitui.store.records import MetricBatch, StatusUpdate
from optitui.store.writer import StoreWriter
from optitui.trainer.core.job import Job, JobError
from optitui.trainer.probe.watch import Probe


def five(model: nn.Module, batch: Any) -> dict[str, Any]:
    """A step_fn returning the loss and five tensor scalars (and a number)."""
    x, y = batch
    out = model(x)
    err = (out - y).detach()
    return {
        "loss": nn.functional.mse_loss(out, y),
        "mae": err.abs().mean(),
        "max_err": err.abs().max(),
        "train/bias": err.mean(),
        "big": (err.abs() > 1).sum(),  # an int64 tensor
        "all_small": (err.abs() < 100).all(),  # a bool tensor
        "lr_seen": 0.5,
    }


def metric_job(step_fn: Callable[[nn.Module, Any], Any], **kwargs: Any) -> Job:
    """The tiny regression job, its loss given by ``step_fn``."""
    job = tiny_job(**kwargs)
    job.loss_fn, job.step_fn = None, step_fn
    return job


def user(cols: Any, name: str) -> list[float]:
    return list(cols.columns["user:" + name])


def test_step_fn_mapping_records_every_metric_and_val_names(tmp_path: Path) -> None:
    seen: list[float] = []

    def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
        got = five(model, batch)
        if model.training:
            seen.append(float(got["mae"]))
        return got

    job = metric_job(step_fn, max_steps=24, val_every=8)
    job.val_data = [job.train_data.dataset[:64], job.train_data.dataset[64:128]]
    trainer = make_trainer(tmp_path, job, flush_every=10)
    assert trainer.run() == "finished"
    with RunReader(trainer.paths.root) as r:
        cols = r.read_metrics()
        assert cols.length == 24
        assert user(cols, "mae") == pytest.approx(seen, rel=1e-6)
        assert user(cols, "lr_seen") == [0.5] * 24
        assert user(cols, "all_small") == [1.0] * 24
        assert "user:train/bias" in cols.columns and "user:big" in cols.columns
        assert "user:loss" not in cols.columns  # the loss is the loss
        val = r.read_logged()
        assert list(val.columns["step"]) == [8.0, 16.0, 24.0]
        assert set(val.columns) >= {"user:val_mae", "user:val_train/bias", "user:val_big"}
        assert list(val.columns["user:val_lr_seen"]) == [0.5] * 3
        assert [s for _, s, _, _ in r.val()] == [8, 16, 24]


def test_step_fn_metrics_are_the_mean_over_micro_batches(tmp_path: Path) -> None:
    def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
        x, y = batch
        return {"loss": nn.functional.mse_loss(model(x), y), "n": torch.tensor(float(len(x)))}

    job = metric_job(step_fn, max_steps=4, grad_accum=2, batch_size=8)
    trainer = make_trainer(tmp_path, job)
    assert trainer.run() == "finished"
    with RunReader(trainer.paths.root) as r:
        assert user(r.read_metrics(), "n") == [8.0] * 4


def test_a_range_test_and_a_race_run_on_a_step_fn_mapping_and_record_no_metrics(
    tmp_path: Path,
) -> None:
    def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
        x, y = batch
        return {"loss": nn.functional.mse_loss(model(x), y), "k": torch.tensor(2.0)}

    job = metric_job(step_fn, max_steps=40)
    job.val_data = [job.train_data.dataset[:64]]
    trainer = make_trainer(tmp_path, job, flush_every=8)
    race = command("race", steps=4, val=True, candidates=["lr*2"])
    drive(trainer, 10, {5: [command("lr-find", num_iter=12)]})
    trainer._apply_commands(deque([race]))  # at a boundary, as the loop does
    drive(trainer, 10)
    trainer.flush()
    trainer.recorder.close()
    (test,) = trainer.range_tests.values()
    assert test.status == "done"
    with RunReader(trainer.paths.root) as r:
        (ran,) = r.races()
        assert ran.status == "done" and all(v is not None for v in ran.data["val"])
        cols = r.read_metrics()  # the sweep's and the race's steps are not the run's
        assert cols.length == 20 and user(cols, "k") == [2.0] * 20


def test_step_fn_mapping_without_a_loss_fails_the_run_saying_so(tmp_path: Path) -> None:
    job = metric_job(lambda m, b: {"acc": 1.0}, max_steps=3)
    trainer = make_trainer(tmp_path, job)
    with pytest.raises(JobError, match="without a 'loss' key"):
        trainer.run()


def test_five_tensor_metrics_add_no_host_device_read(
    tmp_path: Path, sync_counter: Counter[str]
) -> None:
    steps, every = 300, 50
    job = metric_job(five, max_steps=steps)
    trainer = make_trainer(tmp_path, job, flush_every=every, flush_seconds=1e9)
    assert trainer.run() == "finished"
    # the losses and the user's tensors: one batched read per flush, as without metrics
    assert sync_counter == Counter({"tolist": steps // every})
    with RunReader(trainer.paths.root) as r:
        assert r.read_metrics().length == steps


def probe_loop(
    tmp_path: Path, steps: int, every: int = 16, metrics: bool = True
) -> tuple[Probe, list[float]]:
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=every, flush_seconds=1e9)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    accs = []
    for s in range(steps):
        out = model(x)
        loss = nn.functional.mse_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        acc = ((out > 0) == (y > 0)).float().mean()
        accs.append(float(acc))
        probe.step(loss, metrics={"acc": acc, "step_x2": 2 * s} if metrics else None)
        if s % 10 == 9:
            probe.log(epoch_eval=torch.tensor(s / 10))
            optitui.log(**{"eval/f1": 0.25})
    return probe, accs


def test_probe_step_metrics_log_and_module_log(tmp_path: Path, sync_counter: Counter[str]) -> None:
    probe, accs = probe_loop(tmp_path, 32)
    probe.close()
    assert sync_counter == Counter({"tolist": 2})  # 32 steps: two flushes, one read each
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        assert user(cols, "acc") == pytest.approx(accs)
        assert user(cols, "step_x2") == [2.0 * s for s in range(32)]
        logged = r.read_logged()
        assert list(logged.columns["step"]) == [10.0, 10.0, 20.0, 20.0, 30.0, 30.0]
        assert [v for v in user(logged, "epoch_eval") if not math.isnan(v)] == pytest.approx(
            [0.9, 1.9, 2.9]
        )
        assert [v for v in user(logged, "eval/f1") if not math.isnan(v)] == [0.25] * 3


def test_on_the_cpu_a_flush_reads_the_values_one_by_one_and_nothing_between_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On the CPU (no device to wait for) a flush reads the user's tensors one by one,
    for about half of what stacking one costs: each value once, at the flush, none in
    the steps between, and every value recorded as it was."""
    from optitui.trainer.loop import user_metrics

    calls = Counter[int]()  # values read, by the step during which they were read
    now = [0]
    read = user_metrics._READ

    def counted(t: torch.Tensor) -> Any:
        calls[now[0]] += 1
        return read(t)

    monkeypatch.setattr(user_metrics, "_READ", counted)
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=8, flush_seconds=1e9)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    given: list[list[float]] = []
    for step in range(24):
        now[0] = step
        out = model(x)
        loss = nn.functional.mse_loss(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        err = (out - y).detach().abs()
        metrics = {"mae": err.mean(), "max": err.max(), "n": (err > 1).sum(), "one": err[0, 0]}
        given.append([float(v) for v in metrics.values()])
        probe.step(loss, metrics={**metrics, "flag": err.max() > 1})
    probe.close()
    assert calls == {7: 40, 15: 40, 23: 40}  # 8 steps of 5 values, at each flush only
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        for j, name in enumerate(("mae", "max", "n", "one")):
            assert user(cols, name) == [row[j] for row in given], name
        assert user(cols, "flag") == [float(row[1] > 1) for row in given]


def test_tensors_of_mixed_dtypes_keep_their_places_and_exact_counts(
    tmp_path: Path, sync_counter: Counter[str]
) -> None:
    """A flush stacks its tensors a dtype at a time (float32, float64, int64, bool, the
    names changing from step to step, logged values among them) and every value is
    still recorded under its own name at its own step; a count above 2**24 stays exact
    (a stack promoting it with float32 values would round it)."""
    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=8, flush_seconds=1e9)
    x, y = torch.randn(8, 4), torch.randn(8, 1)
    big = 2**24 + 1
    for s in range(24):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        metrics: dict[str, Any] = {
            "f32": torch.tensor(s + 0.5),
            "count": torch.tensor(big + s),  # int64
            "even": torch.tensor(s % 2 == 0),  # bool
        }
        if s % 3 == 0 and s < 8:  # the first flush only: the others have no float64
            metrics["f64"] = torch.tensor(s / 3, dtype=torch.float64)
            metrics["n"] = s  # a number between the tensors
        probe.step(loss, metrics=metrics)
        if s % 5 == 4:
            probe.log(seen=torch.tensor(big - s), half=torch.tensor(s / 2))
    probe.close()
    assert sync_counter == Counter({"tolist": 3})  # one read per flush, as ever
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        assert user(cols, "f32") == [s + 0.5 for s in range(24)]
        assert user(cols, "count") == [float(big + s) for s in range(24)]
        assert user(cols, "even") == [float(s % 2 == 0) for s in range(24)]
        want = [s / 3 if s % 3 == 0 and s < 8 else math.nan for s in range(24)]
        assert user(cols, "f64") == pytest.approx(want, nan_ok=True)
        assert user(cols, "n") == pytest.approx(
            [float(s) if s % 3 == 0 and s < 8 else math.nan for s in range(24)], nan_ok=True
        )
        logged = r.read_logged()
        assert list(logged.columns["step"]) == [5.0, 10.0, 15.0, 20.0]
        assert user(logged, "seen") == [float(big - s) for s in (4, 9, 14, 19)]
        assert user(logged, "half") == [s / 2 for s in (4, 9, 14, 19)]


def test_log_after_the_last_step_is_written_at_close(tmp_path: Path) -> None:
    probe, _ = probe_loop(tmp_path, 16, every=16)  # flushed at step 16: nothing buffered
    probe.log(final_acc=torch.tensor(0.75))
    probe.close()
    with RunReader(tmp_path / "r") as r:
        logged = r.read_logged()
        assert list(logged.columns["step"])[-1] == 16.0
        assert user(logged, "final_acc")[-1] == 0.75


def test_module_log_without_a_run_does_nothing() -> None:
    optitui.log(acc=1.0, bad=[1, 2])  # no probe open in this process: no error, no effect


@pytest.mark.parametrize("one_by_one", [True, False])
def test_a_tensor_given_again_at_later_steps_is_never_recorded_with_their_value(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    one_by_one: bool,
) -> None:
    """A running total the loop updates in place, given at every step, is read at the
    flush, when it holds the flush's value: only the last step of each flush keeps it
    (its own), the others are NaN, never a later step's number, and the metric is warned
    about once. A fresh tensor per step beside it is recorded exactly, on the CPU's
    one-by-one read and on the device's stacks alike."""
    from optitui.trainer.loop import user_metrics

    monkeypatch.setattr(user_metrics, "READ_ONE_BY_ONE", frozenset({"cpu"} if one_by_one else ()))
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=8, flush_seconds=1e9)
    total = torch.zeros(())
    for _ in range(20):
        loss = model(torch.ones(1, 2)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        total += 1
        probe.step(loss, metrics={"total": total, "fresh": total.clone()})
    probe.close()
    err = capsys.readouterr().err
    assert err.count("metric 'total'") == 1 and "given at several steps" in err
    assert "metric 'total' recorded at some steps only" in err  # not skipped: kept at some
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        assert user(cols, "fresh") == [float(k) for k in range(1, 21)]
        kept = {k: v for k, v in enumerate(user(cols, "total"), 1) if not math.isnan(v)}
        assert kept == {8: 8.0, 16: 16.0, 20: 20.0}  # the last step of each flush


@pytest.mark.parametrize("period", [1, 2, 3])
def test_buffers_taken_in_turn_are_found_too(period: int) -> None:
    """Tensors reused every ``period`` steps (a running total, buffers taken in turn) keep
    only their last step's value in a flush; a fresh tensor per step keeps every one."""
    from optitui.trainer.loop.user_metrics import UserMetrics

    warned: list[str] = []
    um = UserMetrics(lambda message, step: warned.append(message), lambda: 0)
    buffers = [torch.zeros(()) for _ in range(period)]
    for step in range(10):
        buf = buffers[step % period]
        buf.fill_(step)
        um.add_step(um.check_step({"buf": buf, "fresh": torch.tensor(float(step))}))
    taken = um.split(1)
    read = taken.stacked(torch.device("cpu"), torch.float64)
    cols, _ = taken.take([] if read is None else read.tolist(), 10)
    assert cols[U + "fresh"] == [float(k) for k in range(10)]
    kept = {k: v for k, v in enumerate(cols[U + "buf"]) if not math.isnan(v)}
    assert kept == {k: float(k) for k in range(10 - period, 10)}
    assert warned == [
        "metric 'buf' recorded at some steps only: the same tensor was given at several "
        "steps (updated in place?): a value is read at the flush, so only the last of "
        "those steps is recorded; give each step its own tensor (e.g. .clone()) (warned once)"
    ]


def test_bad_values_warn_once_each_and_are_skipped_nan_is_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
        x, y = batch
        return {
            "loss": nn.functional.mse_loss(model(x), y),
            "vec": torch.ones(3),
            "word": "high",
            "cplx": torch.tensor(1j),
            "grad_norm": 1.0,  # a name optitui records itself
            "nan": torch.tensor(math.nan),
            "ok": 1.0,
        }

    job = metric_job(step_fn, max_steps=20)
    trainer = make_trainer(tmp_path, job, flush_every=5)
    assert trainer.run() == "finished"  # the guard watches the loss only
    err = capsys.readouterr().err
    for name in ("vec", "word", "cplx", "grad_norm"):
        assert err.count(f"metric {name!r} skipped") == 1
    with RunReader(trainer.paths.root) as r:
        warnings = [e.message for e in r.events() if e.kind == "warning"]
        assert sum("metric 'vec' skipped" in w and "shape (3,)" in w for w in warnings) == 1
        assert sum("metric 'word' skipped" in w and "str" in w for w in warnings) == 1
        cols = r.read_metrics()
        assert {n for n in cols.columns if n.startswith("user:")} == {"user:nan", "user:ok"}
        assert all(math.isnan(v) for v in user(cols, "nan"))
        assert user(cols, "ok") == [1.0] * 20
        assert "grad_norm" not in cols.columns  # not clipping: the user's value is not it


def test_odd_values_are_taken_or_refused_in_plain_words() -> None:
    """A Decimal is a number (a Fraction too); None, a complex number and a complex tensor
    are refused saying what they are; 'val_loss' points to probe.val_loss()."""
    from decimal import Decimal
    from fractions import Fraction

    from optitui.trainer.loop.user_metrics import UserMetrics

    warned: list[str] = []
    m = UserMetrics(lambda message, step: warned.append(message), lambda: 0)
    got = m.check(
        {
            "dec": Decimal("1.5"),
            "frac": Fraction(1, 4),
            "snan": Decimal("sNaN"),
            "none": None,
            "cplx": 1j,
            "ccplx": torch.tensor(1j),
            "val_loss": 0.5,
        }
    )
    assert got == {"dec": 1.5, "frac": 0.25}
    assert sorted(warned) == [
        "metric 'ccplx' skipped: a complex tensor is not one number (warned once)",
        "metric 'cplx' skipped: a complex number is not one real number (warned once)",
        "metric 'none' skipped: None is not one real number (warned once)",
        "metric 'snan' skipped: a Decimal is not one real number (warned once)",
        "metric 'val_loss' skipped: 'val_loss' is recorded by probe.val_loss(value); "
        "choose another name (warned once)",
    ]


def test_probe_bad_values_and_names_warn_and_the_loop_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4)
    for _ in range(8):
        probe.step(torch.tensor(1.0), metrics={"": 1.0, "lr/0": 2.0, "m": torch.zeros(2, 2)})
        probe.log(obj=object(), fine=3)
    probe.close()
    err = capsys.readouterr().err
    assert err.count("metric '' skipped") == 1 and err.count("metric 'lr/0' skipped") == 1
    assert err.count("metric 'm' skipped") == 1 and err.count("metric 'obj' skipped") == 1
    with RunReader(tmp_path / "r") as r:
        assert not [n for n in r.read_metrics().columns if n.startswith("user:")]
        assert user(r.read_logged(), "fine") == [3.0] * 8
        assert r.status().state == "finished"


def warning_steps(run: Path) -> dict[str, int]:
    """The step each metric's one warning names, by metric name."""
    with RunReader(run) as r:
        return {
            e.message.split("'")[1]: e.step
            for e in r.events()
            if e.kind == "warning" and e.message.startswith("metric ")
        }


def test_a_bad_metric_warning_names_the_step_it_was_given_at(tmp_path: Path) -> None:
    """The steps recorded are 1, 2, ...: a value given with the step recorded as 3 is
    warned about at step 3, whether it is caught at once or at the flush; a value
    logged between steps at the step recorded last."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    for s in range(1, 9):  # the step recorded as s
        metrics: dict[str, Any] = {"fine": torch.tensor(1.0)}
        if s == 3:
            metrics["word"] = "high"  # caught when given
        if s == 6:
            metrics["fine"] = torch.ones(2)  # a known name: caught at the flush
        probe.step(torch.tensor(1.0), metrics=metrics)
        if s == 7:
            probe.log(obj=object())  # logged at step 7
    probe.close()
    assert warning_steps(tmp_path / "r") == {"word": 3, "fine": 6, "obj": 7}
    with RunReader(tmp_path / "r") as r:
        assert list(r.read_metrics().columns["step"]) == [float(s) for s in range(1, 9)]


@pytest.mark.parametrize("accum", [1, 2])
def test_a_step_fn_metric_warning_names_its_step(tmp_path: Path, accum: int) -> None:
    """The fifth call of step_fn is step 5's, or with two micro-batches a step, step 3's."""
    calls = 0

    def step_fn(model: nn.Module, batch: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        x, y = batch
        out = {"loss": nn.functional.mse_loss(model(x), y)}
        if calls == 5:
            out["word"] = "high"
        return out

    job = metric_job(step_fn, max_steps=8, grad_accum=accum)
    trainer = make_trainer(tmp_path, job, flush_every=4)
    assert trainer.run() == "finished"
    assert warning_steps(trainer.paths.root) == {"word": 5 if accum == 1 else 3}


def scale_store(root: Path, names: int, steps: int, per_row: int) -> Path:
    paths = create_run_dir(root, "big", root / "big")
    w = StoreWriter(paths, {"groups": ["0"]})
    for first in range(0, steps, per_row):
        cols: dict[str, Any] = {
            "step": range(first + 1, first + per_row + 1),
            "epoch": [0.0] * per_row,
            "time": [1000.0 + first] * per_row,
            "loss": [1.0] * per_row,
            "lr/0": [0.1] * per_row,
        }
        for k in range(names):
            cols[f"user:metric {k}"] = [float(k)] * per_row
        w.write([MetricBatch(cols)])
    w.write([StatusUpdate("finished", steps, 0)])
    w.close()
    return paths.root


def test_hundreds_of_names_are_one_row_per_flush_and_load_in_whole_columns(
    tmp_path: Path,
) -> None:
    names, steps, per_row = 300, 8_000, 500
    run = scale_store(tmp_path, names, steps, per_row)
    with sqlite3.connect(run / "store.sqlite") as conn:
        assert conn.execute("SELECT count(*) FROM metrics").fetchone()[0] == steps // per_row
    t0 = time.perf_counter()
    with RunReader(run) as r:
        cols = r.read_metrics()
    took = time.perf_counter() - t0
    assert cols.length == steps and len(cols.columns) == names + 5
    assert cols.columns["user:metric 299"][-1] == 299.0
    # 2.4M values: whole-column decoding, not a Python loop per value (which takes ~minutes)
    print(f"read {names} names x {steps} steps in {took:.3f} s")


def test_an_old_store_without_logged_values_reads_and_exports(tmp_path: Path) -> None:
    run = scale_store(tmp_path, 2, 4, 2)
    with sqlite3.connect(run / "store.sqlite") as conn:
        conn.execute("DROP TABLE logged")
    with RunReader(run) as r:
        assert r.read_logged().length == 0
        names, rows = export.rows(r)
        mine = ["metric 0", "metric 1"]
        assert names == ["branch", "step", "epoch", "time", "loss", "lr/0", *mine, "val_loss"]
        assert [row["metric 1"] for row in rows] == [1.0] * 4


def test_export_writes_every_metric_under_its_own_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    probe, accs = probe_loop(tmp_path, 20, every=8)
    probe.close()
    out = tmp_path / "m.csv"
    assert main(["export", str(tmp_path / "r"), "-o", str(out)]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    header = out.read_text().splitlines()[0].split(",")
    assert {"acc", "step_x2", "epoch_eval", "eval/f1"} <= set(header)
    assert header[-1] == "val_loss"
    assert [float(r["acc"]) for r in rows] == pytest.approx(accs)
    assert [float(r["epoch_eval"]) for r in rows if r["epoch_eval"]] == pytest.approx([0.9, 1.9])
    assert [r["step"] for r in rows if r["eval/f1"]] == ["10", "20"]
    jl = tmp_path / "m.jsonl"
    assert main(["export", str(tmp_path / "r"), "--format", "jsonl", "-o", str(jl)]) == 0
    lines = [json.loads(line) for line in jl.read_text().splitlines()]
    assert lines[9]["epoch_eval"] == pytest.approx(0.9) and lines[9]["eval/f1"] == 0.25
    assert lines[0]["epoch_eval"] is None and lines[0]["step_x2"] == 0.0


def test_a_numpy_number_is_one_number_and_a_numpy_vector_is_not() -> None:
    """`acc.cpu().numpy()` is a 0-d array: recorded as the number it holds."""
    import numpy as np

    from optitui.trainer.loop.user_metrics import UserMetrics

    warned: list[str] = []
    m = UserMetrics(lambda message, step: warned.append(message), lambda: 0)
    got = m.check(
        {
            "zero_d": torch.tensor(0.75).numpy(),
            "one": np.array([2.5], dtype=np.float32),
            "flag": np.array(True),
            "scalar": np.float64(1.5),
            "vec": np.ones(3),
            "text": np.array("high"),
            "cplx": np.array(1j),
        }
    )
    assert got == {"zero_d": 0.75, "one": 2.5, "flag": 1.0, "scalar": 1.5}
    assert all(isinstance(v, float) for v in got.values())
    assert len(warned) == 3 and all(
        any(f"metric {n!r} skipped" in w for w in warned) for n in ("vec", "text", "cplx")
    )
    assert any("shape (3,)" in w for w in warned)


def test_a_steps_tensors_are_kept_detached_and_apart_from_the_callers_dict() -> None:
    """Known names take the quick path: still a copy of the mapping, and no graph kept."""
    from optitui.trainer.loop.user_metrics import UserMetrics

    m = UserMetrics(lambda message, step: None, lambda: 0)
    w = torch.ones((), requires_grad=True)
    given: dict[str, Any] = {"a": torch.tensor(1.0), "b": torch.tensor(2.0)}
    m.check_step(given)  # the names are checked once
    got = m.check_step(given)
    given["a"] = torch.tensor(5.0)  # the loop reuses its dict
    assert float(got["a"]) == 1.0
    for values in ({**given, "g": w * 3}, {"loss": w, **given}):
        got = m.check_step(values, skip="loss")
        assert set(got) == set(values) - {"loss"}
        assert not any(v.requires_grad for v in got.values())


@contextlib.contextmanager
def read_path(one_by_one: bool) -> Iterator[None]:
    """Flushes on the CPU read the user's tensors one by one (the CPU's way) or stacked
    (a device's way)."""
    from optitui.trainer.loop import user_metrics

    with mock.patch.object(
        user_metrics, "READ_ONE_BY_ONE", frozenset({"cpu"} if one_by_one else ())
    ):
        yield


def flushed(m: Any) -> list[float]:
    """What a flush reads of ``m`` (a UserMetrics) for its take()."""
    got = m.stacked(torch.device("cpu"), torch.float64)
    if got is not None:
        assert got.dtype == torch.float64
    return [] if got is None else got.tolist()


BOTH_PATHS = pytest.mark.parametrize("one_by_one", [True, False], ids=["one-by-one", "stacked"])


@BOTH_PATHS
@pytest.mark.parametrize("same_order", [True, False], ids=["same-order", "any-order"])
def test_steps_with_the_same_names_are_read_name_by_name(
    one_by_one: bool, same_order: bool
) -> None:
    """The common flush: every step gave tensors under the same names. On the CPU, names in
    the same order are read there and then, one by one; otherwise one stack per name, read
    with the losses. Each column lands under its own name, the logged values after them,
    a count above 2**24 exact."""
    from optitui.trainer.loop.user_metrics import UserMetrics

    m = UserMetrics(lambda message, step: None, lambda: 0)
    big = 2**40 + 1
    rows = [
        {"acc": torch.tensor(0.25), "n": torch.tensor(big), "ok": torch.tensor(True)},
        {"n": torch.tensor(big + 1), "ok": torch.tensor(False), "acc": torch.tensor(0.5)},
        {"ok": torch.tensor(True), "acc": torch.tensor(0.75), "n": torch.tensor(big + 2)},
    ]
    if same_order:
        rows = [{k: row[k] for k in ("acc", "n", "ok")} for row in rows]
    for row in rows:
        m.add_step(m.check_step(row))
    m.log(3, 0, 0.0, {"eval": torch.tensor(7.0), "note": 2.5})
    with read_path(one_by_one):
        read = flushed(m)
    by_name = [0.25, 0.5, 0.75, big, big + 1, big + 2, 1, 0, 1, 7]  # stacked name by name
    assert read == ([] if one_by_one and same_order else by_name)  # []: read already
    cols, logged = m.take(read, 3)
    assert cols == {
        U + "acc": [0.25, 0.5, 0.75],
        U + "n": [float(big), float(big + 1), float(big + 2)],
        U + "ok": [1.0, 0.0, 1.0],
    }
    assert logged is not None
    assert logged.columns[U + "eval"] == [7.0] and logged.columns[U + "note"] == [2.5]


@pytest.mark.parametrize(
    "odd",
    [
        {"acc": torch.tensor(0.5)},  # a name missing
        {"acc": torch.tensor(0.5), "n": 3},  # a number among the tensors
        {"acc": torch.tensor([0.5]), "n": torch.tensor(3)},  # a (1,) beside 0-d ones
        {"acc": torch.tensor(0.5), "n": torch.tensor([1, 2])},  # not one number: skipped
    ],
)
@BOTH_PATHS
def test_a_step_unlike_the_others_is_read_value_by_value(
    odd: dict[str, Any], one_by_one: bool
) -> None:
    from optitui.trainer.loop.user_metrics import UserMetrics

    warned: list[str] = []
    m = UserMetrics(lambda message, step: warned.append(message), lambda: 0)
    steps = [{"acc": torch.tensor(0.25), "n": torch.tensor(1)}, odd]
    for row in steps:
        m.add_step(m.check_step(row))
    with read_path(one_by_one):
        cols, _ = m.take(flushed(m), 2)
    assert cols[U + "acc"] == [0.25, 0.5]
    n = odd.get("n")
    if n is None or (isinstance(n, torch.Tensor) and n.numel() > 1):
        assert cols[U + "n"] == pytest.approx([1.0, math.nan], nan_ok=True)
        assert len(warned) == (n is not None)
    else:
        assert cols[U + "n"] == [1.0, 3.0]


_DTYPES = (torch.float32, torch.float64, torch.int64, torch.bool)
_value = st.tuples(st.sampled_from((*_DTYPES, None)), st.integers(-4000, 4000))
_row = st.none() | st.dictionaries(st.sampled_from("abc"), _value, max_size=3)
Row = dict[str, tuple[torch.dtype | None, int]] | None


@st.composite
def _flush(draw: st.DrawFn) -> list[Row]:
    """A flush's steps: as often as not the common case, every step the same names (in
    any order) and each name one dtype, all tensors; else anything."""
    n = draw(st.integers(1, 10))
    if not draw(st.booleans()):
        return draw(st.lists(_row, min_size=n, max_size=n))
    names = draw(st.lists(st.sampled_from("abc"), min_size=1, max_size=3, unique=True))
    kinds = {name: draw(st.sampled_from(_DTYPES)) for name in names}
    return [
        {
            name: (kinds[name], draw(st.integers(-4000, 4000)))
            for name in draw(st.permutations(names))
        }
        for _ in range(n)
    ]


@given(rows=_flush(), logged=st.lists(_row, max_size=3), one_by_one=st.booleans())
@settings(max_examples=200, deadline=None)
def test_any_flush_records_each_value_under_its_name_at_its_step(
    rows: list[Row], logged: list[Row], one_by_one: bool
) -> None:
    """Whatever a flush's steps gave (names missing or in another order, dtypes mixed
    within a name and between names, numbers among tensors, values logged between steps),
    each value is read once, under its own name, at its own step; NaN where none was."""
    from optitui.trainer.loop.user_metrics import UserMetrics

    def made(dtype: torch.dtype | None, k: int) -> torch.Tensor | float:
        v = (
            k / 4
            if dtype is None or dtype.is_floating_point
            else (k > 0 if dtype == torch.bool else k)
        )
        return float(v) if dtype is None else torch.tensor(v, dtype=dtype)

    def true(dtype: torch.dtype | None, k: int) -> float:
        return float(k > 0) if dtype == torch.bool else float(k if dtype == torch.int64 else k / 4)

    m = UserMetrics(lambda message, step: None, lambda: 0)
    for row in rows:
        m.add_step(m.check_step({n: made(*v) for n, v in row.items()}) if row else None)
    for row in logged:
        m.log(1, 0, 0.0, {n: made(*v) for n, v in (row or {"z": (None, 1)}).items()})
    with read_path(one_by_one):
        cols, batch = m.take(flushed(m), len(rows))
    names = {n for row in rows if row for n in row}
    want = {U + n: [true(*row[n]) if row and n in row else math.nan for row in rows] for n in names}
    assert cols.keys() == want.keys()
    for name, col in want.items():
        assert cols[name] == pytest.approx(col, nan_ok=True), name
    if logged:
        assert batch is not None
        for j, row in enumerate(logged):
            for n, v in (row or {"z": (None, 1)}).items():
                assert batch.columns[U + n][j] == true(*v)
    else:
        assert batch is None


def _steps_and_warnings(run: Path) -> tuple[list[float], list[str]]:
    with RunReader(run) as r:
        steps = list(r.read_metrics().columns["step"])
        return steps, [e.message for e in r.events() if e.kind == "warning"]


@pytest.mark.parametrize("first", [True, False], ids=["from-the-first-step", "at-a-later-step"])
def test_a_meta_tensor_is_skipped_naming_it_and_the_flush_keeps_the_rest(
    tmp_path: Path, first: bool
) -> None:
    """A tensor with no value (the meta device) is refused with one warning naming the
    metric; the flush it is in still records its losses and the other metrics."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    meta = torch.zeros((), device="meta")
    for s in range(1, 13):
        ghost = meta if first or s == 6 else torch.tensor(0.5)
        probe.step(torch.tensor(float(s)), metrics={"acc": torch.tensor(s / 10), "ghost": ghost})
        if s == 7:
            probe.log(later=meta, fine=torch.tensor(2.0))
    probe.close()
    steps, warnings = _steps_and_warnings(tmp_path / "r")
    assert steps == [float(s) for s in range(1, 13)]
    assert sum("'ghost'" in w and "meta device" in w for w in warnings) == 1
    assert sum("'later'" in w and "meta device" in w for w in warnings) == 1
    with RunReader(tmp_path / "r") as r:
        cols = r.read_metrics()
        assert list(cols.columns["loss"]) == [float(s) for s in range(1, 13)]
        assert user(cols, "acc") == pytest.approx([s / 10 for s in range(1, 13)])
        assert user(r.read_logged(), "fine") == [2.0]


class _Unreadable(Mapping[str, float]):
    """A mapping whose values cannot be had."""

    def __getitem__(self, key: str) -> float:
        raise RuntimeError("no value")

    def __iter__(self) -> Iterator[str]:
        return iter(["acc"])

    def __len__(self) -> int:
        return 1


@pytest.mark.parametrize(
    ("metrics", "said"),
    [
        ([1.0], "metrics must be a mapping of names to values, got a list"),
        ("acc", "metrics must be a mapping of names to values, got a str"),
        (5.0, "metrics must be a mapping of names to values, got a float"),
        ({"tokens": 10**400}, "metric 'tokens' skipped: too large for a float"),
        ({None: 1.0}, "metric 'None' skipped: a metric name must be non-empty text"),
        (_Unreadable(), "metrics could not be read (RuntimeError('no value')): skipped"),
    ],
    ids=["list", "str", "float", "huge-int", "none-name", "raising-mapping"],
)
def test_metrics_that_cannot_be_taken_warn_once_and_every_step_is_recorded(
    tmp_path: Path, metrics: Any, said: str
) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    for _ in range(6):
        probe.step(torch.tensor(1.0), metrics=metrics)  # never raises
    probe.close()
    steps, warnings = _steps_and_warnings(tmp_path / "r")
    assert steps == [float(s) for s in range(1, 7)]
    assert sum(said in w for w in warnings) == 1, warnings


def test_each_kind_of_metrics_that_is_no_mapping_is_warned_about(tmp_path: Path) -> None:
    """A list, then a str, then a float: one warning each, each naming its step."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    given: list[Any] = [[1.0], [2.0], "acc", 0.5, 7.0, {"ok": 1.0}]
    for metrics in given:
        probe.step(torch.tensor(1.0), metrics=metrics)
    probe.close()
    with RunReader(tmp_path / "r") as r:
        said = [(e.step, e.message) for e in r.events() if e.kind == "warning"]
        assert user(r.read_metrics(), "ok")[-1] == 1.0
    assert [(s, m.split(", got ")[1]) for s, m in said] == [
        (1, "a list: skipped (warned once)"),
        (3, "a str: skipped (warned once)"),
        (4, "a float: skipped (warned once)"),
    ]


def test_metrics_whose_reading_fails_are_dropped_and_the_losses_kept(tmp_path: Path) -> None:
    """Whatever a flush's metrics do when read, the flush's losses are recorded and the
    metrics of those steps dropped with one warning naming the steps."""
    from optitui.trainer.loop.user_metrics import UserMetrics

    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    real = UserMetrics.stacked
    calls = iter(range(100))

    def flaky(self: UserMetrics, device: torch.device, dtype: torch.dtype) -> Any:
        if next(calls) == 1:  # the second flush
            raise RuntimeError("boom")
        return real(self, device, dtype)

    with mock.patch.object(UserMetrics, "stacked", flaky):
        for s in range(1, 13):
            probe.step(torch.tensor(float(s)), metrics={"acc": torch.tensor(float(s))})
        probe.close()
    steps, warnings = _steps_and_warnings(tmp_path / "r")
    assert steps == [float(s) for s in range(1, 13)]
    assert [w for w in warnings if "boom" in w] == [
        "metrics of steps 5..8 could not be read (RuntimeError('boom')): skipped"
    ]
    with RunReader(tmp_path / "r") as r:
        acc = user(r.read_metrics(), "acc")
    assert acc[:4] + acc[8:] == [1.0, 2.0, 3.0, 4.0, 9.0, 10.0, 11.0, 12.0]
    assert all(math.isnan(v) for v in acc[4:8])


@pytest.mark.parametrize("name", ["grad_norm/fc", "param_norm/0", "update_ratio/head", "lr/1"])
def test_the_names_of_the_health_series_are_refused(tmp_path: Path, name: str) -> None:
    """``update_ratio/head`` is how the export names a group's health: a metric under that
    name would be exported beside (or over) it."""
    model = nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    probe = Probe(opt, model, run_dir=tmp_path / "r", flush_every=4, flush_seconds=1e9)
    for _ in range(4):
        probe.step(torch.tensor(1.0), metrics={name: torch.tensor(1.0), "ok": 1.0})
        probe.log(**{name: 2.0})
    probe.close()
    _, warnings = _steps_and_warnings(tmp_path / "r")
    assert sum(f"metric {name!r} skipped" in w and "records itself" in w for w in warnings) == 1
    with RunReader(tmp_path / "r") as r:
        assert [n for n in r.read_metrics().columns if n.startswith(U)] == [U + "ok"]
        assert not [n for n in r.read_logged().columns if n.startswith(U)]
