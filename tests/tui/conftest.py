"""Every snapshot waits for the key bar: a key that changes the screen's keys has the bar
rebuilt after the next refresh, and a picture taken before that shows it empty."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import pytest
from textual.pilot import Pilot
from tui_support import keys_settled


@pytest.fixture
def snap_compare(snap_compare: Callable[..., bool]) -> Callable[..., bool]:
    """pytest-textual-snapshot's ``snap_compare``, with the keys pressed and the key bar
    settled before the picture is taken."""

    def compare(
        app: Any,
        press: Iterable[str] = (),
        terminal_size: tuple[int, int] = (80, 24),
        run_before: Callable[[Pilot[Any]], Awaitable[None] | None] | None = None,
    ) -> bool:
        async def settled(pilot: Pilot[Any]) -> None:
            if run_before is not None:
                result = run_before(pilot)
                if inspect.isawaitable(result):
                    await result
            await pilot.press(*press)
            await keys_settled(pilot)

        return snap_compare(app, terminal_size=terminal_size, run_before=settled)

    return compare
