"""The lr recorded per step is the one the optimizer used, also when a step's row is the
row of the step before (no lr object moved): with schedulers that step every few steps,
keyboard edits, a loop that writes the lr itself, and tensor lrs changed in place."""

from __future__ import annotations

from pathlib import Path

import torch
from jobs import command, make_trainer, tiny_job
from test_probe import LrLog, batches, train
from torch import nn
from torch.optim import lr_scheduler as S

from optitui.store.reader import RunReader
from optitui.trainer.core import lr_record
from optitui.trainer.probe.watch import watch


def test_the_row_before_is_kept_only_while_every_lr_is_the_same_object() -> None:
    groups = [{"lr": 0.1}, {"lr": 0.5}]
    first = lr_record.snapshot(groups)
    assert lr_record.snapshot(groups, first) is first
    groups[1]["lr"] = float("0.5")  # an equal value written again: a new object
    again = lr_record.snapshot(groups, first)
    assert again is not first and again.floats == [0.1, 0.5]
    groups[0]["lr"] = 0.2
    moved = lr_record.snapshot(groups, again)
    assert moved is not again and moved.floats == [0.2, 0.5]
    groups.append({"lr": 0.2})  # a group added: never the old row
    assert lr_record.snapshot(groups, moved).floats == [0.2, 0.5, 0.2]
    lr = torch.tensor(0.1, dtype=torch.float64)
    tensor_groups = [{"lr": lr}]
    held = lr_record.snapshot(tensor_groups)
    lr.mul_(0.5)  # changed in place: the object is the same, its value is not
    rows = [held, lr_record.snapshot(tensor_groups, held)]
    assert rows[1] is not held
    assert lr_record.columns(rows) == [[0.1], [0.05]]


def _used_and_recorded(t: object, log: LrLog) -> tuple[list[list[float]], list[list[float]]]:
    with RunReader(t.paths.root) as r:  # type: ignore[attr-defined]
        cols = r.read_metrics().columns
        recorded = [list(row) for row in zip(cols["lr/0"], cols["lr/1"], strict=True)]
    return log.rows, recorded


def test_trainer_records_what_each_step_used_between_scheduler_steps_and_edits(
    tmp_path: Path,
) -> None:
    job = tiny_job("SGD", {"lr": 0.1, "momentum": 0.9}, max_epochs=None)
    # a scheduler that moves the lr every third step: the steps between reuse their row
    job.scheduler = S.StepLR(job.optimizer, step_size=3, gamma=0.5)
    t = make_trainer(tmp_path, job, flush_every=7, flush_seconds=1e9)
    log = LrLog(job.optimizer)
    edits = {
        5: command("scale-lr", factor=2.0, group="head"),
        11: command("set", values={"lr": 0.0123}),
        17: command("set", values={"lr": 0.0123}),  # the same value again
    }
    t._start()
    while t.step < 24:
        if t.step in edits:
            t.commands.append(edits[t.step])
        t._take_commands()
        if t._step_survived():
            t._after_step()
    t.request_stop("done")
    t._finish("stopped", None)
    used, recorded = _used_and_recorded(t, log)
    assert len(used) == 24 and recorded == used
    assert used[11] == [0.0123, 0.0123]
    assert len({tuple(row) for row in used}) >= 6  # the lr really moved, several times


def test_probe_records_what_each_step_used_when_the_loop_writes_the_lr(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.05},
            {"params": model[2].parameters(), "lr": 0.02},
        ]
    )
    probe = watch(opt, model, run_dir=tmp_path / "r", flush_every=5)
    log = LrLog(opt)  # after the probe's hook: the lr as the step really took it
    for k, b in enumerate(batches(30)):
        if k % 4 == 0:  # the loop's own schedule, every fourth step
            opt.param_groups[0]["lr"] = 0.05 * 0.9 ** (k // 4)
        if k == 9:
            opt.param_groups[1]["lr"] = float("0.02")  # the same value, written again
        if k == 13:
            probe.trainer.commands.append(command("scale-lr", factor=3.0, group=1))  # type: ignore[union-attr]
        loss = train(model, opt, b)
        probe.step(loss)
    probe.close()
    used, recorded = _used_and_recorded(probe.trainer, log)
    assert len(used) == 30 and recorded == used
    assert used[14][1] == 0.06 and used[13][1] == 0.02
