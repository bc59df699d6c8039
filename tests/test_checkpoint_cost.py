"""What a checkpoint write takes from training: the writer's priority and its CPU."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, drive, make_trainer, tiny_job
from torch.utils._python_dispatch import TorchDispatchMode

from optitui.trainer.control import commands as control
from optitui.trainer.core import checkpoint


def _snap(model: dict[str, torch.Tensor], opt_state: dict[int, Any] | None = None) -> Any:
    return {
        "model": model,
        "optimizer": {"state": opt_state or {}, "param_groups": []},
        "optimizer_class": "SGD",
        "step": 1,
        "epoch": 0,
    }


class _Sizes(TorchDispatchMode):
    """The number of elements of every tensor an operator makes."""

    def __init__(self) -> None:
        super().__init__()
        self.made: list[tuple[str, int]] = []

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        for t in out if isinstance(out, tuple | list) else [out]:
            if isinstance(t, torch.Tensor):
                self.made.append((str(func), t.numel()))
        return out


def test_the_finiteness_check_makes_nothing_the_size_of_the_state() -> None:
    """A finite state is checked with one reduction per tensor: no element-wise mask the
    size of each tensor, which cost the writer as much CPU as the hash and the write."""
    snap = _snap(
        {"a.weight": torch.randn(256, 256), "a.bias": torch.randn(256)},
        {0: {"momentum_buffer": torch.randn(256, 256)}, 1: {"step": torch.tensor(3.0)}},
    )
    with _Sizes() as sizes:
        assert checkpoint.non_finite(snap) is None
    big = [(op, n) for op, n in sizes.made if n > 4]
    assert sizes.made and not big, big


@pytest.mark.parametrize(
    ("model", "opt_state", "expected", "found"),
    [
        # finite values whose sum overflows: nothing wrong with them
        ({"w": torch.full((4,), 3e38)}, None, None, None),
        ({"w": torch.full((4,), 6e4, dtype=torch.float16)}, None, None, None),
        ({"w": torch.tensor([3e38, 3e38, float("nan")])}, None, None, "w"),
        ({"w": torch.tensor([1.0, -float("inf")])}, None, None, "w"),
        ({"w": torch.zeros(0), "v": torch.tensor([float("inf")])}, None, None, "v"),
        ({"n": torch.tensor([1, 2])}, None, None, None),  # integer entries are skipped
        # a dtype without a sum everywhere gets the exact look
        ({"w": torch.tensor([1.0, float("nan")]).to(torch.float8_e5m2)}, None, None, "w"),
        ({"w": torch.ones(3).to(torch.float8_e5m2)}, None, None, None),
        # a causal mask's -inf was there from the start; a NaN in it was not
        ({"mask": torch.tensor([0.0, -float("inf")])}, None, {"mask": (False, True)}, None),
        ({"mask": torch.tensor([float("nan"), 0.0])}, None, {"mask": (False, True)}, "mask"),
        (
            {"w": torch.ones(3)},
            {0: {"exp_avg": torch.tensor([1.0, float("nan")])}},
            None,
            "optimizer state.0.exp_avg",
        ),
        (  # the model is named before the optimizer's state
            {"w": torch.tensor([float("inf")])},
            {0: {"exp_avg": torch.tensor([float("nan")])}},
            None,
            "w",
        ),
    ],
)
def test_non_finite_names_what_training_broke_and_nothing_else(
    model: dict[str, torch.Tensor],
    opt_state: dict[int, Any] | None,
    expected: checkpoint.Expected | None,
    found: str | None,
) -> None:
    assert checkpoint.non_finite(_snap(model, opt_state), expected) == found


@pytest.mark.parametrize(
    ("dtype", "value"), [(torch.float16, 60.0), (torch.bfloat16, 1e37), (torch.float32, 1e37)]
)
def test_a_finite_state_whose_sums_overflow_takes_no_exact_look(
    dtype: torch.dtype, value: float, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finite tensor whose sum overflows (a float16 one past 65,504) is told finite by
    its extremes, without the exact look that makes masks the size of the state."""
    looked: list[torch.Tensor] = []
    exact = checkpoint._kinds

    def kinds(t: torch.Tensor) -> tuple[bool, bool] | None:
        looked.append(t)
        return exact(t)

    monkeypatch.setattr(checkpoint, "_kinds", kinds)
    state = {"w": torch.full((512, 64), value, dtype=dtype), "b": torch.ones(64, dtype=dtype)}
    assert checkpoint.non_finite(_snap(state, {0: {"exp_avg": state["w"].clone()}})) is None
    assert looked == []
    state["w"][3, 5] = float("nan")  # and a NaN among them is still found, and named
    assert checkpoint.non_finite(_snap(state)) == "w"
    assert len(looked) == 1


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no per-thread priority here")
def test_the_checkpoint_writer_takes_the_lowest_priority_and_training_keeps_its_own(
    tmp_path: Path,
) -> None:
    own = os.getpriority(os.PRIO_PROCESS, 0)
    if own >= 19:  # e.g. the suite run under `nice -n 19`
        pytest.skip(f"tests run at nice {own}: the writer has no lower priority left to take")
    t = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.01}))
    drive(t, 3, {})
    control.apply(t, command("save", tag="n"))
    assert t.saver is not None
    t.saver.wait()  # the writer has run: its thread waits for the next save
    tid = t.saver._thread.native_id
    assert tid is not None
    assert os.getpriority(os.PRIO_PROCESS, tid) == 19
    assert os.getpriority(os.PRIO_PROCESS, 0) == own  # the training thread's is untouched
    t.saver.close()


def test_the_state_reaches_its_file_in_a_few_large_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch writes a zip header, a record and padding per tensor, most of them small:
    they are gathered so the GIL is let go and taken back a few times, not hundreds."""
    real = os.write
    sizes: list[int] = []

    def counted(fd: int, data: Any) -> int:
        sizes.append(len(data))
        return real(fd, data)

    snap = _snap({f"b{i}": torch.full((64,), float(i)) for i in range(60)})
    snap["model"]["w"] = torch.full((512, 512), 2.0)  # 1 MB
    monkeypatch.setattr(os, "write", counted)
    m = checkpoint.write(tmp_path, snap, checkpoint.new_id(1, "manual"), reason="manual")
    monkeypatch.undo()
    assert len(sizes) <= 5, sizes  # small records and headers, the large one, the manifest
    loaded = checkpoint.load(tmp_path / m.file, m)
    for name, t in snap["model"].items():
        assert torch.equal(loaded["model"][name], t)
