"""SVG snapshots of the main screen with fixed data (regenerate: pytest --snapshot-update)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tui_support import fixed_app, snapshot_ready, write_fixed_store


def test_main_screen_80x24(snap_compare: Any, tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "digits-fixed")
    app = fixed_app(paths.root)
    assert snap_compare(app, terminal_size=(80, 24), run_before=snapshot_ready(600))


def test_main_screen_160x48(snap_compare: Any, tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "digits-fixed")
    app = fixed_app(paths.root)
    assert snap_compare(app, terminal_size=(160, 48), run_before=snapshot_ready(600))


def test_main_screen_log_y_last_window_160x48(snap_compare: Any, tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "digits-fixed")
    app = fixed_app(paths.root, window=200)

    async def run_before(pilot: Any) -> None:
        await snapshot_ready(600)(pilot)
        await pilot.press("l", "w", "down")
        await snapshot_ready(600)(pilot)

    assert snap_compare(app, terminal_size=(160, 48), run_before=run_before)
