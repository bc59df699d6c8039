"""rich.pretty without the ``attrs`` package loaded up front.

Textual's ``RichLog`` (the event log's base) imports ``rich.pretty``, which imports
``attrs`` at once only to recognise attrs classes when it pretty-prints an object: about
a twentieth of the dashboard's imports, for a log that only ever writes text.
:func:`import_pretty` imports ``rich.pretty`` with ``attrs`` out of reach, then gives it a
stand-in that imports ``attrs`` the first time rich asks it anything, so an attrs object
is pretty-printed as it always was.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from types import ModuleType
from typing import Any


class AttrsOnUse:
    """Stands for the ``attr`` module in ``rich.pretty``; imports it on first use."""

    def __getattr__(self, name: str) -> Any:
        module: ModuleType = importlib.import_module("attr")
        return getattr(module, name)


def import_pretty() -> None:
    """Import ``rich.pretty`` without importing ``attrs`` (a no-op once either is loaded,
    or where ``attrs`` is not installed)."""
    if "rich.pretty" in sys.modules or "attr" in sys.modules:
        return
    if importlib.util.find_spec("attr") is None:
        return
    # None in sys.modules makes `import attr` fail at once: rich.pretty then takes attrs
    # as absent. Only the dashboard's own imports run meanwhile; none of them needs attrs.
    sys.modules["attr"] = None  # type: ignore[assignment]
    try:
        pretty = importlib.import_module("rich.pretty")
    finally:
        if sys.modules.get("attr") is None:
            del sys.modules["attr"]
    if getattr(pretty, "_has_attrs", True) is False and hasattr(pretty, "_attr_module") is False:
        # what rich.pretty keeps when attrs is there, as it would have set them
        pretty._attr_module = AttrsOnUse()  # type: ignore[attr-defined]
        pretty._has_attrs = True  # type: ignore[attr-defined]
