"""The dashboard's key bar mounts each key bound to its style in that style: no such key
restyles itself (and its part of the screen) while the first frame is being built; the
keys end as Textual's Footer leaves them (the command palette's key compact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

from textual.app import App
from textual.dom import DOMNode
from textual.widgets._footer import FooterKey
from tui_support import fixed_app, loaded, pilot_test, write_fixed_store

PALETTE = "-command-palette"


@pilot_test
async def test_the_footer_keys_mount_without_restyling(tmp_path: Path) -> None:
    paths, _ = write_fixed_store(tmp_path / "run")
    restyled: list[DOMNode] = []
    update_styles = App.update_styles

    def counted(self: App[Any], node: DOMNode, animate: bool = True) -> None:
        if isinstance(node, FooterKey):
            restyled.append(node)
        update_styles(self, node, animate=animate)

    app = fixed_app(paths.root)
    with patch.object(App, "update_styles", counted):
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            keys = list(app.dashboard.query(FooterKey))
            assert len(keys) >= 5 and any("quit" in str(k.render()) for k in keys)
            for key in keys:
                compact = key.has_class(PALETTE)  # the one key Footer does not bind
                assert key.compact == key.has_class("-compact") == compact, key
    assert restyled and all(key.has_class(PALETTE) for key in restyled)
