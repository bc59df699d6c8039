"""What a headless job prints while it trains, read from its run store on a thread.

Two forms. In a log (no terminal): a time-prefixed progress line every
``every`` seconds (step, epoch, smoothed loss, a new validation loss, each
group's lr, steps/s, ETA), and every command's outcome, warning, checkpoint
and failure as it is recorded. On a terminal: the same events as lines, under
one status line that rewrites itself. The training thread does nothing for
either: this thread reads what the job already records.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from optitui.console import fmt
from optitui.console.pace import ETA_WINDOW_S, Pace, eta
from optitui.console.style import Style, event_line, stamp, use_color
from optitui.console.summary import EMA_BETA, counts_epochs
from optitui.store.columns import MetricColumns
from optitui.store.layout import RunPaths
from optitui.store.reader import RunReader, Status
from optitui.store.supervise import Supervisor

#: events the last line of the run already says ("run finished: ...")
QUIET_KINDS = ("info",)
#: seconds between reads of the store (events show this fast)
POLL_S = 0.5
#: a terminal's status line is redrawn this often
LIVE_S = 1.0


class LiveLine:
    """One line at the bottom of a terminal, rewritten in place; anything printed
    goes above it (the line is cleared first and redrawn at the next tick)."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.lock = threading.Lock()
        self.shown = False
        self.partial = False  # the script wrote part of a line: do not draw over it

    def width(self) -> int:
        """The terminal's columns: $COLUMNS, else the size of the terminal written to."""
        try:
            columns = int(os.environ.get("COLUMNS", "0"))
        except ValueError:
            columns = 0
        if columns <= 0:
            try:
                columns = os.get_terminal_size(self.out.fileno()).columns
            except (AttributeError, OSError, ValueError):
                columns = 0
        return columns if columns > 0 else 100

    def draw(self, text: str) -> None:
        with self.lock:
            if self.partial:
                return
            self.out.write("\r\x1b[2K" + _clip(text, self.width() - 1))
            self.out.flush()
            self.shown = True

    def hide(self) -> None:
        with self.lock:
            if self.shown:
                self.out.write("\r\x1b[2K")
                self.out.flush()
                self.shown = False


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed or replaced streams
        return False


def _clip(text: str, width: int) -> str:
    """Cut to ``width`` visible characters (SGR codes do not count)."""
    out, seen, i = [], 0, 0
    while i < len(text) and seen < width:
        if text[i] == "\x1b":
            end = text.find("m", i)
            end = len(text) - 1 if end < 0 else end
            out.append(text[i : end + 1])
            i = end + 1
            continue
        out.append(text[i])
        seen += 1
        i += 1
    return "".join(out) + ("\x1b[0m" if "\x1b[" in text else "")


class AboveLiveLine:
    """A stream on the same terminal (the script's stdout and stderr) whose writes clear
    the live line first, so the script's prints do not land in the middle of it."""

    def __init__(self, stream: TextIO, live: LiveLine) -> None:
        self._stream = stream
        self._live = live

    def write(self, text: str) -> int:
        if self._live.shown:
            self._live.hide()
        if text:
            self._live.partial = not text.endswith("\n")
        return self._stream.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


class Reporter:
    """Reads one run's store every :data:`POLL_S` seconds and prints what is new.

    ``every``: seconds between progress lines (0: none; events are still
    printed). ``live``: a terminal's rewriting status line instead of progress
    lines. Start with :meth:`start`; :meth:`stop` prints what is left once the
    job has closed its store."""

    def __init__(
        self,
        run_dir: Path,
        out: TextIO,
        *,
        every: float,
        live: bool = False,
        color: bool = False,
        poll: float = POLL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.paths = RunPaths(run_dir)
        self.out = out
        self.every = every
        self.style = Style(color)
        self.poll = poll
        self.clock = clock
        self.live = LiveLine(out) if live else None
        self._reader: RunReader | None = None
        self._event_id = 0
        self._val_id = 0
        self._metrics = MetricColumns()
        self._ema = (0.0, 0.0)  # (sum, weight) of the bias-corrected EMA
        self._last: dict[str, float] = {}  # newest value of every metric column
        self._new_val: tuple[int, float | None] | None = None
        self._lines_at: float | None = None  # when the next progress line is due
        self._line_step = -1  # the step the last progress line showed
        self._pace = Pace()
        self._stop = threading.Event()
        # its own faults end it with a note (_give_up); the job trains on without the lines
        self._thread = Supervisor().thread("optitui-progress", self._run)
        self._saved: tuple[TextIO, TextIO] | None = None  # sys.stdout, sys.stderr
        self.failed: str | None = None

    # -- lifecycle -------------------------------------------------------------------
    def start(self) -> None:
        if self.live is not None:
            self._saved = (sys.stdout, sys.stderr)
            if _is_tty(sys.stdout):
                sys.stdout = AboveLiveLine(sys.stdout, self.live)  # type: ignore[assignment]
            if _is_tty(sys.stderr):
                sys.stderr = AboveLiveLine(sys.stderr, self.live)  # type: ignore[assignment]
        self._thread.start()

    def stop(self) -> None:
        """Print what the store holds beyond what was printed, then end the thread."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10)
        if self._saved is not None:
            sys.stdout, sys.stderr = self._saved
            self._saved = None
        try:
            if self.failed is None:
                self.poll_once(final=True)
        except Exception as exc:
            self._give_up(exc)
        finally:
            if self.live is not None:
                self._quietly(self.live.hide)
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.poll_once()
            except Exception as exc:  # the job trains on without its progress lines
                self._give_up(exc)
                return

    def _give_up(self, exc: Exception) -> None:
        self.failed = f"{type(exc).__name__}: {exc}"
        if not isinstance(exc, OSError):  # when the log itself is gone there is no one to tell
            self._quietly(lambda: self._print(f"optitui: progress lines stopped: {self.failed}"))

    def _quietly(self, fn: Callable[[], None]) -> None:
        with contextlib.suppress(OSError, ValueError):
            fn()

    # -- reading ---------------------------------------------------------------------
    def _open(self) -> RunReader | None:
        if self._reader is None and self.paths.db.is_file():
            reader = RunReader(self.paths.root)
            if "schema_version" in reader.meta(refresh=True):
                self._reader = reader
            else:  # created but not initialised yet
                reader.close()
        return self._reader

    def poll_once(self, final: bool = False) -> None:
        """Print what the store holds that is new; the thread calls this every ``poll`` s."""
        reader = self._open()
        if reader is None:
            return
        now = self.clock()
        for e in reader.events(self._event_id):
            self._event_id = e.id
            if e.kind not in QUIET_KINDS:
                self._print(event_line(e, self.style))
        self._read_metrics(reader)
        for val_id, step, _, loss in reader.val(self._val_id):
            self._val_id, self._new_val = val_id, (step, loss)
        st = reader.status()
        if self.every <= 0 or "step" not in self._last:
            return
        if self.live is not None:
            if not final:
                self.live.draw(self._describe(reader, st, live=True))
            return
        if self._lines_at is None:
            self._lines_at = now + self.every
        due = now >= self._lines_at or (final and int(self._last["step"]) != self._line_step)
        if due:
            self._print(
                f"{self.style(stamp(now), 'dim')} {'progress':<10} " + self._describe(reader, st)
            )
            self._line_step = int(self._last["step"])
            self._new_val = None
            while self._lines_at <= now:
                self._lines_at += self.every

    def _read_metrics(self, reader: RunReader) -> None:
        cols = reader.read_metrics(MetricColumns(last_id=self._metrics.last_id))
        self._metrics.last_id = cols.last_id
        if not cols.length:
            return
        m, w = self._ema
        for v in cols.columns.get("loss", ()):
            if math.isfinite(v):
                m = EMA_BETA * m + (1.0 - EMA_BETA) * v
                w = EMA_BETA * w + (1.0 - EMA_BETA)
        self._ema = (m, w)
        for name, col in cols.columns.items():
            if len(col) and math.isfinite(col[-1]):
                self._last[name] = col[-1]
        self._pace.add(cols.columns.get("time", ()))

    # -- writing ---------------------------------------------------------------------
    def _describe(self, reader: RunReader, st: Status, live: bool = False) -> str:
        s = self.style
        step = int(self._last["step"])
        meta = reader.meta(refresh=True)  # a probe adds to it after the store is made
        max_steps = meta.get("max_steps")
        total = max_steps if isinstance(max_steps, int) and max_steps > 0 else None
        parts = [
            f"step {step:,}" + (f"/{total:,} ({min(step, total) * 100 // total}%)" if total else "")
        ]
        if counts_epochs(meta):
            parts.append(f"epoch {int(self._last.get('epoch', st.epoch))}")
        m, w = self._ema
        parts.append(f"loss {fmt.loss(m / w if w > 0 else None)}" + ("" if live else " (smoothed)"))
        if self._new_val is not None:
            vstep, vloss = self._new_val
            parts.append(f"val {fmt.loss(vloss)} (step {vstep:,})")
        lrs = self._lrs(reader)
        if lrs:
            parts.append("lr " + " ".join(lrs))
        if st.state == "running":
            parts.append(f"{fmt.rate(self._pace.rate())} steps/s")
            left = eta(step, total, self._pace.rate(ETA_WINDOW_S))
            if left is not None:
                parts.append(f"ETA {fmt.duration(left)}")
        else:
            state = s(st.state, "lr-find-state" if st.state == "lr-find" else st.state)
            parts.append(state + (f" ({st.message})" if st.message else ""))
        return ("  ·  " if live else "  ").join(parts)

    def _lrs(self, reader: RunReader) -> list[str]:
        """Each group's lr now: the newest group snapshot when it is as new as the last
        recorded step (a command just changed it), else the lr that step used."""
        at, groups = reader.groups()
        names = [str(g.get("name", i)) for i, g in enumerate(groups)]
        if groups and at >= int(self._last["step"]):
            lrs = [(g.get("values") or {}).get("lr") for g in groups]
        else:
            lrs = []
            while f"lr/{len(lrs)}" in self._last:
                lrs.append(self._last[f"lr/{len(lrs)}"])
        return [
            f"{names[i] if i < len(names) else i}={fmt.value(lr) if isinstance(lr, float) else lr}"
            for i, lr in enumerate(lrs)
            if lr is not None
        ]

    def _print(self, line: str) -> None:
        if self.live is not None:
            self.live.hide()
        self.out.write(line + "\n")
        self.out.flush()


#: seconds between progress lines in a log, unless ``--log-every`` says otherwise
DEFAULT_EVERY = 30.0


def reporter_for(run_dir: Path, every: float | None, quiet: bool) -> Reporter | None:
    """The reporter a headless job runs on stderr: progress lines in a log, the live line
    on a terminal, nothing with ``quiet``. It is started; the caller stops it."""
    if quiet:
        return None
    out = sys.stderr
    reporter = Reporter(
        run_dir,
        out,
        every=DEFAULT_EVERY if every is None else every,
        live=_is_tty(out),
        color=use_color(out),
    )
    reporter.start()
    return reporter


def first_line(what: str, run_dir: Path, no_terminal: bool) -> str:
    """The line a headless job starts with: what runs where, and how to watch it."""
    if no_terminal:
        return f"optitui: no terminal: running headless: {what}; optitui attach {run_dir} to watch"
    return f"optitui: {what}; run directory {run_dir}"
