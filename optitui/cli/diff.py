"""``optitui diff``: what differs between two runs, as text or JSON.

Exit status as diff(1): 0 when the runs do not differ, 1 when they do, 2 when one
cannot be read.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path
from typing import Any

from optitui.cli.common import STORE_ERRORS, RunUnreadable, err, open_run
from optitui.version import __version__


def add_parser(sub: Any) -> None:
    d = sub.add_parser(
        "diff",
        help="what differs between two runs: script, optimizer, groups, scheduler, job, commands",
        description="Compares what two runs recorded when they started: the script, its "
        "arguments and a digest of its text; device and versions; the optimizer class and "
        "every param group's initial hyperparameters (groups by position); the scheduler and "
        "its settings; the Job's batch size, grad accumulation, clipping, seed, step and epoch "
        "limits and its extra values. Then the commands each run received, as one timeline "
        "(step, command, each run's answer). Exit status 0: no difference, 1: the runs "
        "differ, 2: a run cannot be read.",
    )
    d.add_argument("run_a", metavar="RUN_A", help="run directory (or its name under --root)")
    d.add_argument("run_b", metavar="RUN_B", help="run directory (or its name under --root)")
    d.add_argument("--root", type=Path, default=Path("runs"), help="where runs are (./runs)")
    d.add_argument("--json", action="store_true", help="print the comparison as one JSON object")
    d.add_argument(
        "--all", action="store_true", help="list every compared value, the same ones too"
    )


#: a value longer than this is shown with its middle left out (``--json`` has it whole)
WIDEST = 60


def shown(name: str, value: Any, digits: int = 6) -> str:
    """A compared value as the table shows it, floats to ``digits`` significant digits."""
    from optitui.store.compare import Missing

    if isinstance(value, Missing):
        return repr(value)
    if name == "arguments" and isinstance(value, list):
        return shlex.join(str(v) for v in value) if value else "(none)"
    if name == "contents (sha256)" and isinstance(value, str):
        return value[:12]
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    if isinstance(value, list):
        return "(" + ", ".join(shown("", v, digits) for v in value) + ")"
    if isinstance(value, dict):
        return json.dumps(value)
    return str(value)


def _changed_words(a: list[Any], b: list[Any]) -> tuple[str, str]:
    """Two argument lists as the words each has where they differ, ``…`` for those alike."""
    import difflib

    sides: tuple[list[str], list[str]] = ([], [])
    for op, i, j, k, m in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if op == "equal":
            sides[0].append("…")
            sides[1].append("…")
        else:
            sides[0].append(shlex.join(map(str, a[i:j])) or "(none)")
            sides[1].append(shlex.join(map(str, b[k:m])) or "(none)")
    return " ".join(sides[0]), " ".join(sides[1])


def _short(text: str) -> str:
    if len(text) <= WIDEST:
        return text
    half = (WIDEST - 1) // 2
    return text[:half] + "…" + text[-half:]


def pair(name: str, a: Any, b: Any) -> tuple[str, str]:
    """Two values side by side: floats with as many digits as it takes to tell them apart
    (at least 4: 3e-4 and 0.00030001 never read the same), arguments as the words that
    differ, long values with their middle left out."""
    if a == b:
        return _short(shown(name, a)), _short(shown(name, b))
    if name == "arguments" and isinstance(a, list) and isinstance(b, list):
        left, right = _changed_words(a, b)
        return _short(left), _short(right)
    digits = next((d for d in range(4, 18) if shown(name, a, d) != shown(name, b, d)), 17)
    return _short(shown(name, a, digits)), _short(shown(name, b, digits))


def _run(reader: Any) -> dict[str, Any]:
    """What a run is now: not compared, shown above the differences."""
    st = reader.status()
    version = reader.meta().get("optitui_version")
    return {
        "run": reader.paths.root.name,
        "path": str(reader.paths.root),
        "state": st.state,
        "step": st.step,
        "loss": reader.last_loss(),
        "optitui_version": version if isinstance(version, str) else None,
    }


def as_data(runs: dict[str, Any], cmp: Any, every: bool) -> dict[str, Any]:
    """``diff --json``: a value a run does not have is null, with ``a_is``/``b_is`` saying
    why: ``absent`` or ``not recorded``."""
    from optitui.console.summary import json_ready
    from optitui.store.compare import Missing

    def value(f: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"section": f.section, "field": f.name}
        for side in ("a", "b"):
            v = getattr(f, side)
            out[side] = None if isinstance(v, Missing) else v
            if isinstance(v, Missing):
                out[f"{side}_is"] = repr(v)
        return out | ({"same": f.same} if every else {})

    def answer(a: Any) -> dict[str, Any] | None:
        if a is None:
            return None
        return {"applied": a.applied, "reason": a.reason, "outcome": a.outcome}

    body = {
        "same": cmp.same,
        "runs": runs,
        "compared": len(cmp.fields),
        "differences": [value(f) for f in (cmp.fields if every else cmp.differences)],
        "commands_differ": cmp.commands_differ,
        "commands": [
            {"step": m.step, "command": m.command, "a": answer(m.a), "b": answer(m.b)}
            for m in cmp.timeline
        ],
        "notes": cmp.notes,
    }
    return dict(json_ready(body))


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def render(runs: dict[str, Any], cmp: Any, every: bool) -> list[str]:
    """The comparison as text: the two runs, the values that differ by section, the
    commands' timeline, then a verdict and the notes."""
    lines = []
    for side in ("a", "b"):
        r = runs[side]
        loss = "" if r["loss"] is None else f", loss {r['loss']:.4g}"
        v = r["optitui_version"]
        by = "" if v == __version__ else f"  (written by optitui {v or 'of an unrecorded version'})"
        lines.append(f"{side.upper()}  {r['path']}  {r['state']} at step {r['step']:,}{loss}{by}")
    fields = cmp.fields if every else cmp.differences
    if fields:
        rows: list[tuple[str, ...]] = [("", "A", "B", "")]
        names = {f.section: f.a for f in cmp.fields if f.name == "name"}
        section = None
        for f in fields:
            if f.section != section:
                section = f.section
                name = names.get(section)
                label = section if name in (None, section.split()[-1]) else f"{section} ({name})"
                rows.append((label, "", "", ""))
            mark = "*" if every and not f.same else ""
            rows.append((f"  {f.name}", *pair(f.name, f.a, f.b), mark))
        lines += ["", *_table(rows)]
    if cmp.timeline and (cmp.commands_differ or every):
        rows = [("commands", "STEP", "COMMAND", "A", "B")]
        for m in cmp.timeline:
            a = "–" if m.a is None else m.a.outcome
            b = "–" if m.b is None else m.b.outcome
            rows.append(("", f"{m.step:,}", m.command, a, b))
        lines += ["", *_table(rows)]
    lines.append("")
    lines.append(verdict(cmp))
    return lines + [f"note: {n}" for n in cmp.notes]


def verdict(cmp: Any) -> str:
    n, k = len(cmp.fields), len(cmp.timeline)
    said = f"{k} command{'s' if k != 1 else ''}" if k else "no commands"
    if cmp.same:
        return (
            f"A and B do not differ: the same set-up ({n} values compared: script, "
            f"environment, optimizer, every group's initial hyperparameters, scheduler, job) "
            f"and {said}" + (" at the same steps, answered alike" if k else "")
        )
    parts = []
    if cmp.differences:
        parts.append(f"{len(cmp.differences)} of {n} set-up values differ")
    if cmp.commands_differ:
        parts.append("the commands differ")
    elif k:
        parts.append(f"the same {said} at the same steps")
    return "; ".join(parts)


def main(args: argparse.Namespace) -> int:
    from optitui.store.compare import compare

    try:
        with (
            open_run(args.run_a, args.root, "diff") as a,
            open_run(args.run_b, args.root, "diff") as b,
        ):
            runs = {"a": _run(a), "b": _run(b)}
            cmp = compare(a, b)
    except RunUnreadable as exc:
        err(str(exc))
        return 2
    except STORE_ERRORS as exc:  # a store damaged past its first reads
        err(f"diff: a run store cannot be read: {exc}")
        return 2
    if args.json:
        print(json.dumps(as_data(runs, cmp, args.all), indent=2))
    else:
        print("\n".join(render(runs, cmp, args.all)))
    return 0 if cmp.same else 1
