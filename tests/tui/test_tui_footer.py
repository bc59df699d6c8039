"""The dashboard's key bar mounts each key bound to its style in that style: no such key
restyles itself (and its part of the screen) while the first frame is being built; the
keys end as Textual's Footer leaves them (the command palette's key compact)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from unittest.mock import patch

from metrics_support import write_metrics_store
from textual.app import App
from textual.dom import DOMNode
from textual.widgets import Footer
from textual.widgets._footer import FooterKey
from tui_support import (
    fixed_app,
    keys_settled,
    loaded,
    pilot_test,
    wait_until,
    write_fixed_store,
)

from optitui.tui.screens.dashboard import DashboardScreen
from optitui.tui.screens.metric_full import MetricFullScreen
from optitui.tui.screens.metrics import MetricsScreen
from optitui.tui.widgets.key_footer import KeyFooter

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


def footer_words(app: App[Any]) -> tuple[list[str], int]:
    """The key bar's keys as they read (key and description), and how many columns they
    need beyond the bar's width (those are cut off, or drawn over)."""
    footer = app.screen.query_one(Footer)
    keys = list(footer.query(FooterKey))
    over = sum(k.outer_size.width for k in keys) - footer.size.width
    return [f"{k.key_display} {k.description}".strip() for k in keys], max(over, 0)


@pilot_test
async def test_a_narrow_terminal_shows_every_key_of_the_metrics_screens(tmp_path: Path) -> None:
    """At 80x24 the command palette's key (listed in help) gives its room to the screen's
    own keys on the metrics screen and a chart at full size, as on the dashboard."""
    paths = write_metrics_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(80, 24)) as pilot:
        await loaded(pilot)
        for key, screen in (
            ("", DashboardScreen),
            ("m", MetricsScreen),
            ("enter", MetricFullScreen),
        ):
            if key:
                await pilot.press(key)
            await wait_until(pilot, lambda s=screen: isinstance(app.screen, s), what=str(screen))  # type: ignore[misc]
            await pilot.pause()
            words, cut = footer_words(app)
            assert cut == 0, words
            assert not any("palette" in w for w in words), words
            assert "w window" in words or screen is DashboardScreen, words
    async with fixed_app(paths.root).run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        assert any("palette" in w for w in footer_words(pilot.app)[0])  # wide: it shows


@pilot_test
async def test_the_palette_key_goes_and_comes_back_as_the_terminal_is_resized(
    tmp_path: Path,
) -> None:
    """A terminal made narrow while the metrics screen is open loses the palette's key
    there (and the screen's own keys fit); made wide again, it has it back."""
    paths = write_metrics_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("m")
        await wait_until(pilot, lambda: isinstance(app.screen, MetricsScreen))
        await pilot.pause()
        assert any("palette" in w for w in footer_words(app)[0])
        await pilot.resize_terminal(80, 24)

        def narrow() -> bool:  # (a footer being rebuilt has no keys yet: not a narrow one)
            words = footer_words(app)[0]
            return bool(words) and not any("palette" in w for w in words)

        await wait_until(pilot, narrow)
        words, over = footer_words(app)
        assert over == 0 and "w window" in words, words
        await pilot.resize_terminal(160, 48)
        await wait_until(pilot, lambda: any("palette" in w for w in footer_words(app)[0]))


@pilot_test
async def test_without_textuals_private_key_pieces_the_bar_is_footers_own(
    tmp_path: Path, monkeypatch: Any
) -> None:
    """The bar reaches into Textual's private FooterKey; a Textual that moved it must
    still get a dashboard with every key in its bar, only restyled as Footer does."""
    from optitui.tui.widgets import key_footer

    assert not key_footer._bound(object())  # no binding table: left alone
    monkeypatch.setattr(key_footer, "FooterKey", None)
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        keys = [k.key for k in app.dashboard.query(FooterKey)]
        assert "q" in keys and "e" in keys


@pilot_test
async def test_the_bar_says_when_it_is_being_rebuilt(tmp_path: Path) -> None:
    """A change of the screen's keys has the bar rebuilt after the next refresh: its old
    keys go before the new ones mount, so a picture taken between shows an empty bar.
    The bar is not settled from the change until its keys are back, and the snapshots
    wait for that (keys_settled)."""
    paths, _ = write_fixed_store(tmp_path / "run")
    app = fixed_app(paths.root)
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        footer = app.dashboard.query_one(KeyFooter)
        assert footer.settled and footer.query(FooterKey)
        seen: list[tuple[bool, int]] = []  # (settled, keys) as the new keys mount
        mount_all = KeyFooter.mount_all

        def mounting(self: KeyFooter, *args: Any, **kwargs: Any) -> Any:
            seen.append((self.settled, len(self.query(FooterKey))))
            return mount_all(self, *args, **kwargs)

        with patch.object(KeyFooter, "mount_all", mounting):
            app.dashboard.refresh_bindings()  # as a focus change or a toggle does
            await keys_settled(pilot)
        assert seen == [(False, 0)]  # the bar was empty, and said it was not settled
        assert footer.settled and len(footer.query(FooterKey)) >= 5
