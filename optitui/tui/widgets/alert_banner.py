"""A loud line across the top when the run needs the user: it paused itself, failed,
died, or its store cannot be shown by this viewer."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from optitui.store.reader import Status
from optitui.tui import fmt


def alert(
    status: Status | None,
    store_problem: str | None,
    traceback: bool,
    now: float,
    link: str | None = None,
    output: bool = False,
) -> tuple[str, str] | None:
    """(text, level) of the banner to show, or None; level is "error" or "info".
    ``output``: the job's output was captured (and shown in the log below)."""
    if store_problem:
        return (
            f"✗ this run store cannot be shown: {store_problem}. "
            "Open it with the optitui version that wrote it.",
            "error",
        )
    if link:  # a remote run whose connection is down: what is shown may be old
        return f"⚠ {link}", "error"
    if status is None:
        return None
    where = f"at step {status.step:,}"
    if status.state == "failed":
        more = " · t shows the traceback" if traceback else ""
        return f"✗ TRAINING FAILED {where}: {status.message or 'no reason given'}{more}", "error"
    if status.state == "crashed":
        age = fmt.duration(max(0.0, now - status.heartbeat)) if status.heartbeat else "?"
        why = status.message or "the job stopped without a word"
        return (
            f"✗ THE JOB DIED {where}: {why} (last heartbeat {age} ago); "
            + (
                "its last output, in the log below, may say more"
                if output
                else "the terminal or log it ran in may say more"
            ),
            "error",
        )
    if status.state == "paused" and status.message:
        return f"⏸ PAUSED — {status.message} · space resumes", "error"
    if status.state == "lr-find":
        return "LR range test running: r opens it, Esc there cancels it", "info"
    if status.state == "race":
        return "optimizer race running: R opens it, Esc there cancels it", "info"
    return None


def needs_user(status: Status | None) -> tuple[str, str | None] | None:
    """(state, reason) when the run waits on the user (it paused itself, failed, died or
    finished), else None; a change of it while a viewer watches rings the bell."""
    if status is None:
        return None
    if status.state in ("finished", "failed", "crashed"):
        return status.state, status.message
    if status.state == "paused" and status.message:  # the guard or an OOM paused it
        return status.state, status.message
    return None


class AlertBanner(Static):
    """Hidden while there is nothing to say."""

    DEFAULT_CSS = """
    AlertBanner {
        height: auto;
        padding: 0 1;
        display: none;
        text-style: bold;
    }
    AlertBanner.-error {
        background: $error;
        color: $text;
    }
    AlertBanner.-info {
        background: $secondary;
        color: $text;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.text = ""
        self.level = ""

    def show(
        self,
        status: Status | None,
        store_problem: str | None,
        traceback: bool,
        now: float,
        link: str | None = None,
        output: bool = False,
    ) -> None:
        found = alert(status, store_problem, traceback, now, link, output)
        text, level = found if found is not None else ("", "")
        if (text, level) == (self.text, self.level):
            return
        self.text, self.level = text, level
        self.set_class(level == "error", "-error")
        self.set_class(level == "info", "-info")
        self.display = bool(text)
        self.update(Text(text))
