"""Messages from the viewer's worker threads to the UI (posted, never called)."""

from __future__ import annotations

from typing import Any

from textual.message import Message

from optitui.store.manifests import Manifest
from optitui.store.reader import CommandOutcome
from optitui.tui.feed import FeedUpdate


class StoreUpdated(Message):
    """The feed read the run store; the UI must call ``consumed.set()`` when done."""

    def __init__(self, update: FeedUpdate) -> None:
        super().__init__()
        self.update = update


class CommandAnswered(Message):
    """The job answered a command (``outcome``), or never will (``note`` says why)."""

    def __init__(self, command_id: str, outcome: CommandOutcome | None, note: str | None) -> None:
        super().__init__()
        self.command_id = command_id
        self.outcome = outcome
        self.note = note


class JobExited(Message):
    """The supervised job process ended with ``returncode``."""

    def __init__(self, returncode: int) -> None:
        super().__init__()
        self.returncode = returncode


class InlineJobEnded(Message):
    """The in-process training loop returned ``state``, or raised ``error``."""

    def __init__(self, state: str | None, error: str | None) -> None:
        super().__init__()
        self.state = state
        self.error = error


class FeedProblem(Message):
    """The run store could not be read this time; the feed keeps trying."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class Followed(Message):
    """A new read of one range test or race (None before the job starts it), the answer
    to the command that asked for it, and the run's state."""

    def __init__(self, found: Any, outcome: CommandOutcome | None, state: str) -> None:
        super().__init__()
        self.found = found
        self.outcome = outcome
        self.state = state

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, Followed)  # only the newest read matters


class CheckpointsListed(Message):
    """The run's complete checkpoints, oldest first (read off the UI thread)."""

    def __init__(self, manifests: list[Manifest]) -> None:
        super().__init__()
        self.manifests = manifests


class StoreUnreadable(Message):
    """The run store cannot be shown by this viewer (e.g. written by another version)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class OverlayUpdated(Message):
    """The feed of an overlaid run (``key``: its directory) read it again; the UI must
    call ``consumed.set()`` when done."""

    def __init__(self, key: str, update: FeedUpdate) -> None:
        super().__init__()
        self.key = key
        self.update = update


class OverlayEnded(Message):
    """An overlaid run can no longer be followed (it vanished, or is of another schema)."""

    def __init__(self, key: str, text: str) -> None:
        super().__init__()
        self.key = key
        self.text = text


class SwitchRun(Message):
    """Steer another run (a directory on this host) from now on."""

    def __init__(self, run_dir: str) -> None:
        super().__init__()
        self.run_dir = run_dir


class RunsListed(Message):
    """Every run the runs browser lists, newest first, as ``optitui ls --json`` has them."""

    def __init__(self, runs: list[dict[str, Any]]) -> None:
        super().__init__()
        self.runs = runs
