"""Fixed run stores and a torch-free stand-in job for the dashboard's tests.

The stores are written with the real :class:`StoreWriter` from fixed records
(fixed steps, losses, timestamps), so screenshots are byte-for-byte stable.
:class:`FakeJob` answers commands the way the trainer does (outcome row plus
command event, group snapshot after a change) without torch, so key-binding
tests run in well under a second; tests that need the real thing start
``python -m optitui run --headless`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import math
import queue
import sqlite3
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any, ParamSpec

from textual.pilot import Pilot

from optitui.launch import Launched
from optitui.store.commands import Command, Rejected
from optitui.store.inbox_files import take_inbox
from optitui.store.layout import RunPaths, create_run_dir
from optitui.store.records import (
    Event,
    GroupSnapshot,
    MetaUpdate,
    MetricBatch,
    Outcome,
    Record,
    StatusUpdate,
    ValRecord,
)
from optitui.store.writer import StoreWriter
from optitui.tui.app import DashboardApp, build_app
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.command_status import CommandStatus
from optitui.tui.widgets.key_footer import KeyFooter

P = ParamSpec("P")


def pilot_test(fn: Callable[P, Coroutine[Any, Any, None]]) -> Callable[P, None]:
    """Run an async Pilot test without an asyncio pytest plugin."""

    @functools.wraps(fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> None:
        asyncio.run(fn(*args, **kwargs))

    return run


#: "now" for every fixed store: 2026-09-21T12:26:40Z
FIXED_NOW = 1_790_000_000.0
START = FIXED_NOW - 600.0

SGD_FIELDS: dict[str, Any] = {
    "lr": {"name": "lr", "kind": "float", "low": 0.0},
    "momentum": {"name": "momentum", "kind": "float", "low": 0.0},
    "dampening": {"name": "dampening", "kind": "float"},
    "weight_decay": {"name": "weight_decay", "kind": "float", "low": 0.0},
    "nesterov": {"name": "nesterov", "kind": "bool"},
    "maximize": {"name": "maximize", "kind": "bool"},
    "foreach": {"name": "foreach", "kind": "readonly", "note": "implementation choice"},
}
ADAM_BETAS: dict[str, Any] = {
    "name": "betas",
    "kind": "tuple",
    "items": [
        {"name": "beta1", "kind": "float", "low": 0.0, "high": 1.0, "high_open": True},
        {"name": "beta2", "kind": "float", "low": 0.0, "high": 1.0, "high_open": True},
    ],
}


def fixed_controls() -> dict[str, Any]:
    """``meta["controls"]`` as a job reports them: a scheduler, no lookahead, no clipping."""
    return {
        "scheduler": "CosineAnnealingLR",
        "scheduler_attached": True,
        "cycles_momentum": None,
        "lookahead": None,
        "clip": None,
        "optimizer": "SGD",
        "checkpoints": {"every": 500, "minutes": None, "keep_last": 3, "keep_best": True},
        "divergence": {
            "action": "pause",
            "lr_factor": 0.5,
            "skip": 10,
            "spike_factor": 3.0,
            "snapshot_every": 200,
        },
    }


def sgd_groups(lrs: tuple[float, ...] = (0.05, 0.02)) -> list[dict[str, Any]]:
    names = ("body", "head", "emb", "norm")
    out = []
    for i, lr in enumerate(lrs):
        out.append(
            {
                "index": i,
                "name": names[i],
                "params": (16576, 650, 4096, 128)[i],
                "frozen": False,
                "lr_multiplier": 1.0,
                "values": {
                    "lr": lr,
                    "momentum": 0.9,
                    "dampening": 0,
                    "weight_decay": 0.0001,
                    "nesterov": False,
                    "maximize": False,
                    "foreach": None,
                },
                "fields": dict(SGD_FIELDS),
            }
        )
    return out


def loss_at(step: int) -> float:
    """A deterministic, noisy-looking training curve."""
    return 2.3 * math.exp(-step / 120.0) + 0.08 + 0.05 * math.sin(step * 1.7) ** 2


def lr_at(step: int, total: int) -> float:
    """Warmup then cosine: spans a decade, so the log axis has work to do."""
    if step < 50:
        return 0.05 * (step + 1) / 50
    return 0.005 + 0.045 * 0.5 * (1 + math.cos(math.pi * (step - 50) / max(total - 50, 1)))


#: the fixed runs train at this pace, and their step 600 was recorded 3 s before FIXED_NOW
STEPS_PER_S = 123.4


def step_time(step: int) -> float:
    """The wall time of a fixed run's step."""
    return FIXED_NOW - 3.0 + (step - 600) / STEPS_PER_S


def metric_batches(
    first: int, last: int, total: int, chunk: int = 64, groups: int = 2, scale: float = 1.0
) -> list[MetricBatch]:
    out = []
    for s0 in range(first, last + 1, chunk):
        steps = list(range(s0, min(s0 + chunk, last + 1)))
        cols = {
            "step": [float(s) for s in steps],
            "epoch": [float(s // 100) for s in steps],
            "time": [step_time(s) for s in steps],
            "loss": [scale * loss_at(s) for s in steps],
            "lr/0": [lr_at(s, total) for s in steps],
            "lr/1": [0.02 if s < 300 else 0.022 for s in steps],
        }
        if groups > 2:  # a constant lr: a flat line on the log axis
            cols["lr/2"] = [0.002 for _ in steps]
        out.append(MetricBatch(cols))
    return out


def write_fixed_store(
    run_dir: Path,
    *,
    steps: int = 600,
    state: str = "running",
    groups: list[dict[str, Any]] | None = None,
    max_steps: int | None = 1000,
    keep_open: bool = False,
    loss_scale: float = 1.0,
) -> tuple[RunPaths, StoreWriter | None]:
    """A run store with ``steps`` steps of fixed history (its losses ``loss_scale`` times
    the usual); the writer is returned open when ``keep_open`` (for a :class:`FakeJob`),
    else closed."""
    paths = create_run_dir(run_dir.parent, run_dir.name, run_dir)
    groups = groups if groups is not None else sgd_groups()
    meta = {
        "host": "fixed-host",
        "start": START,
        "device": "cpu",
        "optimizer": "SGD",
        "scheduler": None,
        "max_steps": max_steps,
        "groups": [g["name"] for g in groups],
        "script": "/fixed/digits.py",
        "mode": "headless",
        "controls": fixed_controls(),
    }
    w = StoreWriter(paths, meta)
    records: list[Record] = [GroupSnapshot(0, groups, time=START)]
    records += metric_batches(1, steps, max_steps or steps, scale=loss_scale)
    records += [
        ValRecord(s, s // 100, loss_at(s) + 0.1, time=START + s) for s in range(100, steps + 1, 100)
    ]
    if steps >= 300:
        records.append(
            Event(
                300,
                "command",
                "scale-lr 1.1 group=1: applied after step 300",
                {"kind": "scale-lr", "args": {"factor": 1.1, "group": 1}},
                time=START + 300,
            )
        )
        records.append(Event(300, "warning", "loss spike at step 300", time=START + 300))
    records.append(
        StatusUpdate(
            state,
            steps,
            steps // 100,
            steps_per_s=123.4,
            samples_per_s=7897.6,
            last_record=FIXED_NOW - 3.0,
            message=None if state in ("running", "paused") else f"run {state}",
        )
    )
    w.write(records)
    paths.output.write_text("optitui: training on cpu\nepoch 5: accuracy 0.93\n")
    set_heartbeat(paths, FIXED_NOW - 1.0)
    if keep_open:
        return paths, w
    w.close()
    return paths, None


SHOWCASE_TRACEBACK = """Traceback (most recent call last):
  File "/fixed/digits.py", line 88, in step_fn
    loss = model(x).log_softmax(-1).gather(1, y[:, None]).mean()
RuntimeError: index 10 is out of bounds for dimension 1 with size 10
"""


def write_showcase_store(
    run_dir: Path, state: str = "failed", extra: list[Record] | None = None
) -> RunPaths:
    """Everything the dashboard can show at once: three groups (one with a constant lr),
    a scheduler, markers of every kind, and (by default) a run that failed at step 600;
    ``extra`` records are written last."""
    groups = sgd_groups((0.05, 0.022, 0.002))
    paths, writer = write_fixed_store(run_dir, steps=0, groups=groups, keep_open=True)
    assert writer is not None
    records: list[Record] = list(metric_batches(1, 600, 1000, groups=3))
    records += [
        ValRecord(s, s // 100, loss_at(s) + 0.1, time=step_time(s)) for s in range(100, 601, 100)
    ]
    for s in range(100, 601, 100):
        records.append(
            Event(
                s,
                "checkpoint",
                f"saved step {s} (periodic)",
                {"marker": "save", "id": f"c{s}", "reason": "periodic"},
            )
        )
    records += [
        Event(
            150,
            "command",
            "set momentum=0.95 group=body: applied after step 150",
            {"kind": "set", "args": {"values": {"momentum": 0.95}, "group": 0}},
        ),
        Event(250, "info", "range test 4f2a started", {"marker": "lr-find", "id": "4f2a"}),
        Event(
            300,
            "command",
            "scale-lr 1.1 group=head: applied after step 300",
            {"kind": "scale-lr", "args": {"factor": 1.1, "group": 1}},
        ),
        Event(520, "warning", "loss spike at step 520", {"marker": "spike"}),
        Event(
            600,
            "error",
            "RuntimeError: index 10 is out of bounds for dimension 1 with size 10",
            {"traceback": SHOWCASE_TRACEBACK},
        ),
    ]
    metrics = [r for r in records if not isinstance(r, Event)]
    events = sorted((r for r in records if isinstance(r, Event)), key=lambda e: e.step)
    records = metrics + events  # the log in the order a job writes it
    message = (
        None
        if state in ("running", "paused")
        else ("RuntimeError: index 10 is out of bounds for dimension 1 with size 10")
    )
    records.append(StatusUpdate(state, 600, 6, 123.4, 7897.6, None, FIXED_NOW - 3.0, message))
    writer.write(records + list(extra or []))
    writer.close()
    set_heartbeat(paths, FIXED_NOW - 1.0)
    return paths


def set_heartbeat(paths: RunPaths, when: float) -> None:
    """Pin the heartbeat (StoreWriter stamps the real time) so ages are deterministic."""
    conn = sqlite3.connect(str(paths.db), isolation_level=None)
    try:
        conn.execute("UPDATE status SET heartbeat = ? WHERE id = 1", (when,))
    finally:
        conn.close()


def stamp_meta(paths: RunPaths, key: str, value: str) -> None:
    """Rewrite one metadata value (JSON text): a store as another optitui wrote it."""
    conn = sqlite3.connect(str(paths.db), isolation_level=None)
    try:
        conn.execute("UPDATE meta SET value = ? WHERE key = ?", (value, key))
    finally:
        conn.close()


def fixed_settings(**changes: Any) -> ViewerSettings:
    changes.setdefault("clock", lambda: FIXED_NOW)
    return ViewerSettings(**changes)


def fixed_app(run_dir: Path, **settings: Any) -> DashboardApp:
    return build_app(run_dir, settings=fixed_settings(**settings))


async def wait_until(
    pilot: Pilot[Any], cond: Callable[[], Any], timeout: float = 10.0, what: str = ""
) -> Any:
    """Let the app run until ``cond()`` is truthy (no fixed sleeps in the tests)."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or cond}")
        await pilot.pause(0.02)


async def loaded(pilot: Pilot[Any], length: int | None = None) -> None:
    """Wait until the first store update is on screen and both plots drew it."""
    app = pilot.app
    assert isinstance(app, DashboardApp)
    screen = app.dashboard
    # a hang guard, not a deadline: a loaded machine reads a long run for seconds
    await wait_until(pilot, lambda: screen.updates > 0, timeout=30.0, what="the first store update")

    def want() -> int:
        # a live job keeps writing: the length to wait for is the one in the store now
        return length if length is not None else screen.plots[0].view.length

    await wait_until(
        pilot,
        lambda: all(p.shows(want()) for p in screen.plots),
        timeout=30.0,
        what=f"plots drawn at {want()} steps",
    )
    await keys_settled(pilot)


async def keys_settled(pilot: Pilot[Any]) -> None:
    """Wait until the key bar shows the screen's keys: a key that changes them (focus,
    a toggle) has the bar recomposed after the next refresh, and a picture taken before
    that is done shows the bar empty."""
    await pilot.pause()
    await wait_until(
        pilot,
        lambda: all(f.settled for f in pilot.app.screen.query(KeyFooter)),
        timeout=30.0,
        what="the key bar recomposed",
    )
    await pilot.pause()


def snapshot_ready(length: int) -> Callable[[Pilot[Any]], Awaitable[None]]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await loaded(pilot, length)

    return run_before


class FakeJob:
    """Answers commands like the trainer: outcome + command event, snapshots after changes.

    ``reject(command)`` returns a reason to reject, or None to apply. While
    ``hold`` is set, commands wait unanswered (to see "pending" on screen).
    """

    def __init__(
        self,
        paths: RunPaths,
        writer: StoreWriter,
        *,
        groups: list[dict[str, Any]] | None = None,
        step: int = 600,
        reject: Callable[[Command], str | None] = lambda c: None,
    ) -> None:
        self.paths = paths
        self.writer = writer
        self.groups = groups if groups is not None else sgd_groups()
        self.step = step
        self.state = "running"
        self.reject = reject
        self.controls = fixed_controls()
        self.hold = threading.Event()
        self._extra: queue.SimpleQueue[list[Record]] = queue.SimpleQueue()
        self.seen: list[Command] = []
        self._stop = threading.Event()
        self._waiting: list[Command] = []
        self._thread = threading.Thread(target=self._run, name="fake-job", daemon=True)

    def __enter__(self) -> FakeJob:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.writer.close()

    def put(self, records: list[Record]) -> None:
        """Have the job's thread (the writer's owner) write ``records``."""
        self._extra.put(records)

    def _run(self) -> None:
        while not self._stop.is_set():
            while not self._extra.empty():
                self.writer.write(self._extra.get())
            for item in take_inbox(self.paths):
                if isinstance(item, Rejected):
                    self.writer.write(
                        [Outcome(item.id, item.kind, item.payload, False, 0, item.reason)]
                    )
                else:
                    self._waiting.append(item)
            records: list[Record] = []
            if not self.hold.is_set():
                while self._waiting:
                    records += self._answer(self._waiting.pop(0))
            self.writer.write(records)  # also refreshes the heartbeat
            self._stop.wait(0.02)

    def _answer(self, cmd: Command) -> list[Record]:
        self.seen.append(cmd)
        reason = self.reject(cmd)
        if reason is not None:
            return [
                Outcome(cmd.id, cmd.kind, cmd.raw, False, self.step, reason),
                Event(self.step, "command", f"{cmd.kind}: rejected: {reason}"),
            ]
        out: list[Record] = []
        group = cmd.args.get("group")
        targets = range(len(self.groups)) if group is None else [int(group)]
        if cmd.kind == "scale-lr":
            for i in targets:
                self.groups[i]["values"]["lr"] *= cmd.args["factor"]
        elif cmd.kind == "set":
            for i in targets:
                self.groups[i]["values"].update(cmd.args["values"])
        elif cmd.kind == "pause":
            self.state = "paused"
        elif cmd.kind == "resume":
            self.state = "running"
        elif cmd.kind == "step":
            self.step += int(cmd.args.get("n", 1))
            self.state = "paused"
        elif cmd.kind == "stop":
            self.state = "stopped"
        elif cmd.kind in ("freeze", "unfreeze"):
            self.groups[int(cmd.args["group"])]["frozen"] = cmd.kind == "freeze"
        out += self._control(cmd)
        if cmd.kind in ("scale-lr", "set", "freeze", "unfreeze"):
            out.append(GroupSnapshot(self.step, [dict(g) for g in self.groups]))
        out.append(Outcome(cmd.id, cmd.kind, cmd.raw, True, self.step))
        out.append(
            Event(
                self.step,
                "command",
                f"{cmd.kind}: applied after step {self.step}",
                {"kind": cmd.kind, "args": cmd.args},
            )
        )
        out.append(StatusUpdate(self.state, self.step, self.step // 100, last_record=time.time()))
        return out

    def _control(self, cmd: Command) -> list[Record]:
        """The live controls a command changes, reported as the trainer does (meta)."""
        c, a = self.controls, cmd.args
        if cmd.kind == "scheduler":
            c["scheduler_attached"] = a["action"] == "attach"
        elif cmd.kind == "lookahead":
            c["lookahead"] = {"k": a["k"], "alpha": a["alpha"]} if a["enabled"] else None
        elif cmd.kind == "clip":
            c["clip"] = a["max_norm"]
        elif cmd.kind == "swap-optimizer":
            c["optimizer"] = a["name"]
        elif cmd.kind == "divergence":
            c["divergence"] = {**c["divergence"], **a}
        else:
            return []
        return [MetaUpdate({"controls": json.loads(json.dumps(c))})]


def commands_table(paths: RunPaths) -> list[tuple[str, dict[str, Any], str, int]]:
    """(kind, args, outcome, step) of every answered command, oldest first."""
    conn = sqlite3.connect(str(paths.db))
    try:
        rows = conn.execute(
            "SELECT kind, payload, outcome, step FROM commands ORDER BY id"
        ).fetchall()
    finally:
        conn.close()
    return [(k, json.loads(p).get("args", {}), o, s) for k, p, o, s in rows]


def live(tmp_path: Path) -> tuple[RunPaths, FakeJob]:
    paths, writer = write_fixed_store(tmp_path / "run", keep_open=True)
    assert writer is not None
    return paths, FakeJob(paths, writer)


def on_dashboard(app: DashboardApp) -> bool:
    return app.screen is app.dashboard


def status_text(app: DashboardApp) -> str:
    return str(app.dashboard.query_one(CommandStatus).render())


TINY_JOB = """
import torch
from torch import nn
import optitui


def setup(device):
    torch.manual_seed(0)
    x = torch.randn(256, 8)
    y = x.sum(1, keepdim=True)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 1)).to(device)
    opt = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "name": "body", "momentum": 0.9},
            {"params": model[2].parameters(), "name": "head"},
        ],
        lr=0.01,
        momentum=0.0,
    )
    batches = [(x[i : i + 32], y[i : i + 32]) for i in range(0, 256, 32)]
    return optitui.Job(model=model, optimizer=opt, train_data=batches,
                       loss_fn=nn.functional.mse_loss, val_data=batches[:2], val_every=50)
"""


class RealJob:
    """``optitui run --headless`` on a tiny script, started the way ``optitui run`` does."""

    def __init__(self, tmp_path: Path, script: str = TINY_JOB) -> None:
        from optitui.launch import JobOptions

        self.script = tmp_path / "tiny.py"
        self.script.write_text(script)
        self.opts = JobOptions(self.script, device="cpu", root=tmp_path / "runs")
        self.launched: Launched | None = None

    def __enter__(self) -> RealJob:
        from optitui.launch import start_job

        self.launched = start_job(self.opts, timeout=60)
        return self

    @property
    def paths(self) -> RunPaths:
        assert self.launched is not None
        return self.launched.paths

    @property
    def process(self) -> subprocess.Popen[bytes]:
        assert self.launched is not None
        return self.launched.process

    def __exit__(self, *exc: object) -> None:
        from optitui.store.client import NoAnswer, send

        assert self.launched is not None
        proc = self.launched.process
        if proc.poll() is None:
            with contextlib.suppress(NoAnswer):
                send(self.paths, "stop", {}, timeout=20)
            try:
                proc.wait(20)
            except Exception:
                proc.kill()
                proc.wait(5)


async def send_form(pilot: Pilot[Any], app: DashboardApp, key: str, **texts: str) -> Any:
    """``key`` opens a form; fill its fields, Enter: the change it sent (the newest)."""
    from textual.widgets import Input, Select

    from optitui.tui.screens.form import FormScreen

    await pilot.press(key)
    form = app.screen
    assert isinstance(form, FormScreen)
    for name, text in texts.items():
        widget = form.query_one(f"#{name}")
        assert isinstance(widget, Input | Select)
        widget.value = text
    await pilot.pause()
    await pilot.press("enter")
    [change] = app.dashboard.steering.recent(1)
    return change
