"""What the dashboard leaves out of its start-up imports (the first frame of `optitui attach`
waits for them) is still there once a screen needs it.

One fresh interpreter: ``import optitui.tui.app`` must not load the modules below; rich
must still pretty-print attrs objects field by field; then the dashboard opens the save
form (s) and the field editor (e), which load them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import optitui

ROOT = Path(optitui.__file__).resolve().parents[1]
#: not needed for the first frame: attrs (rich.pretty's, for attrs objects only), the
#: forms behind the keys, the field editor
DEFERRED = ("attr", "optitui.tui.forms", "optitui.tui.screens.field_editor")
#: not needed by the viewer at all: the store's random names come from os.urandom
UNUSED = ("hashlib", "secrets")

CHILD = """
import asyncio, json, sys
import optitui.tui.app

DEFERRED = {deferred!r}
at_import = [m for m in DEFERRED + {unused!r} if m in sys.modules]

import attr
from rich.pretty import pretty_repr

@attr.s(auto_attribs=True)
class Point:
    x: int
    y: int

pretty = pretty_repr(Point(1, 2), max_width=8)

sys.path.insert(0, {support!r})
from tui_support import fixed_app, live, loaded, on_dashboard, wait_until
from optitui.tui.screens.field_editor import FieldEditor
from optitui.tui.screens.form import FormScreen

opened = []

async def main():
    paths, job = live(__import__("pathlib").Path(sys.argv[1]))
    with job:
        app = fixed_app(paths.root)
        async with app.run_test(size=(120, 34)) as pilot:
            await loaded(pilot)
            for key, screen in (("s", FormScreen), ("e", FieldEditor)):
                await pilot.press(key)
                await wait_until(pilot, lambda: isinstance(app.screen, screen))
                opened.append(type(app.screen).__name__)
                await pilot.press("escape")
                await wait_until(pilot, lambda: on_dashboard(app))

asyncio.run(main())
print(json.dumps({{"at_import": at_import, "pretty": pretty, "opened": opened,
                  "after": [m for m in DEFERRED if m in sys.modules]}}))
"""


def test_first_frame_imports_leave_out_what_only_later_screens_use(tmp_path: Path) -> None:
    code = CHILD.format(deferred=DEFERRED, unused=UNUSED, support=str(Path(__file__).parent))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    got = json.loads(out.stdout.splitlines()[-1])
    assert got["at_import"] == []
    # attrs still recognised by rich once needed: one field per line when narrow
    assert got["pretty"] == "Point(\n    x=1,\n    y=2\n)"
    assert got["opened"] == ["FormScreen", "FieldEditor"]
    assert got["after"] == list(DEFERRED)
