"""The range test for the command line: ``optitui lr-find SCRIPT`` and ``send RUN lr-find``.

Prints the curve as a terminal plot (plotext; no matplotlib) with every rule's
suggestion marked, and a table of the suggestions; or all of it as JSON.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any

MARKS = {"steep": "S", "valley": "V", "minimum": "M", "slide": "L"}


def as_dict(test: Any) -> dict[str, Any]:
    """A range test (the trainer's, or the store's) as plain data."""
    return {
        "id": test.id,
        "status": test.status,
        "message": test.message,
        "step": test.step,
        "lrs": list(test.lrs),
        "losses": list(test.losses),
        "smoothed": list(test.smoothed),
        "suggestions": list(test.suggestions),
    }


def plot(d: dict[str, Any], width: int = 78, height: int = 20, color: bool = False) -> str:
    """The curve as text; a plain line when plotext cannot draw it (it has failed on
    some legend layouts), since the table below says what matters."""
    try:
        return _plot(d, width, height, color, marks=True)
    except Exception:
        try:
            return _plot(d, width, height, color, marks=False)
        except Exception as exc:
            return f"(no plot: {type(exc).__name__})"


def _plot(d: dict[str, Any], width: int, height: int, color: bool, marks: bool) -> str:
    import plotext as plt

    lrs, smoothed, raw = d["lrs"], d["smoothed"], d["losses"]
    pts = [
        (x, y, r)
        for x, y, r in zip(lrs, smoothed, raw, strict=False)
        if x > 0 and math.isfinite(y) and math.isfinite(r)
    ]
    if len(pts) < 2:
        return "(too few points to plot)"
    # the interesting part: from the best loss to a bit above where the curve started.
    # Every value drawn is clipped to that window: plotext draws a line segment point by
    # point, so a point far outside it (a loss of 1e60 at lr 1e30) costs unbounded time
    # and memory.
    top = pts[0][1] * 1.5 if pts[0][1] > 0 else max(p[1] for p in pts)
    low = min(p[1] for p in pts)
    if not top > low:  # a flat curve: a window around it
        low, top = low - 1.0, low + 1.0
    bottom = low - 0.05 * (top - low)

    def clip(v: float) -> float:
        return float(min(max(v, bottom), top))

    pts = [(x, clip(y), clip(r)) for x, y, r in pts]
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.xscale("log")
    plt.ylim(bottom, top)
    lo, hi = math.floor(math.log10(pts[0][0])), math.ceil(math.log10(pts[-1][0]))
    step = max(1, (hi - lo) // 6)
    decades = [10.0**e for e in range(lo, hi + 1, step)]
    plt.xticks(decades, [f"{d:.0e}" for d in decades])
    plt.title("LR range test: loss against lr")
    plt.scatter([p[0] for p in pts], [p[2] for p in pts], marker="dot", label="loss")
    plt.plot([p[0] for p in pts], [p[1] for p in pts], label="smoothed")
    for s in d["suggestions"] if marks else []:
        i = s.get("index")
        if s["lr"] is not None and i is not None and i < len(smoothed):
            if not (math.isfinite(smoothed[i]) and lrs[i] > 0):
                continue
            plt.scatter(
                [lrs[i]],
                [clip(smoothed[i])],
                marker=MARKS.get(s["rule"], "x"),
                label=f"{s['rule']} {s['lr']:.3g}",
            )
    out: str = plt.build()
    return out if color else plt.uncolorize(out)


def table(d: dict[str, Any]) -> str:
    lines = [
        f"range test {d['id']}: {d['status']}" + (f" ({d['message']})" if d["message"] else ""),
    ]
    if not d["suggestions"]:  # cancelled or failed: no table to head
        lines.append(
            "no suggestions" + (" (the test did not finish)" if d["status"] != "done" else "")
        )
        return "\n".join(lines)
    lines.append(f"{'rule':8} {'lr':>10} {'x now':>8}  note")
    for s in d["suggestions"]:
        lr = "-" if s["lr"] is None else f"{s['lr']:.3g}"
        fac = "-" if s.get("factor") is None else f"{s['factor']:.3g}"
        lines.append(f"{s['rule']:8} {lr:>10} {fac:>8}  {s['note'] or 'ok'}")
    return "\n".join(lines)


def report(d: dict[str, Any], color: bool = False) -> str:
    width = min(100, shutil.get_terminal_size((80, 24)).columns - 2)
    return plot(d, width=width, color=color) + "\n" + table(d)


def run_before_training(
    script: Path, device: str, sweep: dict[str, Any], seed: int | None
) -> dict[str, Any]:
    """Load the script's Job and run the range test on it, in a throwaway run directory."""
    from optitui.trainer.control import rangetest
    from optitui.trainer.entry.headless import RunOptions, prepare

    with tempfile.TemporaryDirectory(prefix="optitui-lrfind-") as tmp:
        trainer = prepare(
            RunOptions(script, device=device, root=Path(tmp), seed=seed, mode="lr-find")
        )
        try:
            test = rangetest.prepare(trainer, "before-training", sweep)
            rangetest.run(trainer, test)
        finally:
            trainer.recorder.close()
        return as_dict(test)


def to_json(d: dict[str, Any]) -> str:
    return json.dumps(d, indent=1, allow_nan=True)
