"""The user's own metrics: 5 tensor scalars per step through each tool, side by side.

Every tool logs the loss (and each group's lr) per step, alone and with 5 scalars the
step computed as tensors (accuracy and four statistics of the logits), the way its users
log them: optitui ``probe.step(loss, metrics={...})`` with the tensors (read in the
batched flush); TensorBoard one ``add_scalar`` per value; trackio one ``trackio.log``
of the dict with each tensor turned into a float (it drops tensors); wandb offline one
``run.log`` of the dict (it turns tensors into floats itself). Every variant, the bare
loop included, computes the 5 tensors, so the difference between a tool with and
without them is what logging them costs. The runs are paired in one process with the
order rotated, as in section 1c; the host-device reads are counted as section 2 counts
them, loss only and with the 5 scalars.

Runs minutes apart differ by more than 5 us/step on a busy machine, so the cost of the 5
scalars is also measured inside one run of each tool: blocks of 256 steps logging them
and blocks not logging them, in turn (ABBA), each pair's difference per step. A drift of
the machine then weighs on both halves of a pair alike.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compare_loops import BARE, LOOPS, TB, TRACKIO, WANDB, StepClock, make_loop, orders
from compare_variants import summarize_times, tool_hook
from compare_worker import SyncCounter, package_dirs

PROBE = "optitui probe.step"
#: not a tool: the least any logger pays that keeps a step's tensors until a batched read
#: every 64 steps (a list per step, each value read at the flush, one column per name)
FLOOR = "floor: hold until a read every 64 steps"
TOOLS = [PROBE, TB, TRACKIO, WANDB]
FIVE = " + 5 scalars"
LOOP = "empty"
#: the brief's target for optitui: added time per step for the 5 scalars, and extra syncs
TARGET_US = 5.0
#: steps per block of the alternating measure (a multiple of the flush's 64 steps)
BLOCK_STEPS = 256
#: pairs of blocks run before the measured ones
WARM_PAIRS = 4

Scalars = dict[str, Any]
Hook = Callable[[int, Any, Any, "Scalars | None"], None]


def five_scalars(out: Any, y: Any) -> Scalars:
    """What a user computes beside the loss: 5 tensor scalars, still on the device."""
    import torch

    with torch.no_grad():
        o = out.detach()
        return {
            "acc": (o.argmax(1) == y).float().mean(),
            "logit_mean": o.mean(),
            "logit_max": o.max(),
            "logit_std": o.std(),
            "wrong": (o.argmax(1) != y).sum(),
        }


def metrics_loop(
    model: Any,
    opt: Any,
    batches: list[Any],
    loss_fn: Callable[..., Any],
    steps: int,
    hook: Hook | None,
    with_five: bool,
) -> list[float]:
    """The bare loop of ``compare_variants`` computing the 5 scalars every step; ``hook``
    logs the loss, and the scalars when ``with_five``. A timestamp per step."""
    times = [0.0] * steps
    done = 0
    while done < steps:
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            out = model(x)
            loss = loss_fn(out, y)
            loss.backward()
            opt.step()
            scalars = five_scalars(out, y)
            if hook is not None:
                hook(done, loss, opt, scalars if with_five else None)
            times[done] = time.time()
            done += 1
            if done == steps:
                break
    return times


def logging_hook(
    tool: str, tmp: Path, name: str, model: Any, opt: Any, counting: bool = False
) -> tuple[Hook, Any]:
    """(log(step, loss, optimizer, scalars or None), close()) as each tool's users write it.
    ``counting``: optitui flushes every 64 steps only, not also every 0.5 s, so that its
    reads per 1,000 steps do not depend on how fast a loaded machine steps."""
    if tool == PROBE:
        import optitui

        probe = optitui.watch(opt, model=model, run_dir=tmp / name)
        if counting:
            assert probe.trainer is not None
            probe.trainer.flush_seconds = math.inf

        def log_probe(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
            probe.step(loss, metrics=scalars)  # tensors: read in the flush's one read

        return log_probe, probe.close
    if tool == FLOOR:
        return floor_hook()
    if tool == TB:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(log_dir=str(tmp / "tb" / name))

        def log_tb(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
            writer.add_scalar("loss", loss, step)  # as in 1c: a tensor, which it reads
            for i, g in enumerate(o.param_groups):
                writer.add_scalar(f"lr/{i}", g["lr"], step)
            for k, v in (scalars or {}).items():
                writer.add_scalar(k, v, step)  # one call per value, each tensor read

        return log_tb, writer.close
    _, close = tool_hook(tool, tmp, name)  # trackio's and wandb's init and finish, as in 1c
    if tool == TRACKIO:
        import trackio

        def log_trackio(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
            values: dict[str, Any] = {"loss": loss.item()}
            for i, g in enumerate(o.param_groups):
                values[f"lr/{i}"] = g["lr"]
            for k, v in (scalars or {}).items():
                values[k] = v.item()  # trackio.log takes JSON values only
            trackio.log(values)

        return log_trackio, close
    if tool == WANDB:
        import wandb

        run = wandb.run
        assert run is not None

        def log_wandb(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
            values: dict[str, Any] = {"loss": loss}
            for i, g in enumerate(o.param_groups):
                values[f"lr/{i}"] = g["lr"]
            values.update(scalars or {})  # tensors: wandb reads each one
            run.log(values)

        return log_wandb, close
    raise ValueError(tool)


def floor_hook(every: int = 64) -> tuple[Hook, Callable[[], None]]:
    """The floor under optitui's cost for the scalars: each step's tensors kept (no
    check, no copy) and read one by one every ``every`` steps into a column per name, as
    optitui reads them on the CPU; the loss is kept and read with them. Nothing is
    written anywhere."""
    import torch

    held: list[tuple[Any, Scalars | None]] = []
    columns: dict[str, list[Any]] = {}
    read: Callable[[Any], Any] = torch.Tensor.tolist  # (0-d tensors: a number each)

    def log_floor(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
        held.append((loss.detach(), scalars))
        if len(held) == every:
            columns.setdefault("loss", []).extend(map(read, [x for x, _ in held]))
            for row in (r for _, r in held if r):
                for name, v in row.items():
                    columns.setdefault(name, []).append(read(v))
            held.clear()

    return log_floor, held.clear


def run_one(variant: str, steps: int, tmp: Path, tag: str) -> dict[str, Any]:
    """One run of the empty loop under ``variant`` (a tool, with or without the scalars)."""
    model, opt, batches, plain_loss = make_loop(LOOP)
    loss_fn = StepClock(plain_loss, steps // 10 + 1, steps)
    tool = variant.removesuffix(FIVE)
    slug = "".join(c if c.isalnum() else "_" for c in variant).strip("_")
    hook, close = (
        (None, None) if tool == BARE else logging_hook(tool, tmp, f"m{tag}-{slug}", model, opt)
    )
    times = metrics_loop(model, opt, batches, loss_fn, steps, hook, variant.endswith(FIVE))
    if close is not None:
        close()
    return {**loss_fn.result(), **summarize_times(times, steps // 10)}


def count_reads(tool: str, with_five: bool, steps: int, tmp: Path) -> dict[str, Any]:
    """Reads of tensor values to the host from the tool's code or inside the logging call.

    optitui is counted on the path it takes on a device: on the CPU its flush reads the
    user's tensors one by one instead (no device to wait for there), but the other
    tools' reads are counted on the CPU as they would be on a GPU, so optitui's are too."""
    from optitui.trainer.loop import user_metrics

    model, opt, batches, loss_fn = make_loop(LOOP)
    counter = SyncCounter()
    on_cpu = user_metrics.READ_ONE_BY_ONE
    user_metrics.READ_ONE_BY_ONE = frozenset()
    try:
        hook, close = logging_hook(tool, tmp, f"syncs-{int(with_five)}", model, opt, True)

        def counted(step: int, loss: Any, o: Any, scalars: Scalars | None) -> None:
            counter.in_hook = True
            try:
                hook(step, loss, o, scalars)
            finally:
                counter.in_hook = False

        counter.dirs = package_dirs("optitui headless" if tool == PROBE else tool)
        metrics_loop(model, opt, batches, loss_fn, steps, counted, with_five)
        close()
    finally:
        counter.dirs = ()
        counter.restore()
        user_metrics.READ_ONE_BY_ONE = on_cpu
    total = sum(counter.counts.values())
    return {"per_1000": total * 1000 / steps, "by_method": dict(counter.counts)}


def alternating(
    tool: str, pairs: int, tmp: Path, block_steps: int = BLOCK_STEPS, control: bool = False
) -> dict[str, list[float]]:
    """One run of ``tool`` logging the loss every step and the 5 scalars in every other
    block of ``block_steps`` steps; per pair of blocks, what the scalars added per step:
    wall time and the training thread's CPU time, us, and the block without them (wall).
    ``control``: neither block logs the scalars (what the measure reads when nothing
    differs)."""
    model, opt, batches, loss_fn = make_loop(LOOP)
    slug = "".join(c if c.isalnum() else "_" for c in tool).strip("_")
    hook, close = logging_hook(tool, tmp, f"alt-{slug}", model, opt)

    def block(with_five: bool) -> tuple[float, float]:
        w0, c0 = time.perf_counter(), time.thread_time()
        metrics_loop(model, opt, batches, loss_fn, block_steps, hook, with_five and not control)
        wall, cpu = time.perf_counter() - w0, time.thread_time() - c0
        return wall * 1e6 / block_steps, cpu * 1e6 / block_steps

    wall: list[float] = []
    cpu: list[float] = []
    base: list[float] = []
    for i in range(WARM_PAIRS + pairs):
        got = {five: block(five) for five in ((True, False) if i % 2 == 0 else (False, True))}
        if i >= WARM_PAIRS:
            wall.append(got[True][0] - got[False][0])
            cpu.append(got[True][1] - got[False][1])
            base.append(got[False][0])
    close()
    return {"wall": wall, "cpu": cpu, "base": base}


def metrics_worker(spec: dict[str, Any]) -> dict[str, Any]:
    """The paired rounds, the alternating blocks, then the read counts, in this one
    process."""
    tmp = Path(spec["tmp"])
    tools = spec["tools"]
    variants = [BARE] + [v for t in tools for v in (t, t + FIVE)]
    rounds = []
    for i, order in enumerate(orders(variants, spec["rounds"])):
        rounds.append({v: run_one(v, spec["steps"], tmp, f"{i}") for v in order})
    blocks = {tool: alternating(tool, spec["pairs"], tmp) for tool in tools}
    syncs: dict[str, Any] = {}
    for tool in tools:
        for five in (False, True):
            try:
                got = count_reads(tool, five, spec["sync_steps"], tmp)
            except Exception as exc:
                got = {"error": f"{type(exc).__name__}: {exc}"[:200]}
            syncs[tool + (FIVE if five else "")] = got
    return {"rounds": rounds, "blocks": blocks, "syncs": syncs}


# ------------------------------------------------------------------------------------------
# parent side: the section and its rows
# ------------------------------------------------------------------------------------------
def metrics_section(
    steps: int,
    rounds: int,
    sync_steps: int,
    pairs: int,
    skipped: dict[str, str],
    log: Callable[[str], None],
) -> dict[str, Any]:
    from compare_machine import load1
    from compare_sections import med
    from compare_worker import call_worker

    tools = [t for t in TOOLS if t not in skipped]
    spec = {
        "kind": "metrics",
        "steps": steps,
        "rounds": rounds,
        "sync_steps": sync_steps,
        "pairs": pairs,
    }
    out: dict[str, Any] = {
        "steps": steps,
        "rounds": rounds,
        "sync_steps": sync_steps,
        "pairs": pairs,
        "skipped": {t: skipped[t] for t in TOOLS if t in skipped},
        "load_start": load1(),
    }
    try:
        # 10 rounds of 9 runs, then 4 x 100 pairs of blocks: 20 to 30 minutes on a slow
        # 2-core machine, where TensorBoard and wandb take milliseconds a step
        got = call_worker({**spec, "tools": tools}, timeout=3600)
    except Exception as exc:
        out["error"] = str(exc)[:300]
        log(f"  metrics: FAILED {out['error']}")
        return out
    out["load"] = load1()
    out["syncs"] = got["syncs"]
    rs = got["rounds"]
    out["bare"] = [r[BARE]["mean_us"] for r in rs]
    out["tools"] = {}
    for t in tools:
        x = {
            "five": [r[t + FIVE]["mean_us"] - r[t]["mean_us"] for r in rs],
            "five_cpu": [r[t + FIVE]["cpu_us"] - r[t]["cpu_us"] for r in rs],
            "loss_only": [r[t]["mean_us"] - r[BARE]["mean_us"] for r in rs],
            "with_five": [r[t + FIVE]["mean_us"] - r[BARE]["mean_us"] for r in rs],
            "blocks": got["blocks"][t]["wall"],
            "blocks_cpu": got["blocks"][t]["cpu"],
        }
        out["tools"][t] = x
        log(
            f"  metrics, {t}: 5 scalars {med(x['five']):+.1f} us/step "
            f"(CPU {med(x['five_cpu']):+.1f}; alternating blocks {med(x['blocks']):+.1f}, "
            f"CPU {med(x['blocks_cpu']):+.1f}), with them vs bare {med(x['with_five']):+.1f}; "
            f"syncs {got['syncs'][t].get('per_1000')} -> {got['syncs'][t + FIVE].get('per_1000')}"
        )
    return out


def syncs_cell(r: dict[str, Any]) -> str:
    return f"failed: {r['error']}" if "error" in r else f"{r['per_1000']:.1f}"


def metrics_report(sec: dict[str, Any]) -> tuple[list[str], list[tuple[str, str, str]]]:
    """The section's lines, and its target row."""
    from compare_sections import med, quartiles

    L = [
        "## 7. Your own metrics: 5 tensor scalars per step, paired in one process: " + LOOPS[LOOP],
        "",
        "Each tool logs the loss and each group's lr per step, alone and with 5 scalars the "
        "step computed as tensors (accuracy, mean, max and std of the logits, the count "
        "wrong), as its users write it: optitui `probe.step(loss, metrics={...})` with the "
        "tensors (read at each flush: on a device in the flush's one batched read, which "
        "its syncs are counted on; on the CPU one by one), TensorBoard `add_scalar` per value, "
        "trackio one `trackio.log` with each tensor turned into a float (`.item()`), wandb "
        "offline one `run.log` of the dict (it reads each tensor). Every run, the bare loop "
        "too, computes the 5 tensors, so *5 scalars* (the tool with them minus the same tool "
        f"logging the loss only, same round) is what logging them costs. {sec['rounds']} "
        f"rounds of {sec['steps']:,}-step runs, one after the other in one process, order "
        f"rotated; load average {sec['load_start']:.2f} at the start"
        + (f", {sec['load']:.2f} at the end" if "load" in sec else "")
        + ". Median (interquartile range) over rounds, us/step. Syncs: reads per 1,000 "
        f"steps ({sec['sync_steps']:,} steps counted), as section 2 counts them; optitui's "
        "with its flush every 64 steps only (not also every 0.5 s, which would make the "
        "count depend on the machine's speed). *Alternating blocks*: in one run of each "
        f"tool, {sec['pairs']} pairs of {BLOCK_STEPS}-step blocks with and without the 5 "
        "scalars in turn, the median (interquartile range) of each pair's difference per "
        "step, wall and the training thread's CPU: the measure a drift of the machine "
        "weighs on least.",
        "",
    ]
    if "error" in sec:
        return [*L, f"failed: {sec['error']}", ""], []
    L += [
        "| tool | 5 scalars, alternating blocks: added wall | added CPU "
        "| 5 scalars, paired runs: added wall | added CPU | loss only vs bare "
        "| loss + 5 scalars vs bare | syncs / 1,000: loss only | with 5 scalars | extra |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    target: list[tuple[str, str, str]] = []
    for t, x in sec["tools"].items():
        one, five = sec["syncs"][t], sec["syncs"][t + FIVE]
        extra = (
            f"{five['per_1000'] - one['per_1000']:+.1f}"
            if "error" not in one and "error" not in five
            else "-"
        )
        L.append(
            f"| {t} | {quartiles(x['blocks'], '{:+.1f}')} "
            f"| {quartiles(x['blocks_cpu'], '{:+.1f}')} | {quartiles(x['five'], '{:+.1f}')} "
            f"| {quartiles(x['five_cpu'], '{:+.1f}')} "
            f"| {quartiles(x['loss_only'], '{:+.1f}')} | {quartiles(x['with_five'], '{:+.1f}')} "
            f"| {syncs_cell(one)} | {syncs_cell(five)} | {extra} |"
        )
        if t == PROBE:
            added, cpu = med(x["blocks"]), med(x["blocks_cpu"])
            ok = added <= TARGET_US and extra == "+0.0"
            target.append(
                (
                    f"optitui: <= {TARGET_US:g} us/step added for 5 tensor scalars, "
                    "0 extra syncs (near-empty step, alternating blocks in one run)",
                    f"wall {added:+.1f} us, CPU {cpu:+.1f} us (paired runs: wall "
                    f"{med(x['five']):+.1f}); extra syncs per 1,000: {extra}",
                    "met" if ok else "missed",
                )
            )
    dashes = " - |" * 8
    L += [f"| {t} |{dashes} {why} |" for t, why in sec["skipped"].items()]
    L += ["", f"The bare loop: {med(sec['bare']):.1f} us/step (median).", ""]
    return L, target
