"""Commands reach a run through one narrow interface, which the trainer and the probe's
loop both implement, and the command modules never import the loop."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from jobs import command, make_trainer, tiny_job
from test_structure import import_graph

from optitui.trainer.control import commands as control
from optitui.trainer.control.steerable import Steerable
from optitui.trainer.probe.watch import watch


def _members(protocol: type) -> set[str]:
    """Every attribute and method a protocol names, its bases' included."""
    names: set[str] = set()
    for cls in protocol.__mro__:
        if cls is object or cls.__name__ in ("Protocol", "Generic"):
            continue
        names |= set(getattr(cls, "__annotations__", {}))
        names |= {k for k in vars(cls) if not k.startswith("_")}
    return names


def _missing(obj: Any) -> list[str]:
    return sorted(m for m in _members(Steerable) if not hasattr(obj, m))


def test_the_interface_names_what_a_command_may_touch() -> None:
    names = _members(Steerable)
    # groups and lr control, pause and the step budget, checkpoints, the range test
    for m in ("optimizer", "lr", "pause", "step_then_pause", "save_checkpoint", "rewind"):
        assert m in names
    assert "pending_test" in names and "range_tests" in names
    assert "run" not in names and "_apply_commands" not in names  # never the loop itself


def test_the_trainer_and_the_probes_loop_both_implement_it(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, tiny_job(max_steps=1))
    assert _missing(trainer) == []
    model = torch.nn.Linear(2, 1)
    probe = watch(torch.optim.SGD(model.parameters(), lr=0.1), model, run_dir=tmp_path / "p")
    try:
        assert probe.trainer is not None
        assert _missing(probe.trainer) == []
        # and a command applied through it changes the probe's optimizer
        control.apply(probe.trainer, command("set", values={"lr": 0.05}))
        assert probe.optimizer.param_groups[0]["lr"] == 0.05
    finally:
        probe.close()


def test_commands_never_import_the_loop() -> None:
    graph = import_graph()
    control_modules = [m for m in graph if m.startswith("optitui.trainer.control")]
    assert "optitui.trainer.control.steerable" in control_modules
    for m in control_modules:
        loop = sorted(d for d in graph[m] if d.startswith("optitui.trainer.loop"))
        assert not loop, f"{m} imports {loop}"
    assert "optitui.trainer.control.steerable" in graph["optitui.trainer.control.commands"]
