"""Loading a user's training script and calling its ``setup(device)``."""

from __future__ import annotations

import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from optitui.store.reader import why_unreadable
from optitui.trainer.core.job import Job, JobError


class ScriptError(Exception):
    """A script that cannot give a Job. The message names the file and the problem."""


def _where(exc: BaseException, path: Path) -> str:
    """The innermost frame of the traceback inside the user's file, if any."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename) == path]
    if not frames:
        return ""
    f = frames[-1]
    return f" (line {f.lineno}: {f.line.strip() if f.line else ''})"


def load_module(script: Path | str) -> ModuleType:
    """Import a script as a module; its folder goes first on sys.path, like ``python script``."""
    path = Path(script).resolve()
    why = why_unreadable(path)
    if why is not None:
        raise ScriptError(f"{script}: {why}")
    if not path.is_file():
        raise ScriptError(f"{script}: no such file")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    spec = importlib.util.spec_from_file_location("__optitui_script__", path)
    if spec is None or spec.loader is None:
        raise ScriptError(f"{script}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as exc:
        raise ScriptError(f"{script}: syntax error at line {exc.lineno}: {exc.msg}") from exc
    except SystemExit as exc:
        raise ScriptError(f"{script}: called exit({exc.code}) while being imported") from exc
    except Exception as exc:
        raise ScriptError(
            f"{script}: failed to import: {type(exc).__name__}: {exc}{_where(exc, path)}"
        ) from exc
    return module


def has_setup(module: ModuleType) -> bool:
    return callable(getattr(module, "setup", None))


def call_setup(module: ModuleType, script: Path | str, device: torch.device) -> Job:
    """Call ``setup(device)`` and check what it returns."""
    path = Path(script).resolve()
    setup: Any = getattr(module, "setup", None)
    if setup is None:
        raise ScriptError(
            f"{script}: defines no setup(device); add one that returns optitui.Job "
            "(see the README's script contract)"
        )
    if not callable(setup):
        raise ScriptError(f"{script}: setup is a {type(setup).__name__}, not a function")
    try:
        job = setup(device)
    except TypeError as exc:
        if exc.__traceback__ is not None and exc.__traceback__.tb_next is None:
            raise ScriptError(f"{script}: setup must take one argument (device): {exc}") from exc
        raise ScriptError(
            f"{script}: setup(device) raised TypeError: {exc}{_where(exc, path)}"
        ) from exc
    except Exception as exc:
        raise ScriptError(
            f"{script}: setup(device) raised {type(exc).__name__}: {exc}{_where(exc, path)}"
        ) from exc
    if not isinstance(job, Job):
        raise ScriptError(
            f"{script}: setup(device) returned {type(job).__name__}; it must return optitui.Job"
        )
    try:
        job.validate()
    except JobError as exc:
        raise ScriptError(f"{script}: the Job from setup(device) is not usable: {exc}") from exc
    return job


def load_job(script: Path | str, device: torch.device) -> Job:
    """Import ``script`` and return the checked Job from its ``setup(device)``."""
    return call_setup(load_module(script), script, device)
