"""The param groups a command names, and the refusal of one that cannot be applied."""

from __future__ import annotations

from optitui.store.fields import group_ref
from optitui.trainer.core.hparams import group_label
from optitui.trainer.core.training import Training


class Rejection(Exception):
    """A command that cannot be applied; nothing was changed."""


def resolve_groups(trainer: Training, group: int | str | None) -> list[int]:
    """The indices ``group`` names (an index, a name, "group N"); every group for None."""
    groups = trainer.optimizer.param_groups
    if group is None:
        return list(range(len(groups)))
    if isinstance(group, int):
        if not 0 <= group < len(groups):
            raise Rejection(f"group {group} does not exist; groups are 0..{len(groups) - 1}")
        return [group]
    for i, g in enumerate(groups):
        if g.get("name") == group:
            return [i]
    ref = group_ref(group)
    if isinstance(ref, int):
        return resolve_groups(trainer, ref)
    names = [group_label(g, i) for i, g in enumerate(groups)]
    raise Rejection(f"no group named {group!r}; groups: {', '.join(names)}")
