"""Choosing the accelerator before ``optitui run`` starts a job on a multi-GPU machine."""

from __future__ import annotations

from typing import ClassVar

from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import Footer, Label, OptionList
from textual.widgets.option_list import Option

from optitui.tui.devices import Device


class DevicePickerApp(App[str | None]):
    """Lists each device with its memory in use; exits with a ``--device`` value or None."""

    TITLE = "optitui: pick a device"
    CSS = """
    Screen { align: center middle; }
    OptionList { width: 80; max-width: 100%; height: auto; max-height: 80%; }
    Label { width: 80; max-width: 100%; }
    Label.note { color: $text-muted; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "cancel", "Cancel"),
        Binding("enter", "pick", "Train here", show=True),
    ]

    def __init__(self, devices: list[Device]) -> None:
        super().__init__()
        self.devices = devices

    def compose(self) -> ComposeResult:
        yield Label("Several accelerators here; train on which one?")
        yield Label(
            "cuda:N is CUDA's numbering (CUDA_VISIBLE_DEVICES applied); memory in use is "
            "nvidia-smi's, for every process on the GPU",
            classes="note",
        )
        yield OptionList(*[Option(d.describe(), id=d.spec) for d in self.devices], id="devices")
        yield Footer()

    def on_mount(self) -> None:
        options = self.query_one(OptionList)
        # the emptiest device first in the cursor's way
        free = [(d.used_mib if d.used_mib is not None else 1 << 40) for d in self.devices]
        options.highlighted = free.index(min(free)) if free else None
        options.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.exit(event.option.id)

    def action_pick(self) -> None:
        options = self.query_one(OptionList)
        if options.highlighted is not None:
            option = options.get_option_at_index(options.highlighted)
            self.exit(option.id)

    def action_cancel(self) -> None:
        self.exit(None)
