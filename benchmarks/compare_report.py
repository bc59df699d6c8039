"""The report: RESULTS.md's table and notes from a run's raw data."""

from __future__ import annotations

from collections import Counter
from typing import Any

from compare_loops import (
    ATTACHED,
    BEFORE_HEADLESS,
    HEADLESS,
    INLINE,
    LOOPS,
    PROBE,
    SIZE,
    TRACKIO,
)
from compare_metrics import metrics_report
from compare_sections import med, overhead_rows, quartiles, spread
from compare_targets import Target, table


# ------------------------------------------------------------------------------------------
# the report
# ------------------------------------------------------------------------------------------
def verdict(a: bool, b: bool, a_name: str, b_name: str) -> str:
    if a and b:
        return "met"
    if not a and not b:
        return "missed"
    return f"{a_name if a else b_name} met, {b_name if a else a_name} missed"


def noisy_verdict(h: dict[str, Any]) -> str:
    """The verdict on a median, with how far apart the rounds were."""
    width = h["spread"][1] - h["spread"][0]
    if width >= 1000:
        return f"not resolved: rounds differ by {width:.0f} us; the paired rows are sharper"
    v = verdict(h["added_cpu"] <= 10, h["added"] <= 10, "CPU", "wall")
    return v if width < 100 else f"{v} (rounds differ by {width:.0f} us; see the paired rows)"


def stat_row(label: str, xs: list[float], fmt: str = "{:.2f}") -> str:
    return f"| {label} | {fmt.format(med(xs))} | {spread(xs, fmt)} |"


def ms(xs: list[float]) -> str:
    return f"{med(xs) * 1e3:.1f} / {max(xs) * 1e3:.1f}"


def report(data: dict[str, Any]) -> str:
    L: list[str] = []
    env = data["env"]
    L += [
        "# optitui against the alternatives, measured side by side",
        "",
        f"`{env['command']}` on {env['date']}, optitui at {env['revision']}: "
        f"{env['cpu']}, {env['cores']} cores, "
        f"Linux {env['kernel']}, Python {env['python']}, torch {env['torch']}, "
        + ", ".join(f"{k} {v}" for k, v in env["tools"].items())
        + ". Training runs on 1 thread (`torch.set_num_threads(1)`).",
        "",
        f"1-minute load average: {env['load_start']:.2f} at the start, "
        f"{env['load_end']:.2f} at the end; each section gives its own. The machine is "
        "shared: other processes' load shows as spread.",
        "",
    ]
    before = env.get("before")
    if before:
        L += [
            f"Rows marked *before* are optitui at {before['revision']} (`--before "
            f"{before['path']}`), measured in the same run with its own harness, its workers "
            "alternating with this code's.",
            "",
        ]
    targets: list[Target] = []
    skipped = data["skipped"]
    whole: float | None = None  # the tiny step's throughput: a run in a fresh process
    paired: float | None = None  # and paired in one process
    for loop, sec in data.get("overhead", {}).items():
        rows, numbers = overhead_rows(sec, skipped)
        loads = sec["loads"]
        L += [
            f"## 1. Per-step host overhead, {LOOPS[loop]}",
            "",
            f"{sec['steps']:,} steps per run (the first tenth is warm-up, not counted), "
            f"{sec['rounds']} rounds, every run in a fresh process, variants interleaved; "
            f"load average {med(loads):.2f} (range {spread(loads, '{:.2f}')}). "
            "*us/step*: wall time per step (median over rounds). *added*: minus the same "
            "round's bare loop, median [min..max] over rounds. *CPU*: CPU time of the "
            "training process per step, all its threads (the attached viewer is another "
            "process: its share is in the notes). Throughput is bare / variant (wall). "
            "Start-up: the tool's init to the end of the first step; close: the last step "
            "to the tool closed (final flushes, joins).",
            "",
            "| variant | us/step | added us/step | CPU us/step | added CPU us/step "
            "| throughput vs bare | start-up s | close s | notes |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            *rows,
            "",
        ]
        h = numbers.get(HEADLESS)
        if h is not None:
            targets.append(
                (
                    f"optitui headless adds <= 10 us of host work per step ({loop} step)",
                    f"CPU {h['added_cpu']:+.1f} us "
                    f"[{h['spread_cpu'][0]:+.1f}..{h['spread_cpu'][1]:+.1f}], "
                    f"wall {h['added']:+.1f} us [{h['spread'][0]:+.1f}..{h['spread'][1]:+.1f}]",
                    noisy_verdict(h),
                )
            )
            if loop == "tiny":
                whole = h["ratio"]
                targets.append(
                    (
                        "optitui headless within 2% of the bare loop (tiny step)",
                        f"throughput {h['ratio']:.3f}",
                        "met" if h["ratio"] >= 0.98 else "missed",
                    )
                )
        for v in (ATTACHED, INLINE):
            x = numbers.get(v)
            if x is not None and loop == "tiny":
                targets.append(
                    (
                        f"{v}: <= 10 us per step, within 2% (tiny step)",
                        f"CPU {x['added_cpu']:+.1f} us, wall {x['added']:+.1f} us, "
                        f"throughput {x['ratio']:.3f}",
                        verdict(x["added_cpu"] <= 10, x["ratio"] >= 0.98, "CPU", "throughput"),
                    )
                )
            if v == ATTACHED and x is not None and loop == "tiny":
                targets.append(
                    (
                        "the attached dashboard uses <= 5% of a core while the job trains "
                        "(tiny step)",
                        f"{x['viewer_cpu']:.1f}% (the viewer process, median over rounds)",
                        "met" if x["viewer_cpu"] <= 5 else "missed",
                    )
                )
    for n, pr in enumerate(data.get("paired", [])):
        # the first pairing is optitui alone, the second every tool (some may be skipped)
        title = (
            "optitui headless against the bare loop",
            "every tool's fixed cost per step",
            "the probe in your own loop against the bare loop",
        )[n]
        probe = pr["variants"].get(PROBE)
        L += [
            f"### 1{'bcd'[n]}. {title}, paired in one process: {LOOPS[pr['loop']]}",
            "",
            f"{pr['rounds']} rounds of {pr['steps']:,}-step runs, the variants one after the "
            "other in one process (order rotated), so each round's runs see about the same "
            f"load (load average {pr['load']:.2f} at the end). The bare loop: "
            f"{med(pr['bare']):.1f} us/step wall, {med(pr['bare_cpu']):.1f} us CPU (medians). "
            "Median (interquartile range) of each round's difference from its bare run"
            + (
                " (*training thread CPU*: `time.thread_time` of the loop's thread alone, "
                "the steadier measure under load; *CPU*: every thread of the process):"
                if probe is not None
                else ":"
            ),
            "",
        ]
        if probe is None:
            L += [
                "| variant | added wall us/step | added CPU us/step | throughput vs bare |",
                "| --- | ---: | ---: | ---: |",
            ]
        else:
            L += [
                "| variant | added wall us/step | added CPU us/step "
                "| added training thread CPU us/step | throughput vs bare | probe / bare |",
                "| --- | ---: | ---: | ---: | ---: | ---: |",
            ]
        for v, x in pr["variants"].items():
            thread = (
                f" {quartiles(x['thread'], '{:+.1f}')} |"
                if probe is not None and x["thread"]
                else ""
            )
            L.append(
                f"| {v} | {quartiles(x['wall'], '{:+.1f}')} | {quartiles(x['cpu'], '{:+.1f}')} "
                f"|{thread} {quartiles(x['ratio'], '{:.3f}')} |"
                + (f" {quartiles([1 / r for r in x['ratio']], '{:.3f}')} |" if thread else "")
            )
        L += [f"| {v} | - | - | {why} |" for v, why in pr.get("skipped", {}).items()]
        L.append("")
        if probe is not None:
            slower = med([1 / r for r in probe["ratio"]])
            targets.append(
                (
                    "probe/bare <= 1.02 on a 0.4 ms step (own loop, paired)",
                    f"{slower:.3f} (bare {med(pr['bare']):.0f} us/step; added wall "
                    f"{med(probe['wall']):+.1f} us, CPU {med(probe['cpu']):+.1f} us)",
                    "met" if slower <= 1.02 else "missed",
                )
            )
        h = pr["variants"].get(HEADLESS)
        was = pr["variants"].get(BEFORE_HEADLESS)
        if h is not None and pr["loop"] == "empty":
            targets.append(
                (
                    "optitui headless adds <= 8 us per step (near-empty step, paired)",
                    f"wall {med(h['wall']):+.1f} us, CPU {med(h['cpu']):+.1f} us"
                    + (f" (before: wall {med(was['wall']):+.1f} us)" if was else ""),
                    verdict(med(h["wall"]) <= 8, med(h["cpu"]) <= 8, "wall", "CPU"),
                )
            )
        if h is not None and pr["loop"] == "tiny" and probe is None:
            paired = med(h["ratio"])
        if h is not None:
            targets.append(
                (
                    f"optitui headless: <= 10 us per step ({pr['loop']} step, paired)",
                    f"CPU {med(h['cpu']):+.1f} us, wall {med(h['wall']):+.1f} us, "
                    f"throughput {med(h['ratio']):.3f}",
                    verdict(med(h["cpu"]) <= 10, med(h["wall"]) <= 10, "CPU", "wall"),
                )
            )
    syncs = data.get("syncs")
    if syncs:
        loops = list(data.get("sync_steps", {}))
        L += [
            "## 2. Host-device syncs per 1,000 steps",
            "",
            "Reads of a tensor's value to the host (`item`, `tolist`, `cpu`, `__float__`, "
            "`__bool__`, ...) made by the tool's own code or inside the user's logging call "
            "for it; on CPU each is where an accelerator would stall. The dashboard (attached "
            "or --inline) imports no torch: the same trainer code is all that reads.",
            "",
            "| tool | " + " | ".join(f"{lp} step" for lp in loops) + " | which reads |",
            "| --- | " + " | ".join("---:" for _ in loops) + " | --- |",
        ]
        zero_extra = None
        for v, per in syncs.items():
            if isinstance(per, str):
                L.append(f"| {v} | " + " | ".join("-" for _ in loops) + f" | {per} |")
                continue
            cells, methods = [], Counter()
            for lp in loops:
                r = per.get(lp)
                if isinstance(r, dict):
                    cells.append(f"{r['per_1000']:.1f}")
                    methods.update(r["by_method"])
                else:
                    cells.append(str(r))
            what = ", ".join(f"{k}" for k in sorted(methods)) or "none"
            if v == HEADLESS:
                what += " (one batched read per flush: every 64 steps or 0.5 s)"
                zero_extra = cells
            if v == TRACKIO:
                what += " (in the user's call: trackio.log takes no tensors)"
            L.append(f"| {v} | " + " | ".join(cells) + f" | {what} |")
        L.append("")
        if zero_extra is not None:
            targets.append(
                (
                    "zero extra syncs (optitui)",
                    "batched reads per 1,000 steps: "
                    + ", ".join(f"{c} ({lp})" for c, lp in zip(zero_extra, loops, strict=True)),
                    "none per step; not zero: one blocking read per flush"
                    if all(float(c) < 1000 for c in zero_extra)
                    else "missed",
                )
            )
    frames = data.get("frames")
    if frames:
        rows = frames["rows"]
        L += [
            "## 3. Dashboard frame cost against history length",
            "",
            f"Both plots (loss + lr) over the whole history, {SIZE[0]}x{SIZE[1]}, one frame "
            "every 250 ms as the app draws them (`tui_frames.frame_costs`). CPU is the "
            "drawing thread's CPU time; wall also counts other processes on a busy machine.",
            "",
            "| history | CPU median ms | CPU p90 ms | wall median ms | wall p90 ms "
            "| decimation ms | load |",
            "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for n, r in sorted(rows.items()):
            L.append(
                f"| {n:,} | {r['cpu']:.1f} | {r['cpu_p90']:.1f} | {r['wall']:.1f} "
                f"| {r['wall_p90']:.1f} | {r['decimation']:.2f} | {r['load']:.2f} |"
            )
        big, small = max(rows), min(rows)
        ratio = rows[big]["cpu"] / rows[small]["cpu"]
        L.append("")
        targets.append(
            (
                f"frame cost flat in history length ({big:,} vs {small:,}: <= 1.5x, < 25 ms)",
                f"{ratio:.2f}x, {rows[big]['cpu']:.1f} ms CPU",
                "met" if ratio <= 1.5 and rows[big]["cpu"] < 25 else "missed",
            )
        )
        targets.append(
            (
                f"a frame at {SIZE[0]}x{SIZE[1]} <= 12 ms of CPU ({big:,} steps)",
                f"{rows[big]['cpu']:.1f} ms (p90 {rows[big]['cpu_p90']:.1f} ms)",
                "met" if rows[big]["cpu"] <= 12 else "missed",
            )
        )
    att = data.get("attach")
    if att:
        big = att["steps"]
        walls = [w for w, _ in att["inproc"]]
        cpus = [c for _, c in att["inproc"]]
        L += [
            f"## 4. Attach to first full frame on a {big:,}-step run, and the viewer's memory",
            "",
            "From spawning the process to both plots drawn over the whole history "
            "(interpreter start, imports, reading the store, smoothing and pyramids, first "
            "frame). Memory is the `optitui attach` process's VmRSS half a second after "
            "that frame, and its peak (VmHWM).",
            "",
            "| measure | median | min..max |",
            "| --- | ---: | ---: |",
            stat_row("headless app in a new process, wall s", walls),
            stat_row("the same, CPU s", cpus),
        ]
        tm = att.get("tmux")
        if tm:
            w = [x["wall"] for x in tm]
            rss = [x["rss_mb"] for x in tm]
            hwm = [x["hwm_mb"] for x in tm]
            small_rss = [x["rss_mb"] for x in att["tmux_small"]]
            L += [
                stat_row(f"`optitui attach` in tmux {SIZE[0]}x{SIZE[1]}, wall s", w),
                stat_row(f"viewer RSS holding {big:,} steps, MB", rss, "{:.0f}"),
                stat_row("viewer peak RSS (VmHWM), MB", hwm, "{:.0f}"),
                stat_row(f"viewer RSS holding {att['small']:,} steps, MB", small_rss, "{:.0f}"),
            ]
            attach_wall = med(w)
        else:
            L.append("| `optitui attach` in tmux | - | skipped: tmux not installed |")
            attach_wall = med(walls)
        L.append("")
        targets.append(
            (
                f"attach under 1 s at {big:,} steps",
                f"{attach_wall:.2f} s",
                "met" if attach_wall < 1 else "missed",
            )
        )
        targets.append(
            (
                f"attach to the first full frame at {big:,} steps <= 0.5 s",
                f"{attach_wall:.2f} s",
                "met" if attach_wall <= 0.5 else "missed",
            )
        )
    cmds = data.get("commands")
    if cmds:
        L += [
            "## 5. Command latency",
            "",
            "A job (`optitui run --headless`) whose step sleeps; `set lr` sent at random "
            "phases of the step. *applied*: send to the job's acknowledgement (the "
            "outcome's timestamp, taken when the trainer applies it at a step boundary); "
            "*readable*: send until the answer can be read from the store (polled every "
            "1 ms); *send returns*: `client.send` waiting as `optitui send` and the "
            "dashboard do (its poll backs off from 10 ms to 100 ms). Median / max, ms.",
            "",
            "| step time | commands | applied | readable | send returns | target | met |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
        ]
        for label, r in cmds.items():
            target = r["step_s"] + 0.05
            worst = max(r["visible"] + r["returned"])
            ok = max(r["applied"]) <= target and max(r["visible"]) <= target
            L.append(
                f"| {label} | {len(r['applied'])} | {ms(r['applied'])} | {ms(r['visible'])} "
                f"| {ms(r['returned'])} | {target * 1e3:.0f} | "
                + ("met" if ok else "missed")
                + ("" if max(r["returned"]) <= target else " (send returns later: its poll)")
                + " |"
            )
            targets.append(
                (
                    f"command acknowledged within one step + 50 ms ({label} steps)",
                    f"readable max {max(r['visible']) * 1e3:.0f} ms, send returns max "
                    f"{max(r['returned']) * 1e3:.0f} ms (target {target * 1e3:.0f} ms)",
                    ("met" if ok else "missed")
                    + ("" if worst <= target else "; send's poll returns later"),
                )
            )
        L.append("")
    ck = data.get("checkpoint")
    if ck:
        slow = [d / b for d, b in zip(ck["step_during"], ck["step_before"], strict=True)]
        L += [
            f"## 6. Checkpoint save, {ck['params'] / 1e6:.1f}M float32 parameters "
            f"({ck['file_mb']:.0f} MB file)",
            "",
            "optitui's saver copies the state to host memory on the training thread and "
            "writes it (serialise, fsync, rename, manifest) in a background thread. A user's "
            "`torch.save` of the same state on the training thread is shown for comparison. "
            "Seconds, median and min..max over the repeats.",
            "",
            "| measure | median | min..max |",
            "| --- | ---: | ---: |",
            stat_row("optitui: on the training thread", ck["on_thread"], "{:.3f}"),
            stat_row("optitui: total, until on disk (`saver.wait()`)", ck["total"], "{:.3f}"),
            stat_row("`torch.save` on the training thread", ck["plain"], "{:.3f}"),
            stat_row("`torch.save` + fsync on the training thread", ck["plain_fsync"], "{:.3f}"),
            stat_row("tiny-step time while the write runs / before it", slow, "{:.2f}x"),
        ]
        old = data.get("checkpoint_before")
        slow_old: list[float] = []
        if old:
            slow_old = [d / b for d, b in zip(old["step_during"], old["step_before"], strict=True)]
            L += [
                stat_row("before: on the training thread", old["on_thread"], "{:.3f}"),
                stat_row("before: total, until on disk", old["total"], "{:.3f}"),
                stat_row(
                    "before: tiny-step time while the write runs / before it", slow_old, "{:.2f}x"
                ),
            ]
        L.append("")
        targets.append(
            (
                "a checkpoint write slows training by <= 5% while it runs (tiny step)",
                f"{med(slow):.2f}x" + (f" (before: {med(slow_old):.2f}x)" if slow_old else ""),
                "met" if med(slow) <= 1.05 else "missed",
            )
        )
    if data.get("metrics"):
        lines, target = metrics_report(data["metrics"])
        L += lines
        targets += target
    if whole is not None and paired is not None:
        targets.append(
            (
                "the whole run within 3% of the paired estimate (tiny step: section 1's "
                "throughput against 1b's)",
                f"{whole:.3f} against {paired:.3f} ({whole / paired - 1:+.1%})",
                "met" if abs(whole / paired - 1) <= 0.03 else "missed",
            )
        )
    if targets:
        L += table(targets)
    if "total_s" in env:
        L.append(f"Total time of this run: {env['total_s']:.0f} s.")
    return "\n".join(L) + "\n"
