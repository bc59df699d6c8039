"""Every key of the dashboard, in one table: the bindings, the footer, the help screen,
the command palette and the README's keys table all read it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Key:
    keys: str  # Textual key names, comma-separated
    action: str
    short: str  # the footer's word
    long: str  # help screen and command palette
    footer: bool = True  # shown in the footer (the footer has room for the common ones)
    display: str | None = None  # how the key is written, when not its Textual name
    listed: bool = True  # in help and the palette (False: the other half of a pair)
    group: str = ""  # keys of one footer group share one word there ("↑↓ group")
    foot: str | None = None  # how the footer writes the key, when not as help does

    @property
    def footer_display(self) -> str | None:
        return self.foot or self.display

    @property
    def shown_as(self) -> str:
        return self.display or self.keys


KEYS = (
    Key(
        "up",
        "move_group(-1)",
        "group",
        "select the previous / next param group",
        False,  # arrows move in a table as everywhere: the footer keeps its room
        "↑↓",
        group="group",
        foot="↑",
    ),
    Key(
        "down", "move_group(1)", "group", "select the next param group", False, "↓", False, "group"
    ),
    Key("plus,equals_sign", "scale_lr(1)", "lr", "lr × fine factor (1.1)", True, "+", group="lr"),
    Key("minus", "scale_lr(-1)", "lr", "lr ÷ fine factor", True, "-", group="lr"),
    Key("asterisk", "scale_lr(2)", "lr++", "lr × coarse factor (2)", False, "*"),
    Key("slash", "scale_lr(-2)", "lr--", "lr ÷ coarse factor", False, "/"),
    Key("a", "toggle_all", "all", "toggle: keys act on all groups / the selected one", False),
    Key("e", "edit", "edit", "edit any field of the selected group, at once or over N steps"),
    Key("f", "freeze", "freeze", "freeze / unfreeze the selected group", False),
    Key("z", "reset_state", "reset", "reset optimizer state (selected group, or all)", False),
    Key("d", "scheduler", "sched", "detach / re-attach the lr scheduler", False),
    Key("k", "lookahead", "lookahead", "lookahead on (k, alpha) / off", False),
    Key("g", "clip", "clip", "gradient clipping: max norm or off", False),
    Key("o", "swap_optimizer", "optim", "swap the optimizer class (state starts fresh)", False),
    Key("x", "divergence", "diverge", "divergence policy: pause / rollback / ignore", False),
    Key("space", "pause", "pause", "pause / resume training", True, "spc"),
    # the footer's word for space while paused (the dashboard's check_action)
    Key("space", "resume", "resume", "resume training", True, "spc", listed=False),
    # in the footer while paused (the dashboard's check_action); n's other binding steps
    # where the footer has no room for it, and says what n does while the run is going
    Key("n", "step_once", "step", "while paused: train one step, then pause again"),
    Key("n", "step_key", "step", "n steps once while paused", False, listed=False),
    Key("r", "range_test", "lr-find", "LR range test on the live job (or open the running one)"),
    Key("R", "race", "race", "optimizer race on the live job (or open the running one)", False),
    Key("s", "save", "save", "save a checkpoint (optional tag)"),
    Key("c", "checkpoints", "ckpts", "checkpoints: pick one to restore (rewind)"),
    Key("t", "traceback", "traceback", "the last error's traceback", False),
    Key(
        "l",
        "toggle_log",
        "log-y",
        "loss plot: log / linear y axis (chosen by itself until pressed)",
        False,
    ),
    Key("w", "toggle_window", "window", "plots: toggle last N steps / all", False),
    Key(
        "left_square_bracket",
        "zoom(True)",
        "zoom",
        "plots: zoom in / out on the steps (the newest stays in view)",
        False,
        "[ ]",
    ),
    Key("right_square_bracket", "zoom(False)", "zoom out", "plots: zoom out", False, "]", False),
    Key("comma", "pan(True)", "older", "plots: pan to older / newer steps", False, ", ."),
    Key("full_stop", "pan(False)", "newer", "plots: pan to newer steps", False, ".", False),
    Key("0", "all_steps", "all steps", "plots: all steps (undo zoom and pan)", False),
    Key("v", "log_filter", "log", "event log: all lines / commands / warnings and errors", False),
    Key("p", "toggle_plot", "plot", "narrow terminal: show the loss / the lr plot"),
    Key(
        "m",
        "metrics",
        "metrics",
        "metrics: a chart per metric (/ filter, enter full size, u pin under the loss)",
        False,
    ),
    Key("M", "markers", "markers", "list the plots' markers: step and what happened", False),
    Key(
        "b",
        "runs",
        "runs",
        "runs browser: overlay other runs (space), steer another (enter)",
        False,  # at 80 columns the footer has no room left for it
    ),
    Key("X", "toggle_x", "x-axis", "plots: x axis by step / by wall time since start", False),
    Key("question_mark,f1", "help", "help", "this help", True, "?"),
    Key("q", "app.quit", "quit", "quit: detach (job keeps training) / stop / cancel"),
)


#: keys Textual binds itself, listed in help with the dashboard's own
TEXTUAL_KEYS = (("ctrl+p", "command palette: every action above, searchable"),)


def listed() -> list[tuple[str, str]]:
    """(key as written, what it does) of every key, for help and the README."""
    return [(k.shown_as, k.long) for k in KEYS if k.listed] + list(TEXTUAL_KEYS)
