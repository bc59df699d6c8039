"""What a user metric may be called, and which values are one number."""

from __future__ import annotations

import decimal
import numbers
from typing import Any

from optitui.trainer.core.health import SERIES as HEALTH_SERIES

#: names the store's own columns (and the export's) already use
RESERVED = frozenset(
    {"step", "epoch", "time", "loss", "branch", "run", "skipped", "grad_norm", "val_loss"}
)

#: the beginnings of the names of optitui's own per-group series (``lr/0``,
#: ``update_ratio/head``): a metric of that name would be exported as one of them
_OWN_PREFIXES = tuple(f"{series}/" for series in ("lr", *HEALTH_SERIES))


def is_decimal(v: object) -> bool:
    """A Decimal a float can be made of (every one but a signalling NaN)."""
    return isinstance(v, decimal.Decimal) and not v.is_snan()


def kind_of(v: object) -> str:
    """A value's kind, for a warning: None, a complex number, a str, ..."""
    if v is None:
        return "None"
    return "a complex number" if isinstance(v, numbers.Complex) else f"a {type(v).__name__}"


def bad_name(name: Any) -> str | None:
    """Why a metric name cannot be used, or None."""
    if not isinstance(name, str) or not name.strip():
        return "a metric name must be non-empty text"
    if name == "val_loss":
        return "'val_loss' is recorded by probe.val_loss(value); choose another name"
    if name in RESERVED or name.startswith(_OWN_PREFIXES):
        return f"{name!r} is a name optitui records itself; choose another"
    return None


def is_array(v: object) -> bool:
    """Whether ``v`` is a numpy array (told without importing numpy)."""
    return type(v).__module__ == "numpy" and hasattr(v, "dtype") and hasattr(v, "size")


def array_number(v: Any) -> float | None:
    """The one real number (bool as 0/1) a numpy array holds, or None."""
    if v.size != 1 or v.dtype.kind not in "biuf":
        return None
    return float(v.reshape(()))
