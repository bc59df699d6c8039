"""The user's own metrics: scalars recorded with each step, and values logged at other times.

Tensors stay on the device: a step's values wait in a buffer beside its loss and are
read in the flush's one batched read, together with the losses (on the CPU, with no
device to wait for, the flush reads them one by one instead). Values logged between
steps (an evaluation at the end of an epoch) are kept with the step they were logged
at and written, columnar too, at the same flush. A value that is not one number is
skipped with one warning naming the metric (once per name); NaN is recorded as NaN.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from itertools import chain, repeat
from operator import attrgetter, itemgetter
from typing import Any, cast

import torch

from optitui.store.metrics import USER_PREFIX
from optitui.store.records import LoggedBatch
from optitui.trainer.loop.metric_checks import array_number, bad_name, is_array, is_decimal, kind_of

Value = torch.Tensor | float
#: the keys of the warnings about a step's metrics as a whole (no metric's name)
_NOT_MAPPING, _UNREADABLE = "\0not a mapping", "\0unreadable"

_DTYPE = attrgetter("dtype")
#: a 0-d tensor's value (``item()`` would also let go of the GIL for each, and every
#: thread waiting for it would get it in turn)
_READ: Callable[[Any], Any] = torch.Tensor.tolist
_IS_CPU = attrgetter("is_cpu")
_NUMBERS = frozenset({float, int, bool})
#: devices whose tensors a flush reads one by one: no sync to save on the CPU, and a
#: read costs about half of what stacking a 0-d tensor does (torch makes a view of each);
#: elsewhere a flush's values are stacked and read at once
READ_ONE_BY_ONE = frozenset({"cpu"})
#: (a module global: ``torch.Tensor`` looked up per value is a sixth of a step's check)
_TENSOR = torch.Tensor


class UserMetrics:
    """Buffers of one run's user metrics between flushes. ``warn(message, step)`` reports
    bad values; ``now()`` is the step recorded last (values logged now are logged at it,
    a step's own values belong to the step after it)."""

    def __init__(self, warn: Callable[[str, int], None], now: Callable[[], int]) -> None:
        self._warn = warn
        self._now = now
        self._good: set[str] = set()  # names checked once, then a set lookup per value
        self._warned: set[str] = set()
        #: one entry per buffered step, aligned with the loss buffer (None: no metrics)
        self.steps: list[dict[str, Value] | None] = []
        #: (step, epoch, time, values) of values logged at other times
        self.logged: list[tuple[int, int, float, dict[str, Value]]] = []
        #: the step of ``steps[0]`` once handed over to a flush (None: not yet known)
        self.first: int | None = None
        #: where each tensor's value is in what :meth:`stacked` gave (None: in order)
        self._order: list[int] | None = None
        #: the names, when :meth:`stacked` gave the steps' values name by name
        self._by_name: tuple[str, ...] | None = None
        #: the values :meth:`stacked` read itself (one by one, on the CPU), for :meth:`take`
        self._read: list[float] | None = None

    def split(self, first: int) -> UserMetrics:
        """The buffered values, handed over to a new holder (with the same names checked and
        warned about) whose steps begin at step ``first``; this one starts afresh."""
        out = UserMetrics(self._warn, self._now)
        out.first = first
        out._good, out._warned = self._good, self._warned
        out.steps, out.logged = self.steps, self.logged
        self.steps, self.logged = [], []
        return out

    def warn_once(self, name: str, why: str, step: int, what: str = "skipped") -> None:
        """One warning per metric name: ``metric 'name' <what>: <why>``."""
        if name not in self._warned:
            self._warned.add(name)
            self._warn(f"metric {name!r} {what}: {why} (warned once)", step)

    def check(
        self, values: Mapping[Any, Any], skip: str | None = None, step: int | None = None
    ) -> dict[str, Value]:
        """The values that can be recorded: 0-d detached tensors and floats; the others
        are skipped with a warning naming ``step`` (default: the step recorded last, where
        logged values go). Reads nothing from the device. ``skip``: a key that is not a
        metric (step_fn's ``"loss"``)."""
        at = self._now() if step is None else step
        out: dict[str, Value] = {}
        for name, v in values.items():
            if name == skip and skip is not None:  # (None is a name to warn about)
                continue
            if name not in self._good:
                why = bad_name(name)
                if why is not None:
                    self.warn_once(str(name), why, at)
                    continue
                self._good.add(name)
            if isinstance(v, torch.Tensor):
                one = self.one_number(name, v, at)
                if one is not None:
                    out[name] = one
            elif isinstance(v, numbers.Real) or is_decimal(v):
                try:
                    out[name] = float(v)
                except OverflowError:  # an int or a Fraction past a float's range
                    self.warn_once(name, "too large for a float", at)
            elif is_array(v):  # numpy's (`acc.cpu().numpy()` is a 0-d one)
                one_value = array_number(v)
                if one_value is None:
                    what = f"of shape {tuple(v.shape)}" if v.size != 1 else str(v.dtype)
                    self.warn_once(name, f"an array {what} is not one number", at)
                else:
                    out[name] = one_value
            else:
                self.warn_once(name, f"{kind_of(v)} is not one real number", at)
        return out

    def check_step(self, values: Mapping[Any, Any], skip: str | None = None) -> dict[str, Value]:
        """:meth:`check` for a step's values, which runs every step: a tensor is only
        detached here (never keep the step's graph alive until the flush); its shape and
        dtype are checked at the flush, for all of a flush's tensors at once. The values
        belong to the step being taken: a warning names the step after the last recorded."""
        good = self._good
        out: dict[str, Value] = dict(values)  # a copy: the loop may reuse its dict
        if skip is not None:
            out.pop(skip, None)
        if good.issuperset(out):  # the common case: names known, checked in C
            for v in out.values():
                if type(v) is not _TENSOR or v.requires_grad:
                    break  # a number, a subclass, or a graph to let go of: the loop below
            else:
                return out
        out = {}
        for name, v in values.items():
            if name == skip and skip is not None:  # (None is a name to warn about)
                continue
            if name in good and isinstance(v, torch.Tensor):
                out[name] = v.detach() if v.requires_grad else v
                continue
            out.update(self.check({name: v}, step=self._now() + 1))
        return out

    def _first_step(self) -> int:
        """The step of the first buffered step's values."""
        return self._now() - len(self.steps) + 1 if self.first is None else self.first

    def warn_run_once(self, key: str, why: str, step: int) -> None:
        """One warning per run about a step's metrics as a whole (``key``: no metric's)."""
        if key not in self._warned:
            self._warned.add(key)
            self._warn(f"{why}: skipped (warned once)", step)

    def one_number(self, name: str, v: torch.Tensor, step: int) -> torch.Tensor | None:
        """``v`` as a 0-d tensor that sums (bool as float), or None (warned once)."""
        # host-side checks only, each op skipped when it is not needed
        if v.is_meta:
            self.warn_once(name, "a tensor on the meta device has no value", step)
            return None
        if v.numel() != 1 or v.dtype.is_complex:
            what = (
                "a complex tensor" if v.dtype.is_complex else f"a tensor of shape {tuple(v.shape)}"
            )
            self.warn_once(name, f"{what} is not one number", step)
            return None
        if v.requires_grad:  # never keep the step's graph alive until the flush
            v = v.detach()
        if v.dim():
            v = v.reshape(())
        return v.float() if v.dtype == torch.bool else v  # summed, never or-ed

    def add_step(self, values: dict[str, Value] | None) -> None:
        self.steps.append(values or None)

    def add_given(self, values: Any) -> None:
        """A step's values as the loop gave them (``probe.step(metrics=)``): checked, then
        buffered; the step has its entry whatever they are (its loss is recorded)."""
        got = None
        try:
            if type(values) is dict or isinstance(values, Mapping):
                got = self.check_step(values)
            elif values is not None:  # one warning per kind: a list, a str, ...
                why = f"metrics must be a mapping of names to values, got a {type(values).__name__}"
                self.warn_run_once(_NOT_MAPPING + type(values).__name__, why, self._now() + 1)
        except Exception as e:  # a mapping whose items() raises, ...
            self.warn_run_once(_UNREADABLE, f"metrics could not be read ({e!r})", self._now() + 1)
        self.steps.append(got or None)

    def log(self, step: int, epoch: int, when: float, values: Mapping[Any, Any]) -> None:
        got = self.check(values)
        if got:
            self.logged.append((step, epoch, when, got))

    def tensors(self) -> list[torch.Tensor]:
        """Every buffered tensor value, in the order :meth:`take` expects them read."""
        # the steps' values all at once (they are tensors but for a number now and then)
        values: list[Any] = list(chain.from_iterable(map(dict.values, filter(None, self.steps))))
        out: list[torch.Tensor] = (
            values
            if all(map(isinstance, values, repeat(torch.Tensor)))
            else [v for v in values if isinstance(v, torch.Tensor)]
        )
        for *_, row in self.logged:
            out += [v for v in row.values() if isinstance(v, torch.Tensor)]
        return out

    def stacked(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """:meth:`tensors` as one 1-D tensor on ``device``; None when there are none, or
        when they were read here already (on the CPU, see :data:`READ_ONE_BY_ONE`:
        :meth:`take` then ignores what it is given).

        The steps' tensors were only detached when they came: here a flush's tensors are
        checked at once (stacked, they make one value each when each is one real number);
        when they do not, every value is checked and the bad ones skipped (warned once)."""
        if device.type in READ_ONE_BY_ONE and self._read_one_by_one():
            return None
        by_name = self._stacked_by_name(device, dtype)
        if by_name is not None:
            return by_name
        ts = self.tensors()
        if not ts:
            return None
        try:
            st, self._order = _stack(ts, device, dtype)
            if st.numel() == len(ts) and not st.dtype.is_complex:
                return st.reshape(-1).to(dtype)
        except RuntimeError:  # shapes that do not stack
            pass
        first = self._first_step()
        for i, row in enumerate(self.steps):
            if row is None:
                continue
            for name, v in list(row.items()):
                if isinstance(v, torch.Tensor):
                    one = self.one_number(name, v, first + i)
                    if one is None:
                        del row[name]
                    else:
                        row[name] = one
        ts = self.tensors()
        if not ts:
            self._order = None
            return None
        st, self._order = _stack(ts, device, dtype)
        return st.reshape(-1).to(dtype)

    def stacked_or_dropped(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """:meth:`stacked`, or None with every buffered value dropped (and one warning)
        when they cannot be read: a flush's losses never go with them."""
        try:
            return self.stacked(device, dtype)
        except Exception as e:  # a value no check foresaw: the metrics, never the losses
            first, n = self._first_step(), len(self.steps)
            self.steps, self.logged = [None] * n, []
            self._order = self._by_name = self._read = None
            why = f"metrics of steps {first}..{first + n - 1} could not be read ({e!r})"
            self._warn(f"{why}: skipped", first)
            return None

    def _by_name_columns(self) -> tuple[tuple[str, ...], list[tuple[Any, ...]]] | None:
        """The names and each name's values, when every step gave values under the same
        names (the common case); None when the steps differ."""
        if not self.steps or None in self.steps:
            return None
        rows = cast(list[dict[str, Value]], self.steps)
        keys = rows[0].keys()
        if not all(map(keys.__eq__, map(dict.keys, rows))):  # (in C: this runs every flush)
            return None
        names = tuple(keys)
        # the values name by name: each step's values picked in C, then transposed
        cols = (
            list(zip(*map(itemgetter(*names), rows), strict=True))
            if len(names) > 1
            else [tuple(map(itemgetter(names[0]), rows))]
        )
        return names, cols

    def _read_one_by_one(self) -> bool:
        """The common case of :meth:`stacked` on the CPU: every step gave CPU tensors under
        the same names in the same order, each one number (and every logged tensor is one
        on the CPU). Their values are read here, step by step, as Python floats, ints and
        bools (the store writes each as the float64 a stack would make of it), and kept
        name by name for :meth:`take`. False (nothing read) otherwise: the values are then
        stacked."""
        if not self.steps or None in self.steps:
            return False
        rows = cast(list[dict[str, Value]], self.steps)
        names = tuple(rows[0])
        n, k = len(rows), len(names)
        if [*map(tuple, rows)].count(names) != n:  # (in C: this runs every flush)
            return False
        logged = [v for *_, row in self.logged for v in row.values() if isinstance(v, torch.Tensor)]
        try:  # a name's tensors stay where its first one is: one elsewhere is not read here
            if not all(map(_IS_CPU, chain(rows[0].values(), logged))):
                return False
            # a number (no is_cpu: AttributeError; not a tensor: TypeError)
            read: list[Any] = [
                *map(_READ, chain(chain.from_iterable(map(dict.values, rows)), logged))
            ]
        except (AttributeError, TypeError, RuntimeError):  # RuntimeError: one without a value
            return False
        # floats, ints and bools, each stored as the float64 a stack would make of it;
        # never a list (not one number) nor a complex
        if not _NUMBERS.issuperset(map(type, read)):
            return False
        self._read = [*chain.from_iterable(read[j : n * k : k] for j in range(k)), *read[n * k :]]
        self._by_name = names
        return True

    def _stacked_by_name(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
        """The common case of :meth:`stacked`: every step gave tensors under the same names.

        One stack per name (a name's values share a dtype, so none promotes), written
        into one ``dtype`` tensor: each converted exactly (counts too), with no dtype
        read per value, and every name's values side by side for :meth:`take`. (A name
        whose dtype changes within a flush is promoted by its stack as torch promotes:
        an int64 above 2**24 stacked with float32 values rounds.) None when the steps
        differ: the general path then checks every value."""
        got = self._by_name_columns()
        if got is None:
            return None
        names, cols = got
        n = len(self.steps)
        try:  # a number among them, or shapes that differ: TypeError, RuntimeError
            parts = [torch.stack(c) for c in cols]
        except (TypeError, RuntimeError):
            return None
        if any(p.numel() != n or p.dtype.is_complex or p.device != device for p in parts):
            return None  # not one number each (or not where the losses are): checked one by one
        logged = [v for *_, row in self.logged for v in row.values() if isinstance(v, torch.Tensor)]
        if logged:
            st, self._order = _stack(logged, device, dtype)
            parts.append(st)
        out = torch.empty(n * len(names) + len(logged), device=device, dtype=dtype)
        torch.cat([p.reshape(-1) for p in parts], out=out)  # each converted exactly
        self._by_name = names
        return out

    def take(self, read: list[float], n: int) -> tuple[dict[str, list[float]], LoggedBatch | None]:
        """The columns (store names) of the last ``n`` buffered steps and the logged batch,
        from the values of :meth:`tensors` as read (as :meth:`stacked` gave them, or as it
        read them itself); empties the buffers."""
        if self._read is not None:
            read, self._read = self._read, None
        names, self._by_name = self._by_name, None
        rows = len(self.steps)
        rest = read if names is None else read[len(names) * rows :]  # the logged values
        if self._order is not None:
            rest, self._order = in_order(rest, self._order), None
        it = iter(rest)
        cols = (
            self._columns(it, n)  # each step's tensors in turn, then the logged ones
            if names is None
            else {  # name by name
                USER_PREFIX + name: _padded(read[j * rows : (j + 1) * rows], n)
                for j, name in enumerate(names)
            }
        )
        self._drop_repeats(cols, n)
        logged = None
        if self.logged:
            m = len(self.logged)
            lcols: dict[str, list[float]] = {"step": [], "epoch": [], "time": []}
            for j, (step, epoch, when, row) in enumerate(self.logged):
                lcols["step"].append(step)
                lcols["epoch"].append(epoch)
                lcols["time"].append(when)
                for name, v in row.items():
                    col = lcols.get(USER_PREFIX + name)
                    if col is None:
                        col = lcols[USER_PREFIX + name] = [math.nan] * m
                    col[j] = next(it) if isinstance(v, torch.Tensor) else v
            logged = LoggedBatch(lcols)
        self.steps, self.logged = [], []
        return cols, logged

    def _drop_repeats(self, cols: dict[str, list[float]], n: int) -> None:
        """NaN in ``cols`` where a step's tensor was given again at a later step of the
        flush: read at the flush, it holds that later step's value, or a newer one (a
        running total the loop updates in place). Only its last step keeps the value,
        which is still its own, and the metric is warned about once."""
        # the last step's tensors against the first's and the three before it: a running
        # total, and buffers taken in turn, show there (an id per value would cost 150 ns
        # per value each flush); only then is every value looked at
        steps = self.steps
        last = steps[-1] if len(steps) > 1 else None
        if not last:
            return
        # (the rows hold tensors and floats, and a float is its own value even when shared)
        tensors = {id(v) for v in last.values() if type(v) is not float}
        before = chain.from_iterable(map(dict.values, filter(None, (steps[0], *steps[-4:-1]))))
        if tensors.isdisjoint(map(id, before)):  # (in C: this runs every flush)
            return
        rows = len(steps)
        at_last = {id(v): i for i, row in enumerate(steps) for v in (row or {}).values()}
        first = self._first_step()
        for i, row in enumerate(steps):
            for name, v in (row or {}).items():
                if not isinstance(v, torch.Tensor) or at_last[id(v)] == i:
                    continue  # (a number is its own value, even one Python shares)
                col, at = cols.get(USER_PREFIX + name), i + n - rows
                if col is not None and 0 <= at < len(col):
                    col[at] = math.nan
                why = (
                    "the same tensor was given at several steps (updated in place?): a "
                    "value is read at the flush, so only the last of those steps is "
                    "recorded; give each step its own tensor (e.g. .clone())"
                )
                self.warn_once(name, why, first + i, "recorded at some steps only")

    def _columns(self, it: Iterator[float], n: int) -> dict[str, list[float]]:
        """The columns of the last ``n`` buffered steps, taking each step's tensors in turn."""
        rows = len(self.steps)
        cols: dict[str, list[float]] = {}
        for i, row in enumerate(self.steps):
            for name, v in (row or {}).items():
                col = cols.get(USER_PREFIX + name)
                if col is None:
                    col = cols[USER_PREFIX + name] = [math.nan] * max(rows, n)
                col[i + max(n - rows, 0)] = next(it) if isinstance(v, torch.Tensor) else v
        return {k: c[-n:] if n else [] for k, c in cols.items()}


def _padded(col: list[float], n: int) -> list[float]:
    """The last ``n`` values of ``col``, NaN before the first when it has fewer."""
    return col[len(col) - n :] if len(col) >= n else [math.nan] * (n - len(col)) + col


def accumulate(total: dict[str, Value] | None, got: dict[str, Value]) -> dict[str, Value]:
    """Sums per name (micro-batches, validation batches), still on the device."""
    if total is None:
        return dict(got)
    for name, v in got.items():
        before = total.get(name)
        total[name] = v if before is None else before + v
    return total


def scaled(values: dict[str, Value], by: int) -> dict[str, Value]:
    return {k: v / by for k, v in values.items()}


def _stack(
    ts: list[torch.Tensor], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, list[int] | None]:
    """``ts`` stacked on ``device``, and where each one's row is (None: in the order given).

    Tensors of mixed dtypes (an accuracy and a count) are stacked one dtype at a time,
    each converted to ``dtype``, their rows grouped by dtype: torch's stack that promotes
    costs about four times as much per tensor, and a flush stacks hundreds."""
    dtypes = list(map(_DTYPE, ts))
    kinds = set(dtypes)
    if len(kinds) > 1 and not any(d.is_complex for d in kinds):  # complex: one stack's checks
        groups = [[i for i, d in enumerate(dtypes) if d == k] for k in kinds]
        parts = [_stack_one([ts[i] for i in at], device, dtype).to(dtype) for at in groups]
        return torch.cat(parts), [i for at in groups for i in at]
    return _stack_one(ts, device, dtype), None


def _stack_one(ts: list[torch.Tensor], device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    try:  # one stack of them all (mixed dtypes promote)
        return torch.stack(ts).to(device)
    except RuntimeError:
        if len({t.device for t in ts}) == 1:
            raise  # not a matter of devices
    return torch.stack([t.to(device, dtype) for t in ts])  # other devices than the loss's


def in_order(values: list[float], order: list[int]) -> list[float]:
    """``values`` read from rows grouped as :func:`_stack` grouped them, back in the order
    the tensors were given (``order[j]``: the tensor whose value is ``values[j]``)."""
    out = [0.0] * len(order)
    for j, i in enumerate(order):
        out[i] = values[j]
    return out


def read_with(
    first: torch.Tensor, extra: list[torch.Tensor] | UserMetrics
) -> tuple[list[float], list[float]]:
    """``first`` (the losses) and the user's tensors in one read (one host-device sync),
    on ``first``'s device."""
    device = first.device
    wide = torch.float32 if device.type == "mps" else torch.float64
    order = None
    if isinstance(extra, UserMetrics):
        user = extra.stacked_or_dropped(device, wide)  # its take() puts the values back in order
    elif extra:
        st, order = _stack(extra, device, wide)
        user = st.reshape(-1).to(wide)
    else:
        user = None
    if user is None:  # nothing of the user's: no read at all for an empty ``first``
        return (first.float().tolist() if first.numel() else []), []
    n = first.numel()
    values = torch.cat([first.to(wide), user]).tolist()
    rest = values[n:]
    return values[:n], rest if order is None else in_order(rest, order)
