"""The dashboard app: one run, its job process (if any), and the quit question.

Thin on purpose: the screen does the viewing and steering
(:mod:`optitui.tui.screens.dashboard`); the app supervises what runs the
training (a child process, or a loop in a thread for ``--inline``) and asks
detach / stop / cancel on quit. The CLI, the tests and the benchmark all
build it with :func:`build_app`.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import IO, Any

from textual import events, on, work
from textual.app import App, SystemCommand
from textual.screen import Screen

from optitui.store.access import LocalRun, RunAccess
from optitui.store.layout import RunPaths
from optitui.tui.feed import Feed, StoreFeed
from optitui.tui.keys import KEYS, Key
from optitui.tui.messages import InlineJobEnded, JobExited, SwitchRun
from optitui.tui.overlay_feed import OverlayRun, other_version, overlay_run
from optitui.tui.screens.dashboard import COMPACT_BELOW, DashboardScreen
from optitui.tui.settings import ViewerSettings
from optitui.tui.widgets.event_log import EventLog

#: how long "stop training" waits for the job to answer before quitting anyway
STOP_WAIT_S = 20.0
#: threads for the dashboard's workers. Readers live as long as the dashboard (the
#: steered run's, one per overlay) and each command waits for its answer in one: asyncio's
#: default pool (the CPUs + 4, so 6 on two cores) would queue the later ones for good,
#: leaving overlays undrawn, answers unseen and the runs browser reading forever. Threads
#: start only when needed.
WORKER_THREADS = 64

JobRunner = Callable[[], str]
Stopper = Callable[[str], None]


class DashboardApp(App[int]):
    """Live dashboard of one run: a directory on this host, or ``run`` and ``feed`` for
    one read some other way (over ssh)."""

    TITLE = "optitui"
    #: below 100 columns the dashboard shows one plot at a time
    HORIZONTAL_BREAKPOINTS = [  # noqa: RUF012
        (0, "-compact"),
        (COMPACT_BELOW, "-narrow"),
        (120, "-wide"),
    ]
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012

    def __init__(
        self,
        run_dir: Path | None,
        *,
        settings: ViewerSettings | None = None,
        process: subprocess.Popen[bytes] | None = None,
        job_runner: JobRunner | None = None,
        stopper: Stopper | None = None,
        feed: Feed | None = None,
        run: RunAccess | None = None,
        note: str = "",
        overlays: Sequence[OverlayRun] = (),
    ) -> None:
        super().__init__()
        if (job_runner is None) != (stopper is None):
            raise ValueError("an inline job needs both job_runner and stopper")
        if run_dir is None and (run is None or feed is None or job_runner is not None):
            raise ValueError("a run without a directory here needs its own run and feed")
        #: the run directory on this host (None for a run read over ssh)
        self.paths = None if run_dir is None else RunPaths(Path(run_dir))
        self.settings = settings or ViewerSettings()
        if run is None:
            assert self.paths is not None
            run = LocalRun(self.paths)
        if feed is None:
            assert self.paths is not None
            s = self.settings
            feed = StoreFeed(self.paths.root, ema_beta=s.ema_beta, clock=s.clock)
        self.run_access = run
        self.process = process
        self.job_runner = job_runner
        self.stopper = stopper
        self.stop_event = threading.Event()
        if job_runner is not None:
            note = "inline"
        if process is not None:
            note = f"job pid {process.pid}"
        self.dashboard = DashboardScreen(
            run, feed, self.settings, threading.Event(), note, overlays
        )
        self.job_returncode: int | None = None
        self.inline_state: str | None = None  # set when the inline loop has returned
        self._inline_running = False
        self._stop_sent: str | None = None  # id of our stop command while quitting
        self._quitting = False
        self.exiting = False  # exit() was called: input is no longer handled
        self.quit_choice: str | None = None  # "detach" or "stop" once the user chose
        self._output: IO[str] | None = None

    @property
    def inline(self) -> bool:
        return self.job_runner is not None

    def on_mount(self) -> None:
        asyncio.get_running_loop().set_default_executor(
            ThreadPoolExecutor(WORKER_THREADS, thread_name_prefix="optitui-worker")
        )
        self.push_screen(self.dashboard)
        if self.process is not None:
            self._supervise()
        if self.inline:
            assert self.paths is not None
            self._output = open(self.paths.output, "a", encoding="utf-8")  # noqa: SIM115
            self.begin_capture_print(self)
            self._inline_running = True
            self._run_inline()

    def on_unmount(self) -> None:
        self.stop_event.set()
        self.dashboard.stop_event.set()
        self.dashboard.stop_overlays()
        if self.inline and self._inline_running and self.stopper is not None:
            self.stopper("the dashboard closed")  # training ends with the app
        if self._output is not None:
            self._output.close()
        self.run_access.close()

    # -- the job -----------------------------------------------------------------------
    @work(thread=True, group="supervisor", exit_on_error=False)
    def _supervise(self) -> None:
        proc = self.process
        assert proc is not None
        while not self.stop_event.is_set():
            try:
                code = proc.wait(timeout=0.2)
            except subprocess.TimeoutExpired:
                continue
            self.post_message(JobExited(code))
            return

    @work(thread=True, group="inline-job", exit_on_error=False)
    def _run_inline(self) -> None:
        assert self.job_runner is not None
        try:
            state = self.job_runner()
        except BaseException as exc:  # reported on screen; the store holds the traceback
            self.post_message(InlineJobEnded(None, f"{type(exc).__name__}: {exc}"))
        else:
            self.post_message(InlineJobEnded(state, None))

    @on(JobExited)
    def _job_exited(self, message: JobExited) -> None:
        self.job_returncode = message.returncode
        log = self.dashboard.query_one(EventLog)
        style = "magenta" if message.returncode == 0 else "bold red"
        log.note(f"job process exited with code {message.returncode}", style)
        if self._quitting:
            self.exit(0)

    @on(InlineJobEnded)
    def _inline_ended(self, message: InlineJobEnded) -> None:
        self._inline_running = False
        self.inline_state = message.state or "failed"
        log = self.dashboard.query_one(EventLog)
        if message.error:
            log.note(f"training failed: {message.error}", "bold red")
        else:
            log.note(f"training ended: {message.state}")
        if self._quitting:
            self.exit(0)

    def on_print(self, event: events.Print) -> None:
        """--inline: the script's prints go to output.log, where the log tail shows them."""
        if self._output is not None:
            self._output.write(event.text)
            self._output.flush()

    # -- steering another run ------------------------------------------------------------
    @on(SwitchRun)
    async def _switch_run(self, message: SwitchRun) -> None:
        problem = self.switch_problem(Path(message.run_dir))
        if problem is not None:
            self.notify(problem, severity="warning", timeout=6)
            return
        while self.screen is not self.dashboard and len(self.screen_stack) > 1:
            await self.pop_screen()  # the runs browser that asked
        await self.switch_to(Path(message.run_dir))

    def switch_problem(self, run_dir: Path) -> str | None:
        """Why the keys cannot steer the run in ``run_dir`` from this dashboard, or None."""
        if self.paths is None:
            return "this dashboard follows a run over ssh: attach to another run with optitui"
        if self.process is not None or self.inline:
            return (
                "this dashboard runs its own job: steer another run with "
                f"`optitui attach {run_dir.name}`"
            )
        from optitui.store.reader import open_reader

        try:
            with open_reader(run_dir) as reader:
                meta = reader.meta()
                problem = reader.schema_problem()
                status = reader.status(now=self.settings.clock())
        except Exception as exc:  # a damaged or vanished store: one refusal
            return f"{run_dir.name}: {exc}"
        version = other_version(meta)
        if problem is not None or version is not None:
            who = version or meta.get("optitui_version") or "another optitui"
            return f"{run_dir.name} was written by optitui {who}: shown read-only, not steered"
        if not status.alive:
            return f"{run_dir.name} is {status.state}: only a live run can be steered"
        return None

    async def switch_to(self, run_dir: Path) -> None:
        """Steer ``run_dir`` from now on; the run steered until now joins the overlays."""
        old = self.dashboard
        kept = [d for d in old.overlaid_dirs() if d.resolve() != run_dir.resolve()]
        if self.paths is not None:
            kept.append(self.paths.root)
        beta = self.settings.ema_beta
        overlays = [overlay_run(d, beta, prefetch=True) for d in kept]
        self.paths = RunPaths(run_dir)
        run = LocalRun(self.paths)
        feed = StoreFeed(run_dir, ema_beta=beta, clock=self.settings.clock)
        feed.prefetch()  # read while the switch is made: its first frame has the history
        new = DashboardScreen(run, feed, self.settings, threading.Event(), "", overlays)
        new.x_time = old.x_time
        old.stop_overlays()
        self.run_access.close()
        self.run_access = run
        self.dashboard = new
        await self.switch_screen(new)
        self.notify(f"the keys steer {run_dir.name}", timeout=4)

    def job_alive(self) -> bool:
        if self.inline:
            return self._inline_running
        if self.process is not None and self.job_returncode is not None:
            return False
        if self.process is None and self.dashboard.store_problem is not None:
            return False  # a store this viewer cannot read: nothing to detach from or stop
        status = self.dashboard.status
        return status is None or status.alive

    # -- quitting ----------------------------------------------------------------------
    def exit(self, result: int | None = None, return_code: int = 0, message: Any = None) -> None:
        self.exiting = True
        super().exit(result, return_code, message)

    async def on_event(self, event: events.Event) -> None:
        # keys typed behind the one that quit are still queued: a dialog they opened now
        # would mount into a closing app (whose widgets no longer compose) and crash it
        if self.exiting and isinstance(event, events.InputEvent):
            return
        await super().on_event(event)

    async def action_quit(self) -> None:
        """q, ctrl+q and the palette: ask detach / stop / cancel while the job runs."""
        if self._quitting:
            return
        if not self.job_alive():
            self.exit(0)
            return
        from optitui.tui.screens.quit import QuitScreen  # loaded when first needed

        self.push_screen(QuitScreen(inline=self.inline), self._quit_choice)

    def _quit_choice(self, choice: str | None) -> None:
        if choice in ("detach", "stop"):
            self.quit_choice = choice
        if choice == "detach":
            self.exit(0)
        elif choice == "stop":
            self.stop_job()

    def stop_job(self) -> None:
        """Stop training, then quit once the job has answered (or after STOP_WAIT_S)."""
        self._quitting = True
        self.notify("stopping training…", timeout=STOP_WAIT_S)
        if self.inline:
            assert self.stopper is not None
            self.stopper("stopped from the dashboard")
        else:
            self.dashboard.send("stop", {}, "stop", None)
            changes = self.dashboard.steering.recent(1)
            self._stop_sent = changes[0].id if changes else None
            self.set_interval(0.1, self._check_stopped)
        self.set_timer(STOP_WAIT_S, lambda: self.exit(0))

    def _check_stopped(self) -> None:
        change = self.dashboard.steering.changes.get(self._stop_sent or "")
        if change is None or change.state != "pending":
            self.exit(0)

    # -- screenshots ---------------------------------------------------------------------
    def deliver_screenshot(
        self,
        filename: str | None = None,
        path: str | None = None,
        time_format: str | None = None,
    ) -> str | None:
        """The palette's *Screenshot*: an SVG in the run directory (else the current one),
        and a note saying where. Servers often have no ~/Downloads, Textual's default."""
        from textual._files import generate_datetime_filename

        name = filename or generate_datetime_filename("optitui", ".svg", time_format)
        svg = self.export_screenshot()
        here = [self.paths.root] if self.paths is not None else []  # none for a remote run
        folders = [Path(path)] if path else [*here, Path.cwd()]
        problem = ""
        for folder in folders:
            target = folder / name
            try:
                with open(target, "x", encoding="utf-8") as f:  # never over another file
                    f.write(svg)
            except OSError as exc:
                problem = f"{target}: {exc.strerror or exc}"
                continue
            self.notify(f"screenshot saved: {target}", title="Screenshot", timeout=8)
            return str(target)
        self.notify(f"screenshot not saved: {problem}", severity="error", timeout=8)
        return None

    # -- command palette -----------------------------------------------------------------
    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        if isinstance(screen, DashboardScreen):
            for key in KEYS:
                if key.listed:
                    title = key.long[0].upper() + key.long[1:]
                    help_text = f"key: {key.shown_as}"
                    yield SystemCommand(title, help_text, partial(self._run_key, key, screen))

    async def _run_key(self, key: Key, screen: Screen[Any]) -> None:
        """What pressing ``key`` does on ``screen`` now: its action, or, while the screen
        has that one off, the other binding of the same key that is on (space's
        "resume" while paused, n's word on a running job)."""
        for k in (key, *(k for k in KEYS if k.keys == key.keys and k is not key)):
            if screen.check_action(k.action, ()):
                await self.run_action(k.action, screen)
                return


def build_app(
    run_dir: Path | str | None,
    *,
    settings: ViewerSettings | None = None,
    process: subprocess.Popen[bytes] | None = None,
    job_runner: JobRunner | None = None,
    stopper: Stopper | None = None,
    feed: Feed | None = None,
    run: RunAccess | None = None,
    note: str = "",
    overlays: Sequence[OverlayRun] = (),
) -> DashboardApp:
    """The dashboard on ``run_dir``: attached (no process), supervising one, or inline.

    ``feed`` may be one whose first read was started early. A run read over ssh has no
    directory here: it comes with its own ``run`` (commands, answers) and ``feed``.
    ``overlays`` are other runs drawn over its plots (their reads may have started).
    """
    return DashboardApp(
        None if run_dir is None else Path(run_dir),
        settings=settings,
        process=process,
        job_runner=job_runner,
        stopper=stopper,
        feed=feed,
        run=run,
        note=note,
        overlays=overlays,
    )
