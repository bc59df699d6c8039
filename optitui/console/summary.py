"""``optitui status``: one run summed up from its store, as text or as plain data.

State, step, pace and ETA; the loss now, smoothed and its trend; each group's
hyperparameters; the last commands and warnings; the newest checkpoints. It
reads a bounded amount whatever the run's length: the newest metric rows for
the loss and the pace, and an even sample of rows for the trend.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from optitui.console import fmt, machine
from optitui.console.pace import ETA_WINDOW_S, WINDOW_S, eta, rate_over
from optitui.console.style import Style, event_line, stamp
from optitui.store.manifests import listing
from optitui.store.reader import EventRow, RunReader

COMMAND_KINDS = ("command", "lr-find", "race")
WARNING_KINDS = ("warning", "error")
#: metric rows read for the loss now, the smoothed loss and the pace
TAIL_ROWS = 256
#: the dashboard's smoothing of the loss (bias-corrected EMA)
EMA_BETA = 0.98


def counts_epochs(meta: dict[str, Any]) -> bool:
    """False for zero-code mode, which cannot see the script's epochs (always 0 there)."""
    probe = meta.get("probe")
    return not (isinstance(probe, dict) and probe.get("mode") == "zero-code")


def smoothed(values: Sequence[float], beta: float = EMA_BETA) -> float | None:
    """The bias-corrected exponential moving average of the finite values (None: none)."""
    m = w = 0.0
    for v in values:
        if math.isfinite(v):
            m = beta * m + (1.0 - beta) * v
            w = beta * w + (1.0 - beta)
    return m / w if w > 0 else None


def _buckets(values: Sequence[float], points: int) -> list[float]:
    """``values`` cut into at most ``points`` runs of consecutive values, each its mean."""
    n = len(values)
    k = min(points, n)
    out = []
    for b in range(k):
        part = [v for v in values[b * n // k : (b + 1) * n // k] if math.isfinite(v)]
        out.append(sum(part) / len(part) if part else math.nan)
    return out


def trend(reader: RunReader, points: int = 40) -> tuple[list[float], int, int]:
    """The recorded loss over the whole run as at most ``points`` means, with the first
    and last step they cover. A long run is read as an even sample of its rows."""
    ids = reader.metric_ids()
    if not ids:
        return [], 0, 0
    sample = (
        ids
        if len(ids) <= 4 * points
        else [ids[i * len(ids) // (4 * points)] for i in range(4 * points)]
    )
    if sample[-1] != ids[-1]:
        sample.append(ids[-1])
    rows = reader.metric_rows(sample)
    rows = [r for r in rows if "loss" in r and len(r["loss"])]
    if not rows:
        return [], 0, 0
    if len(sample) == len(ids):  # every step is here
        values: list[float] = [v for r in rows for v in r["loss"]]
    else:
        values = [_mean(r["loss"]) for r in rows]
    first, last = int(rows[0]["step"][0]), int(rows[-1]["step"][-1])
    return _buckets(values, points), first, last


def loss_spark(values: Sequence[float]) -> tuple[str, bool]:
    """A sparkline of losses, and whether it is drawn on a log scale: a loss falling over
    decades is, or all but its start would be flat."""
    finite = [v for v in values if math.isfinite(v)]
    log = bool(finite) and min(finite) > 0 and max(finite) > 10 * min(finite)
    if log:
        values = [math.log10(v) if math.isfinite(v) and v > 0 else math.nan for v in values]
    return fmt.sparkline(values), log


def _mean(col: array[float]) -> float:
    finite = [v for v in col if math.isfinite(v)]
    return sum(finite) / len(finite) if finite else math.nan


def summarize(
    reader: RunReader,
    *,
    now: float | None = None,
    last: int = 5,
    checkpoints: int = 3,
    points: int = 40,
) -> dict[str, Any]:
    """Everything ``optitui status`` shows, as JSON-ready data (see :func:`render`)."""
    meta = reader.meta()
    st = reader.status(now)
    rows = reader.metric_rows(reader.metric_ids()[-TAIL_ROWS:])
    losses = [v for r in rows for v in r.get("loss", ())]
    times = [t for r in rows for t in r.get("time", ())]
    max_steps = meta.get("max_steps") if isinstance(meta.get("max_steps"), int) else None
    # the dashboard's figures: the shown rate over the last 10 s, the ETA over the last minute
    rate = rate_over(times, len(times), WINDOW_S) or st.steps_per_s
    if st.state == "paused":  # the rate of the steps before the pause is not the run's now
        rate = None
    steady = rate_over(times, len(times), ETA_WINDOW_S) or rate
    left = eta(st.step, max_steps, steady) if st.state == "running" else None
    vals = reader.val()
    val = next((v for v in reversed(vals) if v[3] is not None), None)
    values, first, last_step = trend(reader, points)
    _, groups = reader.groups()
    return {
        "run": str(reader.paths.root),
        "script": meta.get("script"),
        "device": meta.get("device"),
        "mode": meta.get("mode"),
        "state": st.state,
        "message": st.message,
        "step": st.step,
        "epoch": st.epoch if counts_epochs(meta) else None,
        "max_steps": max_steps,
        "steps_per_s": rate,
        "eta_s": left,
        "last_record": st.last_record if st.last_record is not None else st.heartbeat or None,
        "loss": {
            "now": losses[-1] if losses else None,
            "smoothed": smoothed(losses),
            "val": None if val is None else val[3],
            "val_step": None if val is None else val[1],
        },
        "trend": {"values": values, "first_step": first, "last_step": last_step},
        # the machine's newest sample (rank 0's), while the job runs
        "machine": machine.newest(meta) if st.alive else None,
        "groups": [
            {
                "index": g.get("index", i),
                "name": str(g.get("name", i)),
                "values": g.get("values") or {},
                "editable": [
                    k
                    for k, spec in (g.get("fields") or {}).items()
                    if isinstance(spec, dict) and spec.get("kind") != "readonly"
                ],
                "lr_multiplier": g.get("lr_multiplier"),
                "frozen": g.get("frozen"),
            }
            for i, g in enumerate(groups)
        ],
        "commands": [_event(e) for e in reader.last_events(COMMAND_KINDS, last)],
        "warnings": [_event(e) for e in reader.last_events(WARNING_KINDS, last)],
        "checkpoints": [
            {
                "id": m.id,
                "step": m.step,
                "epoch": m.epoch,
                "reason": m.reason,
                "tag": m.tag,
                "loss": m.loss,
                "val_loss": m.val_loss,
                "time": m.time,
            }
            for m in listing(reader.paths.checkpoints)[-checkpoints:]
        ],
    }


def _event(e: EventRow) -> dict[str, Any]:
    return {"time": e.time, "step": e.step, "kind": e.kind, "message": e.message}


def json_ready(value: Any) -> Any:
    """Non-finite floats as the strings "nan", "inf", "-inf" (JSON has no such numbers)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value


def render(s: dict[str, Any], style: Style) -> str:
    """The summary as aligned text lines for a terminal or a log."""
    lines = []

    def row(label: str, text: str) -> None:
        lines.append(f"{style(f'{label:<11}', 'bold')} {text}")

    where = ", ".join(
        str(x)
        for x in (Path(str(s["script"])).name if s["script"] else None, s["device"], s["mode"])
        if x
    )
    row("run", s["run"] + (f"  ({where})" if where else ""))
    state = s["state"]
    parts = [f"step {s['step']:,}"]
    if s["max_steps"]:
        done = min(s["step"], s["max_steps"]) * 100 // s["max_steps"]
        parts[0] += f" of {s['max_steps']:,} ({done}%)"
    if s["epoch"] is not None:
        parts.append(f"epoch {s['epoch']}")
    if state in ("running", "lr-find", "race"):
        parts.append(f"{fmt.rate(s['steps_per_s'])} steps/s")
    if s["eta_s"] is not None:
        parts.append(f"ETA {fmt.duration(s['eta_s'])}")
    text = f"{style(state, 'lr-find-state' if state == 'lr-find' else state)}  " + ", ".join(parts)
    if s["message"] and state != "running":
        text += f"  ({s['message']})"
    row("state", text)
    loss = s["loss"]
    text = f"{fmt.loss(loss['now'])} now, {fmt.loss(loss['smoothed'])} smoothed"
    if loss["val"] is not None:
        text += f"; val {fmt.loss(loss['val'])} at step {loss['val_step']:,}"
    row("loss", text)
    t = s["trend"]
    if t["values"]:
        finite = [v for v in t["values"] if math.isfinite(v)]
        ends = f" ({fmt.loss(finite[0])} → {fmt.loss(finite[-1])})" if finite else ""
        line, log = loss_spark(t["values"])
        if log:
            ends += ", log scale"
        steps = f"steps {t['first_step']:,} to {t['last_step']:,}"
        row("trend", f"{line}  {steps}{ends}")
    if s.get("machine"):
        row("machine", machine.line(s["machine"]))
    width = max((len(g["name"]) for g in s["groups"]), default=0)
    for i, g in enumerate(s["groups"]):
        shown = [k for k in g["editable"] or list(g["values"]) if k in g["values"]]
        text = f"{g['name']:<{width}}  " + " ".join(
            f"{k}={fmt.value(g['values'][k])}" for k in shown
        )
        if g["frozen"]:
            text += "  frozen"
        if g["lr_multiplier"] not in (None, 1.0):
            text += f"  lr×{fmt.value(g['lr_multiplier'])}"
        row("groups" if i == 0 else "", text)
    for label, key in (("commands", "commands"), ("warnings", "warnings")):
        events = s[key]
        if not events:
            row(label, "none")
        for i, e in enumerate(events):
            row(
                label if i == 0 else "",
                event_line(EventRow(0, e["time"], e["step"], e["kind"], e["message"], None), style),
            )
    if not s["checkpoints"]:
        row("checkpoints", "none")
    for i, c in enumerate(reversed(s["checkpoints"])):
        text = f"{c['id']}  step {c['step']:,}  {c['reason']}"
        if c["tag"]:
            text += f" {c['tag']!r}"
        text += f"  loss {fmt.loss(c['loss'])}"
        if c["val_loss"] is not None:
            text += f"  val {fmt.loss(c['val_loss'])}"
        text += f"  {stamp(c['time'])}"
        row("checkpoints" if i == 0 else "", text)
    return "\n".join(lines)
