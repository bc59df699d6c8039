"""numpy for the viewer's passes over whole columns, imported on the first such pass.

A first frame of a long run (a million steps) spends most of its Python time on a few
passes over every value: the min/max pyramids and the smoothed-loss windows. numpy does
each in milliseconds. Importing it costs 0.1-0.2 s, so only a pass that long asks for it
(a short run's attach never does), and without numpy every pass has its Python form.
"""

from __future__ import annotations

from functools import lru_cache
from types import ModuleType


@lru_cache(maxsize=1)
def numpy() -> ModuleType | None:
    """The numpy module, or None where it is not installed."""
    try:
        import numpy as np
    except ImportError:
        return None
    return np
