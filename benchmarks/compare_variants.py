"""Worker side: one variant of one loop, in a fresh process, timed per step."""

from __future__ import annotations

import contextlib
import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_loops import (
    ATTACHED,
    BARE,
    HEADLESS,
    INLINE,
    PROBE,
    TB,
    TRACKIO,
    WANDB,
    StepClock,
    make_loop,
    orders,
    write_script,
)
from compare_machine import Tmux, optitui_command, proc_cpu_seconds, shows_all


# ------------------------------------------------------------------------------------------
# worker side: one variant of one loop, in a fresh process
# ------------------------------------------------------------------------------------------
def summarize_times(times: list[float], warm: int) -> dict[str, float]:
    t = times[warm:]
    diffs = sorted(b - a for a, b in itertools.pairwise(t))
    return {
        "mean_us": (t[-1] - t[0]) / (len(t) - 1) * 1e6,
        "median_us": diffs[len(diffs) // 2] * 1e6,
        "p99_us": diffs[int(0.99 * (len(diffs) - 1))] * 1e6,
    }


def bare_loop(
    model: Any,
    opt: Any,
    batches: list[Any],
    loss_fn: Callable[..., Any],
    steps: int,
    hook: Callable[[int, Any, Any], None] | None = None,
) -> list[float]:
    """The loop users write, with a timestamp per step; ``hook`` is the user's logging call."""
    times = [0.0] * steps
    done = 0
    while done < steps:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            opt.step()
            if hook is not None:
                hook(done, loss, opt)
            times[done] = time.time()
            done += 1
            if done == steps:
                break
    return times


def tool_hook(
    variant: str, tmp: Path, name: str, model: Any = None, opt: Any = None
) -> tuple[Callable[..., None], Callable[[], None]]:
    """(log(step, loss, optimizer), close()) for a logging tool, set up as its docs show
    (optitui's probe needs the ``model`` and ``opt`` it watches)."""
    if variant == PROBE:  # optitui in the user's own loop, as the README shows it
        import optitui

        probe = optitui.watch(opt, model=model, run_dir=tmp / name)

        def log_probe(step: int, loss: Any, opt: Any) -> None:
            probe.step(loss)

        return log_probe, probe.close
    if variant == TB:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(tmp / "tb" / name))

        def log_tb(step: int, loss: Any, opt: Any) -> None:
            writer.add_scalar("loss", loss, step)  # a tensor: add_scalar reads it
            for i, g in enumerate(opt.param_groups):
                writer.add_scalar(f"lr/{i}", g["lr"], step)

        return log_tb, writer.close
    if variant == TRACKIO:
        import trackio

        trackio.init(project="optitui-bench", name=name, embed=False)

        def log_trackio(step: int, loss: Any, opt: Any) -> None:
            # trackio takes JSON values only (a tensor is dropped with a warning)
            values = {"loss": loss.item()}
            for i, g in enumerate(opt.param_groups):
                values[f"lr/{i}"] = g["lr"]
            trackio.log(values)

        return log_trackio, trackio.finish
    if variant == WANDB:
        import wandb

        run = wandb.init(project="optitui-bench", name=name, mode="offline", dir=str(tmp))

        def log_wandb(step: int, loss: Any, opt: Any) -> None:
            values = {"loss": loss}  # wandb converts tensors itself (.item())
            for i, g in enumerate(opt.param_groups):
                values[f"lr/{i}"] = g["lr"]
            run.log(values)

        return log_wandb, run.finish
    raise ValueError(variant)


def store_times(run_dir: Path) -> list[float]:
    from optitui.store.reader import RunReader

    with RunReader(run_dir) as r:
        return list(r.read_metrics().columns["time"])


def run_variant(variant: str, loop: str, steps: int, tmp: Path, tag: str) -> dict[str, Any]:
    """Train ``steps`` steps of ``loop`` under ``variant``; per-step timestamps and extras."""
    import torch

    from optitui.store.layout import create_run_dir
    from optitui.trainer.core.job import Job
    from optitui.trainer.loop.trainer import Trainer

    slug = "".join(c if c.isalnum() else "_" for c in variant).strip("_")
    name = f"{loop}-{tag}-{slug}"
    extra: dict[str, Any] = {}
    if variant == INLINE:
        return run_inline(loop, steps, tmp, name)
    model, opt, batches, plain_loss = make_loop(loop)
    loss_fn = StepClock(plain_loss, steps // 10 + 1, steps)
    if variant in (BARE, PROBE, TB, TRACKIO, WANDB):
        t0 = time.time()
        hook, close = (None, None) if variant == BARE else tool_hook(variant, tmp, name, model, opt)
        times = bare_loop(model, opt, batches, loss_fn, steps, hook)
        t_last = time.time()
        if close is not None:
            close()
        return {
            "times": times,
            "setup_s": times[0] - t0,
            "close_s": time.time() - t_last,
            **loss_fn.result(),
        }
    job = Job(model=model, optimizer=opt, train_data=batches, loss_fn=loss_fn)
    t0 = time.time()
    paths = create_run_dir(tmp, name, tmp / name)
    trainer = Trainer(job, torch.device("cpu"), paths, max_steps=steps)
    built = time.time() - t0
    viewer = None
    if variant == ATTACHED:
        viewer = Tmux(optitui_command("attach", str(paths.root)))
        viewer.start()
        if not viewer.wait_for(lambda s: "q quit" in s and "step" in s, 60):
            viewer.close()
            raise RuntimeError("the attached dashboard did not draw within 60 s")
        time.sleep(0.5)  # its first full frame, then training starts
        cpu0, tcpu0 = proc_cpu_seconds(viewer.pane_pid), proc_cpu_seconds(viewer.server_pid)
    elif variant != HEADLESS:
        raise ValueError(variant)
    t_run = time.time()
    trainer.run()
    t_end = time.time()
    times = store_times(paths.root)
    if viewer is not None:
        cpu1, tcpu1 = proc_cpu_seconds(viewer.pane_pid), proc_cpu_seconds(viewer.server_pid)
        span = t_end - t_run
        extra["viewer_cpu_pct"] = (cpu1 - cpu0) / span * 100
        extra["terminal_cpu_pct"] = (tcpu1 - tcpu0) / span * 100
        extra["viewer_drew_last_step"] = viewer.wait_for(shows_all(steps), 10)
        viewer.close()
    return {
        "times": times,
        "setup_s": built + times[0] - t_run,
        "close_s": t_end - times[-1],
        **loss_fn.result(),
        **extra,
    }


def run_inline(loop: str, steps: int, tmp: Path, name: str) -> dict[str, Any]:
    """``optitui run SCRIPT --inline`` in a tmux pane: the loop in a thread of the process
    that draws the dashboard; timestamps from its run store."""
    from optitui.store.reader import RunReader

    clock = tmp / f"{name}.clock.json"
    script = write_script(
        tmp,
        f"job_{name.replace('-', '_')}",
        f"compare.make_job({loop!r}, {steps}, {str(clock)!r})",
    )
    run_dir = tmp / name
    if run_dir.exists():
        raise FileExistsError(run_dir)
    pane = Tmux(
        optitui_command(
            "run",
            str(script),
            "--inline",
            "--device",
            "cpu",
            "--run-dir",
            str(run_dir),
            "--max-steps",
            str(steps),
        )
    )
    pane.start()
    try:
        deadline = time.time() + 600
        state = ""
        while time.time() < deadline:
            if (run_dir / "store.sqlite").exists():
                with contextlib.suppress(Exception), RunReader(run_dir) as r:
                    state = r.status().state
                if state in ("finished", "stopped", "failed", "crashed"):
                    break
            time.sleep(0.1)
        if state != "finished":
            raise RuntimeError(f"the --inline run ended {state or 'never'}: {pane.screen()[-800:]}")
        drew = pane.wait_for(shows_all(steps), 10)
    finally:
        pane.close()
    times = store_times(run_dir)
    return {
        "times": times,
        "setup_s": None,
        "close_s": None,
        "viewer_drew_last_step": drew,
        **json.loads(clock.read_text()),
    }


def paired_runs(
    loop: str, steps: int, rounds: int, variants: list[str], tmp: Path
) -> list[dict[str, Any]]:
    """``variants`` one after the other in this one process, ``rounds`` times (order rotated):
    a round's runs are seconds apart, so the machine's load is about the same for all."""
    out = []
    for i, order in enumerate(orders(variants, rounds)):
        got = {}
        for v in order:
            r = run_variant(v, loop, steps, tmp, f"p{i}")
            times = r.pop("times")
            got[v] = {**r, **summarize_times(times, steps // 10)}
        out.append(got)
    return out
