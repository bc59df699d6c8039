"""Attaching: the first full frame comes once, at the plots' final size, with the real data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tui_support import fixed_app, loaded, pilot_test, write_fixed_store

from optitui.tui.widgets.history_plot import HistoryPlot


@pilot_test
async def test_the_first_full_frame_is_drawn_once_at_the_final_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths, _ = write_fixed_store(tmp_path / "run", steps=3000)
    built: list[tuple[str, int, Any]] = []
    build = HistoryPlot._build

    def counted(self: HistoryPlot, force: bool) -> bool:
        done = build(self, force)
        if done and self.view.length:
            built.append((type(self).__name__, self.view.length, self.size))
        return done

    monkeypatch.setattr(HistoryPlot, "_build", counted)
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot, 3000)
        plots = app.dashboard.plots
        # the group table filled by the first update took rows from the plots: each
        # drew the history once, at the size it has now (not once before and once after)
        assert sorted(built) == sorted((type(p).__name__, 3000, p.size) for p in plots)
