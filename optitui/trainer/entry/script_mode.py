"""``optitui run SCRIPT`` for a script without ``setup()``: run it as it is.

The script runs as ``__main__`` (``sys.argv == [SCRIPT, *ARGS after --]``), with
:data:`~optitui.trainer.probe.watch.ENV_RUN_DIR` naming the run directory, so that
its own ``optitui.watch(...)`` serves the store the dashboard attaches to.

When it never calls ``watch()``, zero-code mode finds what a probe needs on
its own: the optimizer through torch's global optimizer step hooks (the first
one stepped is watched), the loss as the scalar on which ``backward()`` is
called, the scheduler from those the script creates, and the model among the
``nn.Module`` objects in the script's frames that hold every parameter of the
optimizer. The probe then steps after each ``optimizer.step()``, from the
post-hook. If the script does call ``watch()``, zero-code mode steps aside.
What zero-code mode cannot do is written to the run's metadata under
``probe`` (``{"mode": "zero-code", "limits": [...], "hint": ...}``) for viewers.
"""

from __future__ import annotations

import ast
import contextlib
import os
import runpy
import signal
import sys
import traceback
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.optim import Optimizer
from torch.optim import lr_scheduler as sched_mod
from torch.utils.hooks import RemovableHandle

from optitui.console.progress import first_line, reporter_for
from optitui.store.layout import RunDirError, RunPaths, create_run_dir, remove_unused_run_dir
from optitui.store.records import MetaUpdate
from optitui.trainer.core import run_facts
from optitui.trainer.core.dist import env_rank
from optitui.trainer.loop.steering import Steering
from optitui.trainer.probe import watch
from optitui.trainer.probe.loss_tap import LossTap
from optitui.trainer.probe.watch import ENV_RUN_DIR, Probe, StopTraining

if TYPE_CHECKING:
    from optitui.trainer.entry.options import RunOptions

#: what zero-code mode cannot do, as shown to the user (meta["probe"]["limits"])
ZERO_CODE_LIMITS = (
    "loss: the scalar passed to backward(), summed over the backward() calls between "
    "two optimizer steps (unscaled under a GradScaler; a closure's first call for "
    "optimizers like LBFGS)",
    "stop: raises optitui.StopTraining out of optimizer.step(); code after the training "
    "loop does not run",
    "only the first optimizer stepped is watched; no epochs and no validation loss",
    "swap-optimizer is not available (the script holds its optimizer)",
    "restore and the range test put back model, optimizer, scheduler and RNG, not the "
    "script's position in its data; the range test uses up the batches it trains on",
)
NO_MODEL = (
    "no nn.Module holding all the optimizer's parameters was found: checkpoints keep "
    "the parameters only (no buffers such as BatchNorm statistics)"
)
HINT = (
    "probe = optitui.watch(optimizer, model=model, scheduler=scheduler) and "
    "probe.step(loss) after optimizer.step() lift these limits"
)


def defines_setup(script: Path) -> bool:
    """Whether the script binds ``setup`` at module level, found without running it.

    A file that cannot be read or parsed counts as having one: the usual path
    then reports the problem with the file's name."""
    try:
        tree = ast.parse(script.read_text(encoding="utf-8"), filename=str(script))
    except (OSError, SyntaxError, ValueError):
        return True
    return any(_binds_setup(node) for node in _module_level(tree.body))


def _module_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Statements at module level, also inside if/try/with/for blocks (not functions)."""
    for node in body:
        yield node
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        for name in ("body", "orelse", "finalbody"):
            yield from _module_level(getattr(node, name, []))
        for handler in getattr(node, "handlers", []):
            yield from _module_level(handler.body)


def _binds_setup(node: ast.stmt) -> bool:
    if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
        return node.name == "setup"
    if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(isinstance(t, ast.Name) and t.id == "setup" for t in targets)
    if isinstance(node, ast.Import | ast.ImportFrom):
        return any((a.asname or a.name.split(".")[0]) == "setup" for a in node.names)
    return False


# -- the model and the scheduler, found -------------------------------------------------
def _params(optimizer: Optimizer) -> set[int]:
    return {id(p) for g in optimizer.param_groups for p in g["params"]}


def find_model(optimizer: Optimizer, frame: FrameType | None = None) -> nn.Module | None:
    """The tightest nn.Module holding every parameter of ``optimizer``, among the values
    in the calling frames and in ``__main__``; None when there is none."""
    want = _params(optimizer)
    spaces: list[dict[str, Any]] = []
    f: FrameType | None = frame if frame is not None else sys._getframe(1)
    while f is not None:
        spaces.append(f.f_locals)
        f = f.f_back
    main = sys.modules.get("__main__")
    if main is not None:
        spaces.append(vars(main))
    best: nn.Module | None = None
    best_extra = 0
    seen: set[int] = set()
    for space in spaces:
        for value in list(space.values()):
            if not isinstance(value, nn.Module) or id(value) in seen:
                continue
            seen.add(id(value))
            have = {id(p) for p in value.parameters()}
            if not want <= have:
                continue
            extra = len(have - want)
            if best is None or extra < best_extra:
                best, best_extra = value, extra
    return best


_SCHEDULER_CLASSES = (
    sched_mod.LRScheduler,
    sched_mod.SequentialLR,
    sched_mod.ChainedScheduler,
    sched_mod.ReduceLROnPlateau,
)


class SchedulerWatch:
    """Notes every scheduler created while started (by wrapping the classes' __init__)."""

    def __init__(self) -> None:
        self.made: list[weakref.ref[Any]] = []
        self._saved: list[tuple[type, Callable[..., None]]] = []

    def start(self) -> None:
        for cls in _SCHEDULER_CLASSES:
            original = cls.__dict__["__init__"]
            self._saved.append((cls, original))
            setattr(cls, "__init__", self._wrap(original))  # noqa: B010

    def _wrap(self, original: Callable[..., None]) -> Callable[..., None]:
        made = self.made

        def __init__(sched: Any, *args: Any, **kwargs: Any) -> None:
            original(sched, *args, **kwargs)
            if all(r() is not sched for r in made):
                made.append(weakref.ref(sched))

        return __init__

    def stop(self) -> None:
        for cls, original in reversed(self._saved):
            setattr(cls, "__init__", original)  # noqa: B010
        self._saved.clear()

    def find(self, optimizer: Optimizer) -> Any | None:
        """The newest outermost scheduler driving ``optimizer``'s param groups."""
        ours = optimizer.param_groups
        live = [s for r in self.made if (s := r()) is not None]
        mine = [
            s
            for s in live
            if len(s.optimizer.param_groups) == len(ours)
            and all(a is b for a, b in zip(s.optimizer.param_groups, ours, strict=True))
        ]
        inner = {id(c) for s in mine for c in getattr(s, "_schedulers", [])}
        outer = [s for s in mine if id(s) not in inner]
        return outer[-1] if outer else None


def innermost(optimizer: Optimizer) -> Optimizer:
    """A wrapper's own optimizer (accelerate's AcceleratedOptimizer and the like)."""
    while isinstance(getattr(optimizer, "optimizer", None), Optimizer):
        optimizer = optimizer.optimizer  # type: ignore[attr-defined]
    return optimizer


class ZeroCode:
    """Global hooks that give an unmodified script a probe."""

    def __init__(self, *, max_steps: int | None = None, on_divergence: str = "pause") -> None:
        self.max_steps = max_steps
        self.on_divergence = on_divergence
        self.probe: Probe | None = None
        self.tap = LossTap()
        self.schedulers = SchedulerWatch()
        self.aside = False
        self._handles: list[RemovableHandle] = []
        self.steps = 0  # the watched optimizer's steps (the post-hook counts them)
        self._real_scaler_step: Callable[..., Any] | None = None

    def install(self) -> None:
        from torch.optim.optimizer import (
            register_optimizer_step_post_hook,
            register_optimizer_step_pre_hook,
        )

        self.tap.start()
        self.schedulers.start()
        self._real_scaler_step = torch.amp.GradScaler.step
        torch.amp.GradScaler.step = self._scaler_step(self._real_scaler_step)  # type: ignore[method-assign]
        self._handles = [
            register_optimizer_step_pre_hook(self._pre),
            register_optimizer_step_post_hook(self._post),
        ]
        watch.WATCH_HOOKS.append(self._on_watch)

    def uninstall(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles.clear()
        if self._real_scaler_step is not None:
            torch.amp.GradScaler.step = self._real_scaler_step  # type: ignore[method-assign]
            self._real_scaler_step = None
        self.tap.stop()
        self.schedulers.stop()
        with contextlib.suppress(ValueError):
            watch.WATCH_HOOKS.remove(self._on_watch)

    def _on_watch(self, optimizer: Optimizer) -> Probe | None:
        """The script calls optitui.watch itself: step aside, handing over our probe."""
        self.aside = True
        self.uninstall()
        p = self.probe
        if p is not None and p.optimizer is innermost(optimizer):
            p.on_stop = "flag"
            if p.trainer is not None:
                p.trainer.recorder.put(MetaUpdate({"probe": {"mode": "watch", "limits": []}}))
            return p
        return None

    def _pre(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        if self.aside:
            return
        if self.probe is None:
            if watch.PROBES.open_probes():  # a framework callback made its own: leave it be
                self.aside = True
                self.tap.stop()  # the hooks stay (inert) until the run ends: we are inside one
                return
            self._attach(optimizer, sys._getframe(1))
        if self.probe is not None and optimizer is self.probe.optimizer:
            self.tap.enter_step()  # a closure's losses (LBFGS) belong to this step

    def _post(self, optimizer: Optimizer, args: Any, kwargs: Any) -> None:
        p = self.probe
        if p is None or self.aside:
            return
        if optimizer is p.optimizer:
            self.steps += 1
            p.step(self.tap.take())  # raises StopTraining when the run is stopped
        elif innermost(optimizer) is not p.optimizer:
            self.tap.take()  # another optimizer's loss is not ours

    def _scaler_step(self, real: Callable[..., Any]) -> Callable[..., Any]:
        """GradScaler.step, noticing the steps it skips (inf gradients, non-fused optimizer:
        ``optimizer.step()`` is never called, so neither are the step hooks)."""
        zero = self

        def step(scaler: Any, optimizer: Optimizer, *args: Any, **kwargs: Any) -> Any:
            before = zero.steps
            out = real(scaler, optimizer, *args, **kwargs)
            p = zero.probe
            if zero.aside or zero.steps != before:
                return out
            if p is None:  # skipped before any step was taken: no run yet, nothing to record
                zero.tap.take()
            elif innermost(optimizer) is p.optimizer:
                p.step(zero.tap.take())  # no step hook ran: the probe records it as skipped
            return out

        return step

    def _attach(self, optimizer: Optimizer, frame: FrameType) -> None:
        opt = innermost(optimizer)
        model = find_model(opt, frame)
        limits = list(ZERO_CODE_LIMITS) + ([] if model is not None else [NO_MODEL])
        self.probe = Probe(
            opt,
            model,
            scheduler=self.schedulers.find(opt),
            on_stop="raise",
            max_steps=self.max_steps,
            on_divergence=self.on_divergence,
            mode="zero-code",
            limits=limits,
        )
        if self.probe.trainer is not None:
            self.probe.trainer.recorder.put(
                MetaUpdate({"probe": {"mode": "zero-code", "limits": limits, "hint": HINT}})
            )


# -- running the script ---------------------------------------------------------------
def _install_signal_handlers() -> None:
    """Ctrl+C or SIGTERM: the probes stop at their next step; a second one interrupts."""
    interrupts = 0

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupts
        interrupts += 1
        probes = watch.PROBES.open_probes()
        if interrupts > 1 or not probes:
            raise KeyboardInterrupt
        why = "interrupted" if signum == signal.SIGINT else "terminated"
        for p in probes:
            if p.trainer is not None:
                p.trainer.request_stop(why)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


def _exit_code(exc: SystemExit) -> int:
    if exc.code is None:
        return 0
    return exc.code if isinstance(exc.code, int) else 1


def run_script_mode(opts: RunOptions) -> int:
    """Run a script without setup() as ``__main__``; its probe (or zero-code mode's)
    serves the run directory. Returns the exit status."""
    script = opts.script
    if not script.is_file():
        print(f"optitui: {script}: no such file", file=sys.stderr)
        return 2
    if opts.resume is not None:
        print(
            f"optitui: --resume needs a script with setup(device); {script} has none "
            "(send `restore` to the running job instead)",
            file=sys.stderr,
        )
        return 2
    if opts.seed is not None:
        from optitui.trainer.loop.trainer import seed_everything

        seed_everything(opts.seed)
    # under torchrun rank 0 makes the run directory; the others' probes learn it from
    # rank 0 once the script has set up its process group
    try:
        paths = create_run_dir(opts.root, script.stem, opts.run_dir) if env_rank() == 0 else None
    except RunDirError as exc:
        print(f"optitui: {exc}", file=sys.stderr)
        return 2
    if paths is not None:
        os.environ[ENV_RUN_DIR] = str(paths.root)
    watch.set_script_meta(
        {
            "script": str(script.resolve()),
            "argv": list(opts.argv),
            **run_facts.script_facts(script, list(opts.script_args)),
            "mode": opts.mode,
            "seed": opts.seed,
        },
        max_steps=opts.max_steps,
        on_divergence=opts.on_divergence,
        health_every=opts.health_every,
    )
    zero = ZeroCode(max_steps=opts.max_steps, on_divergence=opts.on_divergence or "pause")
    what = f"{script} as it is (no setup())"
    if paths is not None:
        line = first_line(
            what if opts.no_terminal else f"running {what}", paths.root, opts.no_terminal
        )
        print(line, file=sys.stderr, flush=True)
    else:
        print(
            f"optitui: running {what}; rank {env_rank()}, rank 0 records",
            file=sys.stderr,
            flush=True,
        )
    _install_signal_handlers()
    reporter = None if paths is None else reporter_for(paths.root, opts.log_every, opts.quiet)
    # the reporter prints the run's warnings; under the dashboard they are its events
    Steering.echo_warnings = reporter is None and not opts.events_shown
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *opts.script_args]
    sys.path.insert(0, str(script.resolve().parent))
    code: int = 0
    error: BaseException | None = None
    zero.install()
    try:
        runpy.run_path(str(script), run_name="__main__")
    except StopTraining:
        pass
    except SystemExit as exc:
        code = _exit_code(exc)
        if code:
            error = RuntimeError(f"the script exited with status {code}")
    except KeyboardInterrupt as exc:
        code, error = 130, exc
        print("optitui: interrupted", file=sys.stderr)
    except BaseException as exc:
        traceback.print_exc()
        code, error = 1, exc
    finally:
        zero.uninstall()
        sys.argv, sys.path[:] = saved_argv, saved_path
        os.environ.pop(ENV_RUN_DIR, None)
        made = watch.PROBES.made_probes()
        watch.PROBES.close_all(error)
        Steering.echo_warnings = True
        if reporter is not None:  # the events up to the end, before the last line
            reporter.stop()
    return _report(None if paths is None else paths.root, made, code)


def _report(run_dir: Path | None, made: list[Probe], code: int) -> int:
    if run_dir is None:
        return code  # another rank's process: rank 0 reports
    if not made:
        remove_unused_run_dir(RunPaths(run_dir))  # nothing was recorded: leave no empty run
        print(
            "optitui: the script never stepped an optimizer (nor called optitui.watch); "
            "nothing was recorded",
            file=sys.stderr,
        )
        return code
    for p in made:
        print(
            f"optitui: {p.state} at step {p.steps}; run directory {p.run_dir}",
            file=sys.stderr,
        )
    return code
