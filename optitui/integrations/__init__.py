"""Callbacks that give framework training loops the optitui dashboard.

- :mod:`optitui.integrations.lightning`: ``OptituiCallback`` for Lightning
  (``lightning.pytorch`` or ``pytorch_lightning``).
- :mod:`optitui.integrations.transformers`: ``OptituiCallback`` for the Hugging
  Face ``Trainer``.

Each builds a :class:`~optitui.trainer.probe.watch.Probe` on the framework's model,
optimizer and scheduler when training starts; the framework keeps stepping its
own scheduler and writing its own checkpoints. Importing this package loads
neither framework (nor torch): each module imports its framework itself.

This module also holds what both share: their settings and how they make their
probe, the lr multipliers a checkpoint carries, and loading a model state only
when it fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch
    from torch import nn

    from optitui.trainer.probe.loop_trainer import CheckpointBackend
    from optitui.trainer.probe.watch import Probe


@dataclass
class Settings:
    """What a callback is given: where the run goes and how often it is read.

    ``run_dir`` (else a new directory under ``root``, named ``name`` or after the
    model); ``flush_every`` steps between reads of the losses; ``sync_every``
    steps between the ranks' meetings under torch.distributed (16); ``health_every``
    steps between measurements of each param group's gradient norm, parameter norm
    and update ratio (16; 0: off); ``health_copy_gb`` the most a measurement copies of
    the parameters (1 GB; above it each group's ratio is a sample's)."""

    run_dir: Path | str | None = None
    root: Path | str = "runs"
    name: str | None = None
    flush_every: int = 64
    sync_every: int | None = None
    health_every: int | None = None
    health_copy_gb: float | None = None

    def make_probe(
        self,
        optimizer: Any,
        model: Any,
        scheduler: Any,
        *,
        mode: str,
        limits: Sequence[str],
        meta: dict[str, Any],
        backend: CheckpointBackend,
        first_step: int,
        hooks: bool = True,
    ) -> Probe:
        """A probe for a framework's fit: its checkpoints, its global step, and no
        StopTraining when the framework steps on after a stop (it has its own flag)."""
        from optitui.trainer.probe.watch import Probe

        return Probe(
            optimizer,
            model,
            scheduler=scheduler,
            run_dir=self.run_dir,
            root=self.root,
            name=self.name or type(model).__name__,
            flush_every=self.flush_every,
            mode=mode,
            limits=limits,
            meta=meta,
            backend=backend,
            hooks=hooks,
            first_step=first_step,
            raise_if_ignored=False,
            sync_every=self.sync_every,
            health_every=self.health_every,
            health_copy_gb=self.health_copy_gb,
        )


def lr_state(probe: Probe | None) -> dict[str, Any]:
    """The probe's lr multipliers and step, to keep beside a framework checkpoint."""
    if probe is None or probe.trainer is None:
        return {}
    state = probe.trainer.lr.state()
    state["base"] = {str(k): v for k, v in state["base"].items()}  # JSON keys
    return {"lr_control": state, "step": probe.steps}


def load_lr_state(probe: Probe, saved: dict[str, Any] | None) -> None:
    """Put back the multipliers saved with a checkpoint (none saved: the lr is as loaded)."""
    if probe.trainer is None:
        return
    probe.trainer.lr.load_state((saved or {}).get("lr_control"))


def check_model_state(
    model: nn.Module, saved: dict[str, torch.Tensor], *, allow_tied: bool = False
) -> None:
    """Raise CheckpointError unless ``saved`` fits ``model`` (so loading it cannot fail
    half-way). With ``allow_tied``, keys missing from ``saved`` are fine when their
    tensor is shared with one that is there (tied embeddings are saved once)."""
    from optitui.trainer.core.checkpoint import CheckpointError

    here = model.state_dict()
    extra = sorted(saved.keys() - here.keys())
    missing = sorted(here.keys() - saved.keys())
    if allow_tied and missing:
        loaded = {here[k].data_ptr() for k in saved if k in here}
        missing = [k for k in missing if here[k].data_ptr() not in loaded]
    if missing or extra:
        raise CheckpointError(
            f"the checkpoint does not fit this model: missing {missing[:3]}, unexpected {extra[:3]}"
        )
    for k, t in saved.items():
        if tuple(t.shape) != tuple(here[k].shape):
            raise CheckpointError(
                f"the checkpoint does not fit this model: {k} is {tuple(t.shape)} there, "
                f"{tuple(here[k].shape)} here"
            )


def check_optimizer_state(optimizer: Any, saved: dict[str, Any]) -> None:
    """Raise CheckpointError unless ``saved`` has this optimizer's groups and sizes."""
    from optitui.trainer.core.checkpoint import CheckpointError

    groups = saved.get("param_groups") if isinstance(saved, dict) else None
    if not isinstance(groups, list):
        raise CheckpointError("the checkpoint holds no optimizer state")
    sizes = [len(g["params"]) for g in optimizer.param_groups]
    if [len(g.get("params", [])) for g in groups] != sizes:
        raise CheckpointError(
            f"the checkpoint's optimizer has other param groups ({len(groups)} there, "
            f"{len(sizes)} here, or other sizes)"
        )
