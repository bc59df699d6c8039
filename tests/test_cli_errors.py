"""Every verb of the command line against a run that is missing, damaged, unreadable,
another user's, on a read-only filesystem, or written by another optitui version: one
line naming the problem and a non-zero exit, never a traceback or a hang.

The verbs come from ``optitui.cli.VERBS``: a verb added later is in the matrix at once,
by the names of its positional arguments (a run, runs, a script, a root), or the test
says which of its arguments it does not know. Runs owned by the current user but closed
to them, and other users' runs, are read with the effective uid switched to nobody (the
suite runs as root, which every permission lets through).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import TINY_SCRIPT

import optitui.cli
from optitui.cli import VERBS, build_parser, main
from optitui.store.layout import create_run_dir
from optitui.store.records import StatusUpdate
from optitui.store.writer import StoreWriter

NOBODY = 65534
CONDITIONS = ("missing", "corrupt", "unreadable", "another user's", "read-only", "version")
#: what the one line must say for each condition
SAYS = {
    "missing": ("no such",),
    "corrupt": ("damaged", "syntax error"),
    "unreadable": ("permission denied",),
    "another user's": ("belongs to", "permission denied"),
    "version": ("version",),
}
#: verbs that write: a run, a command, a throwaway run directory (the others only read)
WRITERS = {"run", "send", "lr-find"}
#: verbs outside the matrix, and why
EXEMPT = {
    "serve-stdio": "speaks the ssh line protocol on stdin; its answers for missing, refused "
    "and other-version runs are tested in tests/test_remote.py",
    "race": "races optimizers on built-in test functions: it reads no run, script or store",
}
#: (verb, condition) cells that do not exist, and why
NOT_APPLICABLE = {
    ("lr-find", "version"): "lr-find reads a script, never a stored run",
    ("lr-find", "another user's"): "running another user's readable script is allowed",
}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch uids")


# -- the runs ------------------------------------------------------------------------------
def _run(root: Path, name: str, *, schema: int | None = None) -> Path:
    paths = create_run_dir(root, name, root / name)
    w = StoreWriter(paths, {"script": "/x/train.py", "host": "elsewhere", "pid": 1})
    w.write([StatusUpdate("finished", 3, 0)])
    w.close()
    if schema is not None:  # as another optitui would have written it
        conn = sqlite3.connect(paths.db)
        conn.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(schema),))
        conn.commit()
        conn.close()
    return paths.root


def _give(path: Path, uid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, uid)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Runs in every condition, in a folder the nobody user can reach."""
    pub = Path(tempfile.mkdtemp(prefix="optitui-matrix-", dir="/tmp"))
    os.chmod(pub, 0o755)
    script = pub / "train.py"
    script.write_text(TINY_SCRIPT.replace(", STEP_DELAY", ", max_steps=2"))
    bad_script = pub / "broken.py"
    bad_script.write_text("def setup(device)\n    pass\n")
    runs: dict[str, Path] = {}
    for cond in CONDITIONS:
        root = pub / f"root-{cond.replace(' ', '-').replace(chr(39), '')}"
        root.mkdir()
        runs[cond] = root / "run"
    runs["missing"] = runs["missing"].parent / "nope"
    _run(runs["corrupt"].parent, "run").joinpath("store.sqlite").write_bytes(b"\x13" * 4096)
    _give(_run(runs["unreadable"].parent, "run"), NOBODY)
    (runs["unreadable"] / "store.sqlite").chmod(0)
    (runs["unreadable"] / "checkpoints").chmod(0)
    _run(runs["another user's"].parent, "run")  # root's own, 0700, read by nobody
    _run(runs["version"].parent, "run", schema=99)
    for cond in ("unreadable", "another user's"):
        os.chmod(runs[cond].parent, 0o755)
        if cond == "unreadable":
            os.chown(runs[cond].parent, NOBODY, NOBODY)
    # read-only: a small tmpfs, remounted read-only once the run is in it
    ro = runs["read-only"].parent
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(ro)], capture_output=True
    )
    if mounted.returncode == 0:
        _run(ro, "run")
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
    theirs = pub / "theirs-run"  # planted for `run --run-dir`: open to all, nobody's
    theirs.mkdir()
    theirs.chmod(0o777)
    os.chown(theirs, NOBODY, NOBODY)
    scripts = {
        "missing": pub / "absent.py",
        "corrupt": bad_script,
        "unreadable": pub / "closed.py",
        "another user's": pub / "theirs.py",
    }
    shutil.copy(script, scripts["unreadable"])
    os.chown(scripts["unreadable"], NOBODY, NOBODY)
    scripts["unreadable"].chmod(0)
    shutil.copy(script, scripts["another user's"])
    scripts["another user's"].chmod(0o600)
    yield {
        "pub": pub,
        "good": _run(pub, "good"),
        "theirs": theirs,
        "script": script,
        "runs": runs,
        "scripts": scripts,
        "ro": ro if mounted.returncode == 0 else None,
        "checkpoints": _checkpoints(pub),
    }
    if mounted.returncode == 0:
        subprocess.run(["umount", "-l", str(ro)], check=False)
    shutil.rmtree(pub, ignore_errors=True)


def _checkpoints(pub: Path) -> dict[str, Path]:
    """Checkpoint files for `run --resume`: damaged, and of another version."""
    import torch

    out = {}
    for cond, body in (("corrupt", None), ("version", {"format": "optitui-checkpoint"})):
        folder = pub / f"ckpt-{cond}" / "checkpoints"
        folder.mkdir(parents=True)
        cid = "step00000002-manual-abcd"
        buf = io.BytesIO()
        torch.save({**(body or {}), "version": 2}, buf)
        data = buf.getvalue()
        (folder / f"{cid}.pt").write_bytes(data if cond == "version" else data[:10])
        manifest = {
            "id": cid,
            "step": 2,
            "epoch": 0,
            "loss": None,
            "val_loss": None,
            "time": 1.0,
            "reason": "manual",
            "tag": None,
            "file": f"{cid}.pt",
            "size": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
            "optimizer": "SGD",
        }
        (folder / f"{cid}.json").write_text(json.dumps(manifest))
        out[cond] = folder / f"{cid}.pt"
    return out


# -- how each verb is aimed at a thing in a condition --------------------------------------
def _positionals(verb: str) -> list[argparse.Action]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [a for a in sub.choices[verb]._actions if not a.option_strings]


def _argv(verb: str, cond: str, w: dict[str, Any]) -> list[str] | None:
    """The command line that aims ``verb`` at a thing in condition ``cond``."""
    runs, scripts, ckpt = w["runs"], w["scripts"], w["checkpoints"]
    if verb == "run":
        base = ["run", str(w["script"]), "--headless", "--device", "cpu"]
        return (
            base
            + {
                "missing": ["--resume", str(runs["missing"])],
                "corrupt": ["--resume", str(ckpt["corrupt"])],
                "unreadable": ["--resume", str(runs["unreadable"])],
                "another user's": ["--run-dir", str(w["theirs"])],
                "read-only": ["--root", str(w["ro"])],
                "version": ["--resume", str(ckpt["version"])],
            }[cond]
        )
    if verb == "lr-find":
        if (verb, cond) in NOT_APPLICABLE:
            return None
        if cond == "read-only":  # its throwaway run goes to a read-only temp folder
            return ["lr-find", str(w["script"]), "num_iter=2"]
        return ["lr-find", str(scripts[cond]), "num_iter=2"]
    argv = [verb]
    aimed = False
    for action in _positionals(verb):
        if re.fullmatch(r"runs?(_\w+)?", action.dest):  # run, runs, run_a, run_b, ...
            # the first run named is the one in the condition; any other is a good one
            argv.append(str(w["good"] if aimed else runs[cond]))
            aimed = True
        elif action.dest == "where":  # ls: the folder the runs are in
            argv.append(str(runs[cond].parent if cond != "missing" else runs[cond]))
        elif action.dest == "command":
            argv.append("pause")
        elif action.nargs in ("*", "?"):
            continue
        else:
            raise AssertionError(
                f"`optitui {verb}` has a positional argument {action.dest!r} this matrix "
                "does not know: teach _argv how to aim it at a run"
            )
    return argv


@contextlib.contextmanager
def _as(uid: int) -> Iterator[None]:
    if uid == 0:
        yield
        return
    os.setegid(uid)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


class Hung(Exception):
    pass


def _call(argv: list[str], uid: int) -> tuple[int, BaseException | None]:
    def alarm(signum: int, frame: Any) -> None:
        raise Hung(" ".join(argv))

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(60)
    try:
        with _as(uid):
            return main(argv), None
    except SystemExit as exc:
        return (exc.code if isinstance(exc.code, int) else 2), None
    except BaseException as exc:  # a traceback: what must never happen
        return -1, exc
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def _warm_up() -> None:
    """Import what the verbs import lazily, before the uid that cannot read python's own
    files is taken."""
    import csv  # noqa: F401
    import pwd  # noqa: F401

    import optitui.cli.export
    import optitui.console.summary
    import optitui.lrfind_report
    import optitui.remote.client
    import optitui.store.export
    import optitui.tui.app
    import optitui.tui.feed  # noqa: F401


CELLS = [(v, c) for v in VERBS if v not in EXEMPT for c in CONDITIONS]


@pytest.mark.parametrize(("verb", "cond"), CELLS, ids=[f"{v}-{c}" for v, c in CELLS])
def test_every_verb_says_one_line(
    verb: str,
    cond: str,
    world: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if cond == "read-only" and world["ro"] is None:
        pytest.skip("cannot mount a tmpfs here")
    argv = _argv(verb, cond, world)
    if argv is None:
        pytest.skip(NOT_APPLICABLE[(verb, cond)])
    _warm_up()
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    monkeypatch.chdir(world["pub"])
    monkeypatch.setattr("optitui.cli.attach.has_terminal", lambda: True)
    opened: list[Path] = []

    class NoScreen:  # attach gets this far only for a run it could read
        return_code = 0

        def __init__(self, run_dir: Path, **kw: Any) -> None:
            opened.append(Path(run_dir))

        def run(self) -> None:
            pass

    monkeypatch.setattr("optitui.tui.app.build_app", NoScreen)
    if verb == "lr-find" and cond == "read-only":
        monkeypatch.setattr(tempfile, "tempdir", str(world["ro"]))
    uid = NOBODY if cond in ("unreadable", "another user's") and verb != "run" else 0
    if verb == "run" and cond == "unreadable":
        uid = NOBODY
    code, raised = _call(argv, uid)
    out, err = capsys.readouterr()
    assert raised is None, f"{argv}: {type(raised).__name__}: {raised}"
    assert "Traceback" not in err, err
    lines = [x for x in err.splitlines() if x.strip()]
    if cond == "read-only" and verb not in WRITERS:
        # a finished run reads fine (diff's 1 says the runs differ)
        assert code in (0, 1) and not lines, (argv, code, err)
        return
    if verb == "ls" and cond != "missing":  # the run's line in the table says why
        row = next((x for x in out.splitlines() if x.startswith("run ")), "")
        assert code == 1 and "unreadable" in row, (argv, code, out, err)
        assert any(w in row.lower() for w in SAYS[cond]), (argv, row)
        return
    assert code not in (0, -1), (argv, code, out, err)
    assert len(lines) == 1 and lines[0].startswith("optitui: "), (argv, err)
    if cond in SAYS:
        assert any(w in lines[0].lower() for w in SAYS[cond]), (argv, lines[0])
    else:
        assert "read-only" in lines[0] or "Read-only" in lines[0] or "finished" in lines[0]
    assert not opened


def test_every_verb_is_in_the_matrix() -> None:
    for verb in VERBS:
        assert verb in EXEMPT or any(v == verb for v, _ in CELLS), verb
    assert optitui.cli.ENVIRONMENT  # the last line of defence: one line for what is left


def test_export_into_a_folder_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = _run(tmp_path, "run")
    assert main(["export", str(run), "-o", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Is a directory" in err[0] and "Traceback" not in err[0]


def test_screenshot_of_a_damaged_store_ends_with_one_line(tmp_path: Path) -> None:
    run = _run(tmp_path, "run")
    (run / "store.sqlite").write_bytes(b"\x13" * 4096)
    out = subprocess.run(
        [sys.executable, "-m", "optitui.tui.screenshot", str(run), str(tmp_path / "s.svg")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = out.stderr.strip().splitlines()
    assert out.returncode == 2 and len(lines) == 1 and "damaged" in lines[0], out.stderr


def test_ls_says_whose_run_it_cannot_read(
    world: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    root = world["runs"]["another user's"].parent
    code, raised = _call(["ls", "--root", str(root), "--json"], NOBODY)
    assert (code, raised) == (1, None)
    [run] = json.loads(capsys.readouterr().out)["runs"]
    assert run["state"] == "unreadable"
    # as attach, diff and export say it, not the OSError of a look inside
    assert run["problem"].startswith("permission denied: it belongs to root (uid 0), not to you")
