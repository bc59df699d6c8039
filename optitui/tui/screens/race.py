"""The optimizer race, live: the candidates' curves as they run, then the ranked table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual import on
from textual.binding import Binding, BindingType
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from optitui.store.access import RunAccess
from optitui.store.race_results import ended_word
from optitui.store.reader import LIVE_STATES, Race
from optitui.tui import fmt
from optitui.tui.screens.following import Following
from optitui.tui.widgets.race_plot import RacePlot, color


@dataclass(frozen=True)
class RaceChoice:
    """What the user decided: apply candidate N, or cancel the race (candidate None)."""

    candidate: int | None
    text: str = ""


def eta(race: Race) -> float | None:
    """Seconds left, from the pace so far (as of the race's last record)."""
    started = race.data.get("started")
    losses = race.data.get("losses") or []
    done = sum(len(c) for c in losses)
    total = len(losses) * int(race.config.get("steps") or 0)
    if not isinstance(started, int | float) or not started or done == 0:
        return None
    # a diverged candidate's steps are not run: count them done
    for c, state in zip(losses, race.data.get("states") or [], strict=False):
        if state in ("diverged", "cancelled"):
            done += int(race.config.get("steps") or 0) - len(c)
    pace = (race.time - started) / done
    return max(0.0, (total - done) * pace)


#: the widest candidate name the table shows in full
NAME_WIDTH = 24


def _name(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def table_head(width: int) -> Text:
    """The table's first line (the keys 1-9 are the ranks in its first column)."""
    return Text(
        f"{'key':<4}{'#':<3} {'candidate':<{width}} {'final loss':<10} {'vs current':<18} val loss",
        "bold",
        no_wrap=True,
        overflow="ellipsis",
    )


def row_text(row: dict[str, Any], width: int) -> Text:
    """One line of the table: rank (its key), the candidate in its curve's colour, final
    smoothed loss, change against current (~ inside the noise band), and the val loss."""
    t = Text(no_wrap=True, overflow="ellipsis")
    ranked = row["final"] is not None
    t.append(f"{row['rank'] if ranked else '-'} ", "bold")
    t.append("■ ", color(int(row["candidate"])))
    t.append(f"{row['candidate']:<3} {_name(str(row['text']), width):<{width}} ")
    if not ranked:
        t.append(ended_word(row["state"]), "bold red" if row["state"] == "diverged" else "dim")
        return t
    t.append(f"{row['final']:<10.4g} ")
    if row["candidate"] == 0 or row["change"] is None:
        t.append(f"{'(reference)' if row['candidate'] == 0 else '-':<18}", "dim")
    else:
        pct = row["change_pct"]
        change = f"{row['change']:+.3g}" + ("" if pct is None else f" ({pct:+.1f}%)")
        t.append(change, "green" if row["change"] < 0 else "red")
        t.append(f"{'~' if row['within_noise'] else '':<{max(1, 18 - len(change))}}", "yellow")
    if row["val"] is not None:
        t.append(f" {row['val']:.4g}")
    return t


class RaceScreen(Following[Race, RaceChoice | None]):
    """Dismisses with a :class:`RaceChoice`, or None when closed without one."""

    DEFAULT_CSS = """
    RaceScreen OptionList {
        max-height: 14;
    }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("1", "apply(0)", "apply by rank", key_display="1-9"),
        *(Binding(str(n), f"apply({n - 1})", f"rank {n}", show=False) for n in range(2, 10)),
        Binding("escape", "leave", "cancel race / close"),
        Binding("q", "back", "back"),
    ]

    def __init__(self, run: RunAccess, race_id: str) -> None:
        super().__init__(run, race_id)
        self.race_id = race_id

    @property
    def race(self) -> Race | None:
        return self.found

    def read(self, found_id: str) -> Race | None:
        return self.run.race(found_id)

    def plot(self) -> RacePlot:
        return RacePlot(id="curves")

    def show(self) -> None:
        race = self.race
        head = Text(no_wrap=False)
        head.append("Optimizer race ", "bold")
        head.append(fmt.short_id(self.race_id), "dim")
        head.append(" ")
        if race is None:
            head.append("  waiting for the job to start it…")
        else:
            head.append(f"  {race.status}", "bold magenta" if race.status == "running" else "bold")
            head.append(f"  at step {race.step:,}")
            states = list(race.data.get("states") or [])
            steps = race.config.get("steps")
            if race.status == "running" and "running" in states:
                i = states.index("running")
                n = len((race.data.get("losses") or [[]])[i])
                head.append(f"  candidate {i}/{len(states) - 1} ({race.config['candidates'][i]})")
                head.append(f"  step {n}/{steps}")
                left = eta(race)
                if left is not None:
                    head.append(f"  ETA {fmt.duration(left)}")
            else:
                head.append(f"  {len(states)} candidates x {steps} steps")
        if race is not None:
            for i, text in enumerate(race.config.get("candidates") or []):
                head.append("\n" if i == 0 else "  ")
                head.append("■ ", color(i))
                head.append(f"{i} {text}")
        self.query_one("#head", Static).update(head)
        self.query_one(RacePlot).show(race)
        self._show_table(race)
        self.query_one("#message", Static).update(self._message())

    def _show_table(self, race: Race | None) -> None:
        options = self.query_one(OptionList)
        rows = race.results if race is not None else []
        options.display = bool(rows)
        if options.option_count == len(rows) + bool(rows):
            return  # the table is written once, when the race ends
        options.clear_options()
        width = max(9, min(NAME_WIDTH, max((len(str(r["text"])) for r in rows), default=9)))
        if rows:
            options.add_option(Option(table_head(width), disabled=True))
        for r in rows:
            options.add_option(Option(row_text(r, width), disabled=r["final"] is None))
        if rows:
            options.highlighted = 1
            options.focus()

    def _message(self) -> Text:
        if self.outcome is not None and not self.outcome.applied:
            return Text(f"the job refused the race: {self.outcome.reason}", "bold red")
        race = self.race
        if race is not None and race.status != "running":
            t = Text()
            if race.message:
                t.append(
                    f"{race.status}: {race.message}\n",
                    "bold red" if race.status == "failed" else "",
                )
            rows = race.results
            band = rows[0]["noise"] if rows else None
            if band is not None:
                t.append(f"noise band ±{band:.3g}: ~ marks a change inside it. ", "dim")
            secs = race.data.get("seconds") or {}
            t.append(
                f"cost: {sum(secs.get('candidates') or []):.1f} s racing, snapshot "
                f"{secs.get('snapshot', 0.0):.3f} s, restores {secs.get('restore', 0.0):.3f} s\n",
                "dim",
            )
            if any(r["final"] is not None for r in rows):
                t.append("1-9 (or ↑↓ Enter) applies the candidate of that rank; ")
                t.append("Esc closes without a change", "dim")
            return t
        if self.run_state not in LIVE_STATES:
            return Text(f"the run is {self.run_state}", "bold red")
        return Text(
            "Esc cancels the race; the run goes back to exactly where it was. "
            "q: the dashboard while it runs on (R opens it again)",
            "dim",
        )

    # -- choices ------------------------------------------------------------------------
    def action_apply(self, index: int) -> None:
        race = self.race
        if race is None or race.status == "running" or not race.results:
            self.notify("the table comes when the race is over; Esc cancels it", timeout=3)
            return
        if not 0 <= index < len(race.results):
            return
        row = race.results[index]
        if row["final"] is None:
            self.notify(f"{row['text']} did not finish ({ended_word(row['state'])})", timeout=4)
            return
        self.dismiss(RaceChoice(int(row["candidate"]), str(row["text"])))

    @on(OptionList.OptionSelected)
    def _picked(self, event: OptionList.OptionSelected) -> None:
        self.action_apply(event.option_index - 1)  # under the table's head

    def action_back(self) -> None:
        """To the dashboard without a change: a running race goes on (and q there quits)."""
        self.dismiss(None)

    def action_leave(self) -> None:
        self.dismiss(RaceChoice(None) if self.running else None)
