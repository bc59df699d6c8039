"""The dashboard's feed for a run on another host: the same updates as
:class:`~optitui.tui.feed.StoreFeed`, read from a :class:`RemoteRun`'s mirror.

Textual-free, like the store feed. Rows arrive on the connection's own thread;
each poll takes what came since the last one. The first update waits until the
server has sent the whole history once, so the first frame shows all of it.
"""

from __future__ import annotations

import threading

from optitui.remote.client import RemoteRun
from optitui.tui.feed import FeedUpdate, Handed, StoreMismatch
from optitui.tui.history import History


class RemoteFeed:
    """Updates of one remote run. Owned by one thread at a time (after :meth:`prefetch`)."""

    def __init__(
        self, run: RemoteRun, *, ema_beta: float = 0.98, events_per_poll: int = 2000
    ) -> None:
        self.run = run  # its status comes judged by the server, on its host's clock
        self.history = History(ema_beta=ema_beta)
        self.events_per_poll = events_per_poll
        self.handed = Handed()
        self._prefetch: threading.Thread | None = None

    def prefetch(self) -> None:
        """Take rows as they arrive, in a background thread, until the history is complete
        (decoding overlaps the transfer and whatever the caller does meanwhile)."""

        def run() -> None:
            mirror = self.run.mirror
            while self.run.fatal is None:
                mirror.changed.clear()
                self.history.read(self.run, quick=True)  # smoothed after the first frame
                if mirror.synced.is_set():
                    self.history.read(self.run, quick=True)
                    return
                mirror.changed.wait(0.5)

        self._prefetch = threading.Thread(target=run, name="optitui-prefetch", daemon=True)
        self._prefetch.start()

    def next(self) -> FeedUpdate:
        if self._prefetch is not None:
            self._prefetch.join()
            self._prefetch = None
        elif self.handed.polls == 0:  # the first update is the whole history
            while not self.run.mirror.synced.wait(0.5) and self.run.fatal is None:
                pass
        return self.poll()

    def ready(self, wait: float = 0.0) -> FeedUpdate | None:
        """None: a remote run's first update is made by :meth:`next`, in the thread that
        follows it (its read can take long, and the mirror keeps growing)."""
        return None

    def poll(self) -> FeedUpdate:
        if self.run.fatal_code == "schema":
            raise StoreMismatch(self.run.fatal or "a run store of another version")
        run, mirror = self.run, self.run.mirror
        # as a run store's feed: the whole history on screen first, smoothed by the next poll
        first = self.handed.polls == 0
        grew = self.history.read(run, quick=first)
        if not first:
            grew = self.history.refine() or grew
        step, groups = mirror.groups()
        events = run.events(self.handed.last_event, limit=self.events_per_poll)
        return self.handed.update(
            self.history,
            grew,
            run.status(),
            mirror.meta(),
            step,
            groups,
            events,
            mirror.take_output(),
            run.link_problem(),
        )

    def close(self) -> None:
        """Nothing to let go: the connection belongs to the app's run (closed with it)."""
