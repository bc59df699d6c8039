"""An optimizer race's answer as text: the ranked table ``optitui send RUN race`` prints."""

from __future__ import annotations

from typing import Any

from optitui.store.race_results import ended_word
from optitui.store.reader import Race


def _num(x: Any, spec: str = ".4g") -> str:
    return "-" if x is None else format(x, spec)


def _change(row: dict[str, Any]) -> str:
    if row["candidate"] == 0:
        return "(reference)"
    if row["change"] is None:
        return "-"
    pct = row["change_pct"]
    text = f"{row['change']:+.3g}" + ("" if pct is None else f" ({pct:+.1f}%)")
    return text + (" ~noise" if row["within_noise"] else "")


def cost(race: Race) -> str:
    """What the race took: the candidates' steps, the snapshot and the restores."""
    s = race.data.get("seconds") or {}
    runs = s.get("candidates") or []
    k, n = len(race.config.get("candidates") or []), race.config.get("steps")
    return (
        f"{k} candidates x {n} steps: {sum(runs):.2f} s racing"
        f" + snapshot {s.get('snapshot', 0.0):.3f} s + restores {s.get('restore', 0.0):.3f} s"
    )


def table(race: Race, run: str = "RUN") -> str:
    """The ranked candidates, what the numbers mean, and how to apply one."""
    rows = race.results
    head = f"race {race.id} at step {race.step:,}: {race.status}"
    lines = [head + (f" ({race.message})" if race.message else ""), cost(race)]
    if not rows:
        return "\n".join(lines)
    has_val = any(r["val"] is not None for r in rows)
    width = max(9, *(len(r["text"]) for r in rows))
    w = max(10, *(len(_change(r)) for r in rows))  # ~noise makes some longer
    cols = f"{'rank':>4}  {'#':>2}  {'candidate':<{width}}  {'final loss':>10}  {'vs current':<{w}}"
    lines += ["", (cols + ("  val loss" if has_val else "")).rstrip()]
    for r in rows:
        rank = str(r["rank"]) if r["final"] is not None else "-"
        final = _num(r["final"]) if r["final"] is not None else ended_word(r["state"])
        line = (
            f"{rank:>4}  {r['candidate']:>2}  {r['text']:<{width}}  {final:>10}  {_change(r):<{w}}"
        )
        if has_val:
            line += f"  {_num(r['val'])}"
        lines.append(line.rstrip())
    band = rows[0]["noise"]
    notes = race.data.get("notes") or []
    lines.append("")
    if band is not None:
        lines.append(
            f"final loss: smoothed train loss after the last step; noise band ±{band:.3g} "
            "(from the spread of the last steps): ~noise marks a change inside it"
        )
    lines += [f"  {i}: {why}" for i, why in enumerate(notes) if why]
    by = rows[0].get("ranked_by")
    lines.append(f"ranked by {'val loss' if by == 'val' else 'final train loss'}")
    lines.append(f"apply one: optitui send {run} race-apply {race.id} N")
    return "\n".join(lines)
