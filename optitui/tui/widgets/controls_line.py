"""One line of the job's live controls: optimizer, scheduler, lookahead, clipping,
checkpoint policy and divergence policy (``meta["controls"]``)."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from optitui.tui import fmt
from optitui.tui.routine import kept


def _scheduler(c: dict[str, Any]) -> str:
    name = c.get("scheduler")
    attached = "attached" if c.get("scheduler_attached", True) else "DETACHED"
    by_script = bool(c.get("lr_by_script"))
    if not name:
        return f"lr written by the script ({attached})" if by_script else "no scheduler"
    out = f"{name} {attached}"
    if c.get("cycles_momentum"):
        out += ", cycles momentum"
    if by_script:
        out += ", lr written by the script"
    return out


def _lookahead(value: Any) -> str:
    if not isinstance(value, dict):
        return "lookahead off"
    return f"lookahead k={value.get('k')} α={fmt.value(value.get('alpha'))}"


def _checkpoints(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    when = []
    if value.get("every"):
        when.append(f"every {fmt.count(value['every'])} steps")
    if value.get("minutes"):
        when.append(f"every {fmt.value(value['minutes'])} min")
    return f"ckpt {' / '.join(when) or 'on request'}, {kept(value)}"


def _divergence(value: Any) -> str:
    if not isinstance(value, dict):
        return ""
    action = str(value.get("action", "?"))
    if action == "rollback":
        return (
            f"on NaN: rollback (lr×{fmt.value(value.get('lr_factor'))}, skip {value.get('skip')})"
        )
    return f"on NaN: {action}"


def describe(meta: dict[str, Any]) -> Text:
    c = meta.get("controls")
    if not isinstance(c, dict):  # a job that does not report them: what meta says
        c = {"optimizer": meta.get("optimizer"), "scheduler": meta.get("scheduler")}
    parts = [
        str(c.get("optimizer") or meta.get("optimizer") or "?"),
        _scheduler(c),
    ]
    if "lookahead" in c:
        parts.append(_lookahead(c.get("lookahead")))
    if "clip" in c:
        clip = c.get("clip")
        parts.append("clip off" if clip is None else f"clip {fmt.value(clip)}")
    parts += [
        p for p in (_checkpoints(c.get("checkpoints")), _divergence(c.get("divergence"))) if p
    ]
    t = Text(no_wrap=True, overflow="ellipsis")
    for i, part in enumerate(parts):
        if i:
            t.append(" · ", "dim")
        t.append(part, "bold" if i == 0 else ("yellow" if "DETACHED" in part else ""))
    return t


class ControlsLine(Static):
    """Redrawn only when the job's metadata changes."""

    DEFAULT_CSS = """
    ControlsLine {
        height: 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        padding: 0 1;
    }
    """

    _shown: Text | None = None

    def show(self, meta: dict[str, Any]) -> None:
        text = describe(meta)
        if text != self._shown:  # one line: its text never changes the screen's layout
            self._shown = text
            self.update(text, layout=False)
