"""The loops the comparison times (also imported by the job scripts ``optitui run``
loads) and the names of the variants it runs them under."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
for p in (str(REPO), str(BENCH)):
    if p not in sys.path:
        sys.path.insert(0, p)

RESULTS = BENCH / "RESULTS.md"
SIZE = (160, 48)

BARE = "bare loop"
HEADLESS = "optitui headless"
ATTACHED = "optitui + dashboard attached"
INLINE = "optitui --inline"
TB = "TensorBoard SummaryWriter"
TRACKIO = "trackio"
WANDB = "wandb (offline)"
#: ``optitui.watch`` in the user's own loop: ``probe.step(loss)`` after each step
PROBE = "optitui probe (own loop)"
VARIANTS = [BARE, HEADLESS, ATTACHED, INLINE, TB, TRACKIO, WANDB]
#: optitui as it was before a change (``compare.py --before CHECKOUT``), in the paired rows
BEFORE_HEADLESS = "optitui headless (before)"
LOOPS = {
    "empty": "near-empty step: Linear(8, 8) + ReLU + Linear(8, 2), batch 8, pre-made batches",
    "tiny": "tiny step: digits MLP (64-128-64-10), batch 64, pre-made batches",
    "mid": "0.4-ms step: MLP (64-192-192-10), batch 64, pre-made batches",
    "heavy": "heavier step: conv net (3-16-32 conv, 128 fc), batch 48, generated 32x32 images",
}


# ------------------------------------------------------------------------------------------
# the loops (also imported by the generated job scripts that `optitui run` loads)
# ------------------------------------------------------------------------------------------
def make_loop(loop: str) -> tuple[Any, Any, list[Any], Callable[..., Any]]:
    """(model, optimizer with two param groups, pre-made batches, loss_fn)."""
    import torch
    from torch import nn

    torch.set_num_threads(1)
    if loop == "tiny":
        from overhead import digits, model_and_opt

        ds = digits()
        batches = [ds[i : i + 64] for i in range(0, len(ds) - 63, 64)]
        model, opt = model_and_opt()
        return model, opt, batches, nn.functional.cross_entropy
    if loop == "empty":  # the tools' fixed cost per step, with little else to hide it
        torch.manual_seed(0)
        body, head = nn.Sequential(nn.Linear(8, 8), nn.ReLU()), nn.Linear(8, 2)
        opt = torch.optim.SGD(
            [{"params": body.parameters(), "lr": 0.05}, {"params": head.parameters(), "lr": 0.02}],
            momentum=0.9,
        )
        g = torch.Generator().manual_seed(0)
        batches = [
            (torch.randn(8, 8, generator=g), torch.randint(0, 2, (8,), generator=g))
            for _ in range(32)
        ]
        return nn.Sequential(body, head), opt, batches, nn.functional.cross_entropy
    if loop == "mid":  # a step of about 0.4 ms on 1 quiet thread: the probe's target size
        torch.manual_seed(0)
        body = nn.Sequential(nn.Linear(64, 192), nn.ReLU(), nn.Linear(192, 192), nn.ReLU())
        head = nn.Linear(192, 10)
        opt = torch.optim.SGD(
            [{"params": body.parameters(), "lr": 0.05}, {"params": head.parameters(), "lr": 0.02}],
            momentum=0.9,
        )
        g = torch.Generator().manual_seed(0)
        batches = [
            (torch.randn(64, 64, generator=g), torch.randint(0, 10, (64,), generator=g))
            for _ in range(16)
        ]
        return nn.Sequential(body, head), opt, batches, nn.functional.cross_entropy
    if loop != "heavy":
        raise ValueError(loop)
    torch.manual_seed(0)
    features = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
    )
    head = nn.Sequential(nn.Linear(32 * 8 * 8, 128), nn.ReLU(), nn.Linear(128, 10))
    opt = torch.optim.SGD(
        [
            {"params": features.parameters(), "lr": 0.02, "name": "features"},
            {"params": head.parameters(), "lr": 0.01, "name": "head"},
        ],
        momentum=0.9,
    )
    g = torch.Generator().manual_seed(0)
    batches = [
        (torch.randn(48, 3, 32, 32, generator=g), torch.randint(0, 10, (48,), generator=g))
        for _ in range(16)
    ]
    return nn.Sequential(features, head), opt, batches, nn.functional.cross_entropy


class StepClock:
    """Wraps a loss_fn (same wrapper in every variant): notes the CPU time of the process
    (all its threads, plus its child processes'), of the training thread alone, and the
    wall time when the ``first``-th and the ``last``-th call begin; with ``path``, writes
    them there at the last."""

    def __init__(
        self, loss_fn: Callable[..., Any], first: int, last: int, path: str | None = None
    ) -> None:
        self.loss_fn, self.first, self.last, self.path = loss_fn, first, last, path
        self.calls = 0
        self.marks: list[tuple[float, float, float]] = []

    def __call__(self, out: Any, target: Any) -> Any:
        self.calls += 1
        if self.calls == self.first or self.calls == self.last:
            self.marks.append((process_cpu(), time.time(), time.thread_time()))
            if self.path is not None and self.calls == self.last:
                Path(self.path).write_text(json.dumps(self.result()))
        return self.loss_fn(out, target)

    def result(self) -> dict[str, float]:
        (c0, w0, t0), (c1, w1, t1) = self.marks
        n = self.last - self.first
        return {
            "cpu_us": (c1 - c0) / n * 1e6,
            "clock_wall_us": (w1 - w0) / n * 1e6,
            "thread_cpu_us": (t1 - t0) / n * 1e6,  # the thread that calls loss_fn
        }


def process_cpu() -> float:
    """CPU seconds of this process and of its children still running (wandb's service)."""
    total = time.process_time()
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            t = child.cpu_times()
            total += t.user + t.system
    return total


def make_job(loop: str, steps: int | None = None, clock_file: str | None = None) -> Any:
    """The loop as an optitui Job; with ``clock_file``, its StepClock writes there."""
    from optitui.trainer.core.job import Job

    model, opt, batches, loss_fn = make_loop(loop)
    if clock_file is not None:
        assert steps is not None
        loss_fn = StepClock(loss_fn, steps // 10 + 1, steps, clock_file)
    return Job(model=model, optimizer=opt, train_data=batches, loss_fn=loss_fn)


def sleep_job(step_s: float) -> Any:
    """A job whose step is a sleep of ``step_s`` plus a tiny model (command latency)."""
    import torch
    from torch import nn

    from optitui.trainer.core.job import Job

    torch.manual_seed(0)
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    batch = (torch.randn(8, 4), torch.randn(8, 1))

    def step_fn(m: nn.Module, b: Any) -> torch.Tensor:
        time.sleep(step_s)
        return nn.functional.mse_loss(m(b[0]), b[1])

    return Job(model=model, optimizer=opt, train_data=[batch], step_fn=step_fn)


JOB_SCRIPT = """\
import sys
sys.path.insert(0, {bench!r})
import compare_loops as compare


def setup(device):
    return {call}
"""


def write_script(folder: Path, name: str, call: str) -> Path:
    path = folder / f"{name}.py"
    path.write_text(JOB_SCRIPT.format(bench=str(BENCH), call=call))
    return path


def orders(variants: list[str], rounds: int) -> Iterator[list[str]]:
    """Rotate the order every round and reverse it every other round."""
    for r in range(rounds):
        k = r % len(variants)
        order = variants[k:] + variants[:k]
        yield order if r % 2 == 0 else order[::-1]
