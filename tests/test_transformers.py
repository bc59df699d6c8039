"""The HF Trainer callback on a tiny GPT-2 built from a config (no downloads)."""

from __future__ import annotations

import math
import os
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import wait_for

from optitui.store.client import send
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
from optitui.integrations.transformers import OptituiCallback  # noqa: E402


def tiny_gpt2() -> Any:
    cfg = transformers.GPT2Config(
        n_layer=2, n_embd=32, n_head=2, vocab_size=64, n_positions=32, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg)


def token_data(n: int = 64) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(0)
    rows = [torch.randint(0, 64, (16,), generator=g) for _ in range(n)]
    return [{"input_ids": r, "labels": r} for r in rows]


class GroupsUsed(transformers.TrainerCallback):  # type: ignore[misc,name-defined]
    """Every group's lr at each optimizer step, as the optimizer really used it."""

    def __init__(self) -> None:
        self.rows: list[list[float]] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        kw["optimizer"].optimizer.register_step_pre_hook(
            lambda o, a, k: self.rows.append([g["lr"] for g in o.param_groups])
        )


def test_an_hf_trainer_is_steered_from_the_store(tmp_path: Path) -> None:
    model = tiny_gpt2()
    cb, used = OptituiCallback(tmp_path / "run", flush_every=4), GroupsUsed()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=100_000,
        per_device_train_batch_size=8,
        learning_rate=1e-3,
        warmup_steps=20,
        lr_scheduler_type="linear",
        save_strategy="no",
        logging_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=token_data(), callbacks=[cb, used]
    )
    fit = threading.Thread(target=trainer.train)
    fit.start()
    paths = RunPaths(tmp_path / "run")
    try:
        wait_for(lambda: cb.probe is not None and cb.probe.steps > 3, 60, "training")
        probe = cb.probe
        assert probe is not None and probe.trainer is not None
        assert len(probe.optimizer.param_groups) == 2  # decay and no-decay: both recorded

        # an lr edit: the next step uses it in every group; the warmup goes on around it
        out = send(paths, "scale-lr", {"factor": 0.5}).outcome
        assert out is not None and out.applied
        wait_for(lambda: len(used.rows) > out.step + 3, 30, "steps after the edit")
        sched = transformers.get_linear_schedule_with_warmup(
            torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-3), 20, 100_000
        )
        plain = [1e-3 * sched.lr_lambdas[0](s) for s in range(out.step + 3)]
        for s in range(out.step - 2, out.step + 3):
            want = plain[s] * (0.5 if s >= out.step else 1.0)
            assert used.rows[s] == pytest.approx([want, want], rel=1e-9), s

        # pause: no step while paused; save and restore while paused
        assert send(paths, "pause").outcome.applied  # type: ignore[union-attr]
        wait_for(lambda: probe.state == "paused", 10, "paused")
        frozen = len(used.rows)
        threading.Event().wait(0.3)
        assert len(used.rows) == frozen == probe.steps
        # the Trainer writes the checkpoint as it leaves this step: answered only then
        sent = send(paths, "save", timeout=0)
        kept = {k: v.clone() for k, v in model.state_dict().items()}
        threading.Event().wait(0.3)
        with RunReader(paths.root) as r:
            assert r.outcome(sent.id) is None
            assert any("resume" in e.message for e in r.events() if e.kind == "info")
        assert send(paths, "resume").outcome.applied  # type: ignore[union-attr]
        folder = tmp_path / "out" / f"checkpoint-{frozen}"
        with RunReader(paths.root) as r:
            saved = wait_for(lambda: r.outcome(sent.id), 30, "the save's answer")
        assert saved.applied and saved.reason == f"checkpoint {folder.name}"
        assert (folder / "optitui.json").is_file()
        wait_for(lambda: len(used.rows) > frozen + 5, 30, "steps after resume")
        assert send(paths, "pause").outcome.applied  # type: ignore[union-attr]
        wait_for(lambda: probe.state == "paused", 10, "paused again")
        assert not torch.equal(model.transformer.wte.weight, kept["transformer.wte.weight"])
        nope = send(paths, "restore", {"id": "checkpoint-999999"}).outcome
        assert nope is not None and not nope.applied and "have: checkpoint-" in str(nope.reason)
        back = send(paths, "restore", {"id": "latest"}).outcome
        assert back is not None and back.applied, back
        for k, v in model.state_dict().items():
            assert torch.equal(v, kept[k]), k
        assert probe.trainer.lr.mult == [0.5, 0.5]  # the multipliers came back with it

        assert send(paths, "stop").outcome.applied  # type: ignore[union-attr]
        fit.join(60)
        assert not fit.is_alive()
    finally:
        if fit.is_alive() and cb.probe is not None and cb.probe.trainer is not None:
            cb.probe.trainer.request_stop("test over")
            cb.probe.trainer.resume()
            fit.join(60)
    with RunReader(paths.root) as r:
        st = r.status()
        assert st.state == "stopped" and (st.samples_per_s or 0) > 0
        cols = r.read_metrics()
        assert cols.length == st.step and {"loss", "lr/0", "lr/1"} <= set(cols.columns)
        losses = list(cols.columns["loss"])
        assert all(0 < x < 10 for x in losses)  # the token loss (ln 64 = 4.16 at the start)
        assert r.meta()["probe"]["mode"] == "transformers"
        markers = [e.data.get("marker") for e in r.events() if e.data]
        assert "save" in markers and "restore" in markers


def test_everything_the_trainer_logs_is_recorded_under_its_own_name(tmp_path: Path) -> None:
    cb = OptituiCallback(tmp_path / "run", flush_every=4, health_every=1)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"),
        max_steps=8,
        per_device_train_batch_size=8,
        logging_steps=2,
        eval_strategy="steps",
        eval_steps=4,
        save_strategy="no",
        report_to=[],
        use_cpu=True,
        disable_tqdm=True,
        dataloader_num_workers=0,
    )
    data = token_data()
    trainer = transformers.Trainer(
        model=tiny_gpt2(), args=args, train_dataset=data, eval_dataset=data[:16], callbacks=[cb]
    )
    trainer.train()
    history = trainer.state.log_history
    with RunReader(tmp_path / "run") as r:
        logged = r.read_logged()
        c = logged.columns
        steps = list(c["step"])
        # on_log at steps 2, 4, 6, 8, an evaluation at 4 and 8, the summary at the end
        assert {2.0, 4.0, 6.0, 8.0} <= set(steps)
        for entry in history:
            at = [i for i, s in enumerate(steps) if s == entry["step"]]
            for key, value in entry.items():
                if key == "step" or not isinstance(value, int | float):
                    continue
                name = f"train/{key}" if key in ("loss", "grad_norm", "epoch") else key
                got = [c["user:" + name][i] for i in at]
                assert any(g == pytest.approx(value, rel=1e-6) for g in got), (key, entry)
        assert "user:eval_loss" in c and "user:learning_rate" in c and "user:train/loss" in c
        assert [s for _, s, _, _ in r.val()] == [4, 8]  # eval_loss is still the val loss
        cols = r.read_metrics().columns
    # optimizer health of every step: the groups' gradients together are the norm the
    # Trainer logs, after its clipping to max_grad_norm (1.0)
    clipped = [e for e in history if "grad_norm" in e]
    assert len(clipped) == 4  # logged at steps 2, 4, 6 and 8
    for entry in clipped:
        i = int(entry["step"]) - 1
        total = math.hypot(cols["grad_norm/0"][i], cols["grad_norm/1"][i])
        assert total == pytest.approx(min(entry["grad_norm"], 1.0), rel=1e-4)
        assert cols["update_ratio/0"][i] > 0 and cols["update_ratio/1"][i] > 0
