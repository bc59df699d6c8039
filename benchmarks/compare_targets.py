"""RESULTS.md's targets table: each target, what was measured, met or missed, and for a
target missed, why, with the benchmark that shows where the time goes."""

from __future__ import annotations

#: (target, measured, result)
Target = tuple[str, str, str]

_TRAINER = (
    "The trainer's own work per step: the step's bookkeeping (the batch, the lr row, the "
    "loss buffer, the loop's checks), the optimizer health every 16 steps (on by default; "
    "`health_every=0` turns it off) and the flush; `benchmarks/trainer_parts.py` takes "
    "each out in turn"
)

#: why a target is missed, by the start of the target's text
WHY: dict[str, str] = {
    "optitui headless adds <= 10 us of host work per step (heavy": (
        "A few ms of machine noise between rounds: the paired rows are the measure"
    ),
    "optitui headless": _TRAINER,
    "optitui + dashboard attached": (
        "The trainer's own work (as in the headless rows), and the viewer, another process "
        "on the same 2 cores"
    ),
    "optitui --inline": (
        "The trainer's own work (as in the headless rows), and the dashboard drawing in the "
        "training process"
    ),
    "probe/bare": (
        "The probe does the trainer's bookkeeping around the loop's own step (its hooks on "
        "the optimizer, the lr row, the health every 16 steps, the flush): "
        "`benchmarks/trainer_parts.py` measures the trainer's parts"
    ),
    "zero extra syncs": (
        "On the CPU a flush reads at once (there is nothing to overlap); on CUDA it copies "
        "without blocking and reads one flush later: `tests/gpu/test_cuda_reads.py` counts "
        "the syncs with `torch.cuda.set_sync_debug_mode`, and runs only on a GPU"
    ),
    "attach to the first full frame": (
        "What comes before the data: the interpreter, importing Textual and the dashboard, "
        "and an empty app's first frame (`benchmarks/attach_floor.py` times each)"
    ),
    "the attached dashboard": "Its frames while the job trains (their cost: section 3)",
    "a frame at": "The plots' drawing: section 3, and `benchmarks/tui_frames.py`",
    "the whole run": (
        "Section 1's runs are fresh processes, rounds minutes apart on a shared machine: "
        "their spread (min..max there) is wider than 3%"
    ),
    "a checkpoint write": (
        "The write thread runs beside training on 2 cores shared with other processes; the "
        "repeats' spread is in section 6"
    ),
    "optitui: <= 5 us/step added for 5 tensor scalars": (
        "A logger that only holds each step's tensors and reads them every 64 steps pays "
        "most of it (`benchmarks/metrics_blocks.py --floor` measures that floor beside "
        "optitui); optitui's check of each value and its columns add the rest"
    ),
}


def why(target: str, result: str) -> str:
    """Why ``target`` was missed ("" when met, or when no reason is known)."""
    if result == "met":
        return ""
    for start, text in sorted(WHY.items(), key=lambda kv: -len(kv[0])):  # the longest first
        if target.startswith(start):
            return text
    return ""


def table(targets: list[Target]) -> list[str]:
    """The table, each target missed pointing to its reason, the reasons below it."""
    reasons: list[str] = []
    rows = []
    for a, b, c in targets:
        text = why(a, c)
        if text and text not in reasons:
            reasons.append(text)
        ref = f"({reasons.index(text) + 1})" if text else ""
        rows.append(f"| {a} | {b} | {c} | {ref} |")
    return [
        "## Targets",
        "",
        "| target | measured | result | why, when missed |",
        "| --- | --- | --- | --- |",
        *rows,
        "",
        *[f"({i}) {text}." for i, text in enumerate(reasons, 1)],
        *([""] if reasons else []),
    ]
