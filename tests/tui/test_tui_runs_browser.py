"""The runs browser (b): every run under the root, filtered by name; Space overlays or
removes one, Enter steers another live run; runs of another optitui are named."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable
from tui_support import (
    FakeJob,
    commands_table,
    fixed_settings,
    loaded,
    loss_at,
    pilot_test,
    stamp_meta,
    wait_until,
    write_fixed_store,
)

from optitui.tui.app import build_app
from optitui.tui.overlay import without_tag
from optitui.tui.overlay_feed import overlay_run
from optitui.tui.screens.runs_browser import RunsBrowser

TAGS = ("0123456789abcdef", "fedcba9876543210", "00112233445566ff")


def job(root: Path, name: str) -> FakeJob:
    paths, writer = write_fixed_store(root / name, keep_open=True)
    assert writer is not None
    return FakeJob(paths, writer)


@pilot_test
async def test_browse_filter_overlay_and_steer_another_run(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    steered = job(root, f"digits-20260921-120000-{TAGS[0]}")
    done, _ = write_fixed_store(
        root / f"digits-20260921-121000-{TAGS[1]}", steps=300, state="finished"
    )
    baseline, _ = write_fixed_store(root / "sgd-baseline", steps=200, state="stopped")
    older, _ = write_fixed_store(root / "older", steps=100, state="finished")
    stamp_meta(older, "optitui_version", '"0.0.9"')
    future, _ = write_fixed_store(root / "future", steps=100, state="finished")
    stamp_meta(future, "optitui_version", '"9.9.9"')
    stamp_meta(future, "schema_version", "2")
    other = job(root, f"digits-20260921-123000-{TAGS[2]}")
    notes: list[str] = []
    with steered, other:
        app = build_app(steered.paths.root, settings=fixed_settings(runs_root=root))
        async with app.run_test(size=(160, 48)) as pilot:
            await loaded(pilot)
            app.notify = lambda message, **kw: notes.append(str(message))  # type: ignore[method-assign]
            first = app.dashboard
            await pilot.press("b")
            browser = app.screen
            assert isinstance(browser, RunsBrowser)
            await wait_until(pilot, lambda: browser.reads > 0, what="the runs listed")

            def rows() -> list[tuple[str, ...]]:
                table = browser.query_one(DataTable)
                return [tuple(map(str, table.get_row_at(i))) for i in range(table.row_count)]

            # newest first, the steered run marked, another optitui's runs named
            names = [r[1] for r in rows()]
            assert names == [
                without_tag(other.paths.root.name),
                "future",
                "older",
                "sgd-baseline",
                without_tag(done.root.name),
                without_tag(steered.paths.root.name),
            ]
            shown = {r[1]: r for r in rows()}
            assert shown[names[-1]][0] == "●" and shown[names[-1]][2] == "running"
            assert (shown["older"][2], shown["older"][-1]) == ("finished", "0.0.9")
            best = min(loss_at(100), loss_at(200)) + 0.1
            assert shown["sgd-baseline"][2:6] == (
                "stopped",
                "200",
                f"{loss_at(200):.4g}",
                f"{best:.4g}",
            )
            assert (shown["future"][2], shown["future"][-1]) == ("unreadable", "9.9.9")
            # filter by name, then Space overlays and removes
            await pilot.press("slash", *"sgd", "enter")
            assert [r[1] for r in rows()] == ["sgd-baseline"]
            await pilot.press("space")
            assert browser.said == "sgd-baseline: overlaid"
            assert list(first.overlay_runs) == [str(baseline.root)]
            assert rows()[0][0] == "━"
            await pilot.press("space")
            assert browser.said == "sgd-baseline: no longer overlaid" and not first.overlay_runs
            assert rows()[0][0] == ""
            await pilot.press("slash", "backspace", "backspace", "backspace", "enter")
            assert len(rows()) == 6
            highlighted = browser.highlighted()
            assert highlighted is not None and highlighted["run"] == "sgd-baseline"  # kept
            # another schema: named, not overlaid
            await pilot.press("ctrl+home", "down", "space")
            assert browser.said.startswith("cannot overlay future: ")
            assert "run store schema version 2" in browser.said and not first.overlay_runs
            # Enter steers live runs of this optitui only
            await pilot.press("down")
            assert "· older · written by optitui 0.0.9: read-only" in browser.detail
            await pilot.press("enter")  # older
            await wait_until(pilot, lambda: notes, what="the refusal")
            assert notes[-1] == "older was written by optitui 0.0.9: shown read-only, not steered"
            await pilot.press("down", "down", "enter")  # the finished run
            await wait_until(pilot, lambda: len(notes) > 1, what="the refusal")
            assert notes[-1] == f"{done.root.name} is finished: only a live run can be steered"
            assert app.screen is browser and app.dashboard is first
            await pilot.press("space")  # overlay the finished run, then steer another
            assert browser.said == f"{done.root.name}: overlaid"
            await pilot.press("down", "space")
            assert browser.said == f"{steered.paths.root.name} is the run the keys steer"
            await pilot.press("ctrl+home", "enter")
            await wait_until(pilot, lambda: app.dashboard is not first, what="the switch")
            await wait_until(pilot, lambda: app.screen is app.dashboard)
            now = app.dashboard
            assert now.run.label == other.paths.root.name
            # the run steered until now joins the overlays
            assert set(now.overlay_runs) == {str(done.root), str(steered.paths.root)}
            await loaded(pilot)
            await pilot.press("plus")
            await wait_until(pilot, lambda: commands_table(other.paths), what="the command")
            assert commands_table(steered.paths) == []
            assert [k for k, *_ in commands_table(other.paths)] == ["scale-lr"]


@pilot_test
async def test_a_run_overlaid_from_another_folder_is_listed_to_take_it_off(
    tmp_path: Path,
) -> None:
    root = tmp_path / "runs"
    steered, _ = write_fixed_store(root / "main", steps=50)
    far, _ = write_fixed_store(tmp_path / "elsewhere" / "far", steps=30, state="finished")
    write_fixed_store(tmp_path / "elsewhere" / "near", steps=20, state="finished")
    app = build_app(
        steered.root,
        settings=fixed_settings(runs_root=root),
        overlays=[overlay_run(far.root)],
    )
    async with app.run_test(size=(160, 48)) as pilot:
        await loaded(pilot)
        await pilot.press("b")
        browser = app.screen
        assert isinstance(browser, RunsBrowser)
        await wait_until(pilot, lambda: browser.reads > 0, what="the runs listed")
        # the overlay's folder is listed with it: its neighbours can be overlaid too
        assert sorted(r["run"] for r in browser.runs) == ["far", "main", "near"]
        await pilot.press("slash", *"far", "enter", "space")
        assert browser.said == "far: no longer overlaid"
        assert not app.dashboard.overlay_runs
