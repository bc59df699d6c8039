"""optitui against what users would use instead: one command, side by side, one table.

    python benchmarks/compare.py            # the full run (about 20 minutes); writes RESULTS.md
    python benchmarks/compare.py --quick    # a smoke run of every row (under a minute);
                                            # writes to a temporary file, not RESULTS.md;
                                            # its jobs share one worker process

Needs the ``bench`` extra (``pip install -e .[bench]``: tensorboard, trackio, wandb,
scikit-learn) and tmux for the rows that draw the dashboard in a real terminal. A
tool that is not installed gets its rows marked "skipped", with the reason.

1. Per-step host overhead and throughput against the bare loop, on two loops: a
   tiny step (the digits MLP on pre-made batches, ~0.2 ms) and a heavier one (a
   small conv net on generated 32x32 images, ~20 ms). Variants: the bare loop;
   the optitui trainer in-process (headless); the same with ``optitui attach``
   drawing it live from another process in a 160x48 tmux pane; ``optitui run
   --inline`` in a tmux pane (the loop in a thread of the process that draws the
   dashboard); TensorBoard's SummaryWriter, trackio and wandb (offline) logging
   the loss and every group's lr after each step of the bare loop. Every
   (variant, round) runs in a fresh process; variants are interleaved (rotated,
   and reversed every other round) and each round's bare run is the baseline its
   other variants are paired with. A run's cost per step is the time from its
   first to its last step after a warm-up tenth, from a timestamp per step
   (optitui's come from its own run store), so process start and tool start-up
   are left out; those are reported apart. Paired rows, the variants one after the
   other in one process: optitui headless on the tiny step (1b), every tool on a
   near-empty step (1c), and ``optitui.watch`` in the user's own loop
   (``probe.step(loss)`` after each step) on a ~0.4 ms step (1d).
2. Host-device syncs per 1,000 steps: Tensor methods that read a value back to
   the host (item, tolist, cpu, __float__, ...) counted when called from a
   tool's own code, or from the user's logging call for that tool, as
   tests/test_hot_path.py counts them.
3. Dashboard frame cost against history length (tui_frames.frame_costs).
4. ``optitui attach`` to first full frame on a 1M-step run, and the viewer's
   memory (RSS) holding it (tui_frames.attach_in_process, and here in tmux).
5. Command latency: ``client.send`` to the job's acknowledgement, with the job
   (``optitui run --headless``) stepping every 1 ms and every 100 ms.
6. Checkpoint save of a ~100 MB model: time on the training thread (the host
   copy) against the total until the file is on disk (``saver.wait()``), next to
   a plain ``torch.save`` and how much training slows while the write runs.
7. The user's own metrics: each tool logging the loss and 5 tensor scalars per
   step against the same tool logging the loss only and against the bare loop,
   paired in one process, and alternating blocks with and without the scalars inside
   one run of each tool; its syncs per 1,000 steps (compare_metrics.py).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from compare_loops import BARE, HEADLESS, PROBE, RESULTS, TB, TRACKIO, VARIANTS, WANDB
from compare_machine import cpu_model, git_revision, load1, version_of
from compare_metrics import metrics_section
from compare_report import report
from compare_sections import (
    attach_section,
    available,
    commands_section,
    frames_section,
    overhead_section,
    paired_section,
    syncs_section,
)
from compare_worker import SharedWorker, call_worker, serve, worker


def merge_runs(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One checkpoint result from several workers' (their lists joined)."""
    out = dict(runs[0])
    for k, v in out.items():
        if isinstance(v, list):
            out[k] = [x for r in runs for x in r[k]]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="every row, smallest sizes (CI)")
    ap.add_argument(
        "--out",
        type=Path,
        help="where the markdown goes (default: RESULTS.md; with --quick a temporary file)",
    )
    ap.add_argument(
        "--sections",
        default="overhead,syncs,frames,attach,commands,checkpoint,metrics",
        help="comma-separated subset (a partial run does not write RESULTS.md unless --out)",
    )
    ap.add_argument("--rounds", type=int, help="rounds of the overhead runs")
    ap.add_argument(
        "--before",
        type=Path,
        metavar="CHECKOUT",
        help="another checkout of optitui (the code before a change, e.g. a git worktree): "
        "its headless trainer gets paired rows and its checkpoint writer a row of its own, "
        "measured in the same run, alternating with this code",
    )
    ap.add_argument(
        "--render",
        type=Path,
        metavar="RAW_JSON",
        help="only write the table again from a run's raw data (the path it printed)",
    )
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        Path(args.result).write_text(json.dumps(worker(json.loads(args.worker))))
        return
    if args.serve:
        serve()
        return

    if args.render is not None:
        data = json.loads(args.render.read_text())
        if "frames" in data:
            data["frames"]["rows"] = {int(k): v for k, v in data["frames"]["rows"].items()}
        text = report(data)
        print(text)
        (args.out or RESULTS).write_text(text)
        return
    sections = set(args.sections.split(","))
    full_sections = sections == {
        "overhead",
        "syncs",
        "frames",
        "attach",
        "commands",
        "checkpoint",
        "metrics",
    }
    if args.out is not None:
        out_path = args.out
    elif args.quick or not full_sections:
        out_path = Path(tempfile.gettempdir()) / "optitui-compare-quick.md"
    else:
        out_path = RESULTS
    q = args.quick
    cfg = {
        "steps": {"tiny": 300, "heavy": 15} if q else {"tiny": 10_000, "heavy": 300},
        "rounds": {"tiny": args.rounds or 1, "heavy": args.rounds or 1}
        if q
        else {"tiny": args.rounds or 9, "heavy": args.rounds or 5},
        "paired_tiny": (300, 2) if q else (3000, 24),  # steps, rounds
        "paired_empty": (300, 1) if q else (5000, 12),
        "paired_mid": (200, 1) if q else (3000, 24),
        "sync_steps": {"tiny": 200, "heavy": 20} if q else {"tiny": 1000, "heavy": 250},
        "sizes": [1_000, 10_000] if q else [1_000, 100_000, 1_000_000],
        "frames": 3 if q else 30,
        "attach_reps": 1 if q else 5,
        "commands": 2 if q else 10,  # of each kind: readable, and send returns
        "step_times": [0.001, 0.1],
        "ckpt": (2, 1024, 1) if q else (6, 2048, 5),  # layers, width, repeats
        # steps, rounds, sync steps, pairs of alternating blocks
        "metrics": (200, 1, 128, 2) if q else (5000, 10, 1000, 100),
    }

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    import torch  # for the version only; the measurements run in workers

    skipped = available(VARIANTS)
    data: dict[str, Any] = {
        "env": {
            "command": "python benchmarks/compare.py" + (" --quick" if q else ""),
            "revision": git_revision(),
            "date": time.strftime("%Y-%m-%d %H:%M %Z"),
            "cpu": cpu_model(),
            "cores": os.cpu_count(),
            "kernel": platform.release(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "tools": {
                d: v
                for d in ("textual", "tensorboard", "trackio", "wandb")
                if (v := version_of(d)) is not None
            },
            "load_start": load1(),
            "before": None
            if args.before is None
            else {"path": str(args.before), "revision": git_revision(args.before)},
        },
        "skipped": skipped,
    }
    for v, why in skipped.items():
        log(f"{v}: {why}")
    t_start = time.perf_counter()
    with (
        SharedWorker() if q else contextlib.nullcontext(),
        tempfile.TemporaryDirectory(prefix="optitui-compare-") as tmp_s,
    ):
        tmp = Path(tmp_s)
        if "overhead" in sections:
            data["overhead"] = {}
            for loop in ("tiny", "heavy"):
                log(f"overhead, {loop} loop")
                data["overhead"][loop] = overhead_section(
                    loop, cfg["steps"][loop], cfg["rounds"][loop], skipped, log, one_process=q
                )
        if "overhead" in sections:
            log("paired in one process")
            data["paired"] = [
                paired_section(
                    "tiny", *cfg["paired_tiny"], [BARE, HEADLESS], skipped, log, args.before
                ),
                paired_section(
                    "empty",
                    *cfg["paired_empty"],
                    [BARE, HEADLESS, TB, TRACKIO, WANDB],
                    skipped,
                    log,
                    args.before,
                ),
                # the probe in the user's own loop; an older checkout may lack this loop
                paired_section("mid", *cfg["paired_mid"], [BARE, PROBE], skipped, log),
            ]
        if "syncs" in sections:
            log("syncs")
            data["sync_steps"] = cfg["sync_steps"]
            data["syncs"] = syncs_section(cfg["sync_steps"], skipped, log)
        runs: dict[int, Path] = {}
        if "frames" in sections:
            log("frame cost")
            fr = frames_section(cfg["sizes"], cfg["frames"], tmp, log)
            runs = fr.pop("runs")
            data["frames"] = fr
        if "attach" in sections:
            log("attach")
            if not runs:
                import tui_frames

                runs = {n: tui_frames.write_store(tmp / f"hist{n}", n) for n in cfg["sizes"]}
            data["attach"] = attach_section(runs, cfg["attach_reps"], log)
        if "commands" in sections:
            log("command latency")
            data["commands"] = commands_section(cfg["step_times"], cfg["commands"], tmp, log)
        if "checkpoint" in sections:
            log("checkpoint")
            layers, width, reps = cfg["ckpt"]
            spec = {"kind": "checkpoint", "layers": layers, "width": width, "reps": reps}
            if args.before is None:
                data["checkpoint"] = call_worker(spec)
            else:  # one repeat at a time, this code's and the other's alternately
                ck: list[Any] = []
                for _ in range(reps):
                    ck.append(call_worker({**spec, "reps": 1}))
                    ck.append(call_worker({**spec, "reps": 1}, root=args.before))
                data["checkpoint"] = merge_runs(ck[0::2])
                data["checkpoint_before"] = merge_runs(ck[1::2])
        if "metrics" in sections:
            log("metrics: 5 scalars per step")
            data["metrics"] = metrics_section(*cfg["metrics"], skipped, log)
    data["env"]["load_end"] = load1()
    data["env"]["total_s"] = time.perf_counter() - t_start
    text = report(data)
    print(text)
    out_path.write_text(text)
    raw = Path(tempfile.gettempdir()) / f"optitui-compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    raw.write_text(json.dumps(data, default=str, indent=1))
    log(f"wrote {out_path} (raw data: {raw})")


if __name__ == "__main__":
    main()
