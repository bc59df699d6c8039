"""The viewer and the store never load torch; the trainer never loads textual."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO


def _loaded(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", code + "\nimport sys; print(' '.join(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=REPO,
    )
    return set(out.stdout.split())


@pytest.mark.parametrize(
    "module",
    [
        "optitui",
        "optitui.cli",
        "optitui.tui",
        "optitui.store",
        "optitui.store.reader",
        "optitui.store.writer",
        "optitui.store.client",
        "optitui.store.inbox",
        "optitui.store.export",
        "optitui.console.progress",
        "optitui.console.summary",
        "optitui.cli.status",
        "optitui.cli.ls",
        "optitui.cli.export",
        "optitui.cli.diff",
        "optitui.store.compare",
        "optitui.remote.server",
        "optitui.remote.client",
        "optitui.cli.serve_stdio",
        "optitui.cli.race",
        "optitui.store.candidates",
        "optitui.surface.result",
    ],
)
def test_no_torch(module: str) -> None:
    mods = _loaded(f"import {module}")
    assert "torch" not in mods, f"{module} loads torch"


def test_tui_app_loads_no_torch() -> None:
    mods = _loaded(
        "import importlib, pkgutil, optitui.tui as t\n"
        "for m in pkgutil.walk_packages(t.__path__, 'optitui.tui.'):\n"
        "    importlib.import_module(m.name)"
    )
    assert "torch" not in mods
    assert "textual" in mods  # the probe really imported the viewer


def test_trainer_loads_no_textual() -> None:
    mods = _loaded(
        "import importlib, pkgutil, optitui.trainer as t\n"
        "for m in pkgutil.walk_packages(t.__path__, 'optitui.trainer.'):\n"
        "    importlib.import_module(m.name)"
    )
    assert "torch" in mods
    assert not any(m == "textual" or m.startswith("textual.") for m in mods)


def test_import_linter_contracts() -> None:
    out = subprocess.run(["lint-imports"], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stdout + out.stderr
