"""`optitui diff`: pairs of runs made by small in-process jobs, each pair differing in one
aspect (or none), and runs diff cannot read."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import corrupt_run, from_a_newer_optitui, set_meta
from jobs import make_trainer, tiny_job

from optitui import __version__
from optitui.cli import main
from optitui.store.commands import Command, validate
from optitui.store.reader import RunReader
from optitui.trainer.core.job import Job

_ids = itertools.count()


def run(
    root: Path,
    name: str,
    *,
    tweak: Callable[[Job], None] | None = None,
    commands: dict[int, list[tuple[str, dict[str, Any]]]] | None = None,
    meta: dict[str, Any] | None = None,
    monkeypatch: pytest.MonkeyPatch | None = None,
    **job_kwargs: Any,
) -> Path:
    """A finished 6-step run of ``tiny_job(**job_kwargs)``; ``commands[s]`` arrive at the
    boundary after step s, as if sent with ``optitui send``."""
    job = tiny_job(max_steps=6, **job_kwargs)
    if tweak is not None:
        tweak(job)
    t = make_trainer(root, job, name, meta=meta, flush_every=2)
    if commands:
        assert monkeypatch is not None
        take = t._take_commands
        pending = dict(commands)

        def arrive() -> None:
            for kind, args in pending.pop(t.step, []):
                cid = f"c{next(_ids)}"
                raw = json.dumps({"id": cid, "kind": kind, "args": args, "sent": 0.0})
                t.commands.append(Command(cid, kind, validate(kind, args), raw))
            take()

        monkeypatch.setattr(t, "_take_commands", arrive)
    assert t.run() == "finished"
    return t.paths.root


def diff(capsys: pytest.CaptureFixture[str], a: Path, b: Path, *more: str) -> tuple[int, str, str]:
    code = main(["diff", str(a), str(b), *more])
    got = capsys.readouterr()
    return code, got.out, got.err


def differing(capsys: pytest.CaptureFixture[str], a: Path, b: Path) -> set[tuple[str, str]]:
    code, out, _ = diff(capsys, a, b, "--json")
    data = json.loads(out)
    assert code == (0 if data["same"] else 1)
    return {(d["section"], d["field"]) for d in data["differences"]}


def _second_lr(job: Job) -> None:
    job.optimizer.param_groups[1]["lr"] = 0.05


def _step_lr(gamma: float) -> Callable[[Job], None]:
    def tweak(job: Job) -> None:
        job.scheduler = torch.optim.lr_scheduler.StepLR(job.optimizer, 3, gamma)

    return tweak


ASPECTS: dict[str, tuple[dict[str, Any], dict[str, Any], set[tuple[str, str]]]] = {
    "optimizer class": (
        {"optimizer": "SGD"},
        {"optimizer": "Adagrad"},
        {("optimizer", "class")},
    ),
    "one group's lr": ({}, {"tweak": _second_lr}, {("group 1", "lr")}),
    "a hyperparameter of every group": (
        {"opt_kwargs": {"momentum": 0.9}},
        {"opt_kwargs": {"momentum": 0.5}},
        {("group 0", "momentum"), ("group 1", "momentum")},
    ),
    "scheduler settings": (
        {"tweak": _step_lr(0.5)},
        {"tweak": _step_lr(0.1)},
        {("scheduler", "gamma")},
    ),
    "batch size": ({"batch_size": 32}, {"batch_size": 16}, {("job", "batch size")}),
    "grad accumulation": ({}, {"grad_accum": 2}, {("job", "grad accumulation")}),
    "clipping": ({}, {"clip_grad_norm": 1.0}, {("job", "clip grad norm")}),
    "precision": ({}, {"tweak": lambda j: setattr(j, "precision", "bf16")}, {("job", "precision")}),
    "seed": ({"seed": 0}, {"seed": 0, "tweak": lambda j: setattr(j, "seed", 7)}, {("job", "seed")}),
    "script arguments": (
        {"meta": {"script": "/x/train.py", "script_args": ["--width", "64"]}},
        {"meta": {"script": "/x/train.py", "script_args": ["--width", "128"]}},
        {("script", "arguments")},
    ),
}


@pytest.mark.parametrize("aspect", list(ASPECTS))
def test_diff_names_exactly_the_aspect_two_runs_differ_in(
    aspect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    left, right, expected = ASPECTS[aspect]
    a = run(tmp_path, "a", **left)
    b = run(tmp_path, "b", **right)
    got = differing(capsys, a, b)
    if aspect == "optimizer class":  # the classes' hyperparameters differ with them
        hyper = {(s, n) for s, n in got if s.startswith("group ")}
        assert {("group 0", "momentum"), ("group 1", "lr_decay")} <= hyper
        expected = expected | hyper
    assert got == expected
    code, out, _ = diff(capsys, a, b)
    assert code == 1 and f"{len(expected)} of " in out and "set-up values differ" in out


def test_diff_of_a_scheduler_and_none_lists_the_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def sequential(job: Job) -> None:
        S = torch.optim.lr_scheduler
        warm = S.LinearLR(job.optimizer, 0.1, total_iters=2)
        cos = S.CosineAnnealingLR(job.optimizer, 10)
        job.scheduler = S.SequentialLR(job.optimizer, [warm, cos], milestones=[2])

    a = run(tmp_path, "a")
    b = run(tmp_path, "b", tweak=sequential)
    code, out, _ = diff(capsys, a, b)
    assert code == 1
    lines = {tuple(x.split()) for x in out.splitlines()}
    assert ("class", "none", "SequentialLR") in lines
    assert ("interval", "none", "step") in lines
    assert ("milestones", "absent", "(2)") in lines
    assert ("schedulers[0].class", "absent", "LinearLR") in lines
    assert ("schedulers[0].start_factor", "absent", "0.1") in lines
    assert ("schedulers[1].T_max", "absent", "10") in lines


def test_identical_runs_are_said_to_be_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    sent = {2: [("set", {"values": {"lr": 0.02}, "group": "head"})], 4: [("clip", {"max_norm": 5})]}
    sent_b = {k: list(v) for k, v in sent.items()}
    kwargs: dict[str, Any] = {"opt_kwargs": {"momentum": 0.9}, "tweak": _step_lr(0.5)}
    a = run(tmp_path, "a", commands=sent, monkeypatch=monkeypatch, **kwargs)
    b = run(tmp_path, "b", commands=sent_b, monkeypatch=monkeypatch, **kwargs)
    code, out, err = diff(capsys, a, b)
    assert (code, err) == (0, "")
    assert "A and B do not differ" in out and "and 2 commands at the same steps" in out
    data = json.loads(diff(capsys, a, b, "--json")[1])
    assert data["same"] is True and data["differences"] == [] and data["compared"] > 30
    assert [(c["step"], c["command"]) for c in data["commands"]] == [
        (2, "set lr=0.02 group=head"),
        (4, "clip 5"),
    ]
    assert all(c["a"]["applied"] and c["b"]["applied"] for c in data["commands"])


def test_the_commands_each_run_received_make_one_timeline(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    a = run(
        tmp_path,
        "a",
        commands={
            2: [("set", {"values": {"lr": 0.02}, "group": "head"})],
            4: [("clip", {"max_norm": 5})],
        },
        monkeypatch=monkeypatch,
    )
    b = run(
        tmp_path,
        "b",
        commands={
            1: [("set", {"values": {"lr": -1}})],  # refused by the job
            3: [("set", {"values": {"lr": 0.02}, "group": "head"})],
            4: [("clip", {"max_norm": 5})],
        },
        monkeypatch=monkeypatch,
    )
    code, out, _ = diff(capsys, a, b, "--json")
    data = json.loads(out)
    assert code == 1 and data["differences"] == [] and data["commands_differ"] is True
    got = [
        (c["step"], c["command"], c["a"] and c["a"]["applied"], c["b"] and c["b"]["applied"])
        for c in data["commands"]
    ]
    assert got == [
        (1, "set lr=-1", None, False),
        (2, "set lr=0.02 group=head", True, None),
        (3, "set lr=0.02 group=head", None, True),
        (4, "clip 5", True, True),
    ]
    assert data["commands"][0]["b"]["reason"]  # why the job refused it
    code, text, _ = diff(capsys, a, b)
    table = text.split("\ncommands", 1)[1].splitlines()
    assert table[0].split() == ["STEP", "COMMAND", "A", "B"]
    assert table[2].split()[:6] == ["2", "set", "lr=0.02", "group=head", "applied", "–"]
    assert table[4].split() == ["4", "clip", "5", "applied", "applied"]
    assert "the commands differ" in text


def test_json_says_which_values_a_run_has_not(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = run(tmp_path, "a", opt_kwargs={"momentum": 0.9})
    b = run(tmp_path, "b", optimizer="Adam")
    data = json.loads(diff(capsys, a, b, "--json")[1])
    assert data["runs"]["a"]["state"] == "finished" and data["runs"]["a"]["step"] == 6
    assert data["runs"]["b"]["optitui_version"] == __version__
    by = {(d["section"], d["field"]): d for d in data["differences"]}
    assert by["optimizer", "class"] == {
        "section": "optimizer",
        "field": "class",
        "a": "SGD",
        "b": "Adam",
    }
    assert by["group 0", "momentum"] == {
        "section": "group 0",
        "field": "momentum",
        "a": 0.9,
        "b": None,
        "b_is": "absent",
    }
    assert by["group 1", "betas"]["b"] == [0.9, 0.999] and by["group 1", "betas"]["a_is"]
    every = json.loads(diff(capsys, a, b, "--json", "--all")[1])["differences"]
    assert len(every) == data["compared"] > len(data["differences"])
    assert {"section": "job", "field": "seed", "a": None, "b": None, "same": True} in every


def test_groups_with_other_names_are_compared_by_position_and_said_so(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def rename(job: Job) -> None:
        job.optimizer.param_groups[0]["name"] = "encoder"

    a = run(tmp_path, "a")
    b = run(tmp_path, "b", tweak=rename)
    code, out, _ = diff(capsys, a, b)
    assert code == 1 and "group 0 (body)" in out
    assert "param groups compared by position: A has body, head, B has encoder, head" in out


def test_the_job_records_its_set_up_once_at_start(tmp_path: Path) -> None:
    def lambdas(job: Job) -> None:
        def warmup(step: int) -> float:
            return min(1.0, (step + 1) / 3)

        job.scheduler = torch.optim.lr_scheduler.LambdaLR(job.optimizer, [warmup, warmup])
        job.seed = 11
        job.val_every = 3
        job.val_data = [(torch.zeros(4, 8), torch.zeros(4, 1))]
        job.train_data = [(torch.randn(8, 8), torch.randn(8, 1))] * 4  # no batch_size to read

    with RunReader(run(tmp_path, "a", tweak=lambdas, grad_accum=2)) as r:
        meta = r.meta()
    assert meta["optitui_version"] == __version__
    assert meta["seed"] == 11 and meta["val_every"] == 3 and meta["world_size"] == 1
    assert meta["batch_size"] == 8  # measured on the first batch, recorded once
    assert meta["scheduler_interval"] == "step"
    settings = meta["scheduler_settings"]
    assert (
        settings["lr_lambdas"]
        == ["test_the_job_records_its_set_up_once_at_start.<locals>.lambdas.<locals>.warmup"] * 2
    )
    assert settings["base_lrs"] == [0.01, 0.01] and "last_epoch" not in settings
    with RunReader(run(tmp_path, "b", batch_size=16)) as r:
        assert r.meta()["batch_size"] == 16  # the DataLoader's


def test_watch_records_the_scheduler_settings_and_the_script(tmp_path: Path) -> None:
    import optitui

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, 5, 0.3)
    with optitui.watch(opt, model, scheduler=sched, run_dir=tmp_path / "w") as probe:
        loss = model(torch.ones(2, 4)).sum()
        loss.backward()
        opt.step()
        probe.step(loss)
    with RunReader(tmp_path / "w") as r:
        meta = r.meta()
    assert meta["scheduler_settings"]["step_size"] == 5
    assert meta["scheduler_settings"]["gamma"] == 0.3
    assert isinstance(meta["script_args"], list) and "script_sha256" in meta


def test_a_script_run_records_its_arguments_and_a_digest_of_its_text(
    tmp_path: Path, tiny_script: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from optitui.trainer.entry.headless import RunOptions, prepare

    def once(name: str, args: tuple[str, ...]) -> Path:
        opts = RunOptions(
            tiny_script, device="cpu", run_dir=tmp_path / name, max_steps=3, script_args=args
        )
        trainer = prepare(opts)
        trainer.run()
        return trainer.paths.root

    a = once("a", ("--width", "64"))
    tiny_script.write_text(tiny_script.read_text() + "\n# tuned\n")
    b = once("b", ("--width", "128"))
    assert differing(capsys, a, b) == {
        ("script", "arguments"),
        ("script", "contents (sha256)"),
    }
    out = diff(capsys, a, b)[1]
    assert ("arguments", "…", "64", "…", "128") in {tuple(x.split()) for x in out.splitlines()}
    assert json.loads(diff(capsys, a, b, "--json")[1])["differences"][0] == {
        "section": "script",
        "field": "arguments",
        "a": ["--width", "64"],
        "b": ["--width", "128"],
    }


def _unrecord(run_dir: Path, *keys: str) -> None:
    with sqlite3.connect(run_dir / "store.sqlite") as db:
        db.executemany("DELETE FROM meta WHERE key = ?", [(k,) for k in keys])


def test_a_run_of_an_older_optitui_is_read_and_what_it_lacks_said(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = run(tmp_path, "a")
    b = run(tmp_path, "b")
    _unrecord(b, "optitui_version", "seed", "batch_size")
    set_meta(a, "optitui_version", "0.0.9")
    code, out, _ = diff(capsys, a, b)
    assert code == 1
    rows = {tuple(x.split()) for x in out.splitlines()}
    assert ("optitui", "version", "0.0.9", "not", "recorded") in rows
    assert ("seed", "none", "not", "recorded") in rows
    assert "note: B's store does not hold: optitui version, batch size, seed" in out
    head = out.splitlines()[:2]
    assert head[0].endswith("(written by optitui 0.0.9)")
    assert head[1].endswith("(written by optitui of an unrecorded version)")


@pytest.mark.parametrize(
    ("bad", "said"),
    [
        (lambda root: root / "missing", "missing: not a run directory"),
        (corrupt_run, "corrupt: the run store cannot be read"),
        (
            lambda root: from_a_newer_optitui(run(root, "newer")),
            "written by optitui 9.1.0: run store schema version 2; this optitui",
        ),
        (lambda root: "gpu1:runs/x", "`optitui diff` reads runs on this host"),
    ],
    ids=["missing", "corrupt", "other-schema", "remote"],
)
def test_diff_refuses_a_run_it_cannot_read_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: Any, said: str
) -> None:
    a = run(tmp_path, "a")
    target = bad(tmp_path)
    for pair in ((a, target), (target, a)):
        code, out, err = diff(capsys, *pair)
        assert code == 2 and out == "" and len(err.splitlines()) == 1, err
        assert err.startswith("optitui: ") and said in err


def test_a_run_of_another_store_schema_is_named_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a = run(tmp_path, "a")
    newer = from_a_newer_optitui(run(tmp_path, "newer"))
    said = (
        f"optitui: {newer}: written by optitui 9.1.0: run store schema version 2; "
        "this optitui reads version 1\n"
    )
    for argv in (["diff", str(a), str(newer)], ["export", str(a), str(newer)]):
        assert main(argv) == 2
        assert capsys.readouterr().err == said, argv


def test_values_are_shown_with_the_digits_and_words_that_tell_them_apart() -> None:
    from optitui.cli.diff import pair

    assert pair("lr", 3e-4, 3.0001e-4) == ("0.0003", "0.00030001")
    assert pair("lr", 4.9975012493753125e-06, 1.4992503748125938e-06) == (
        "4.998e-06",
        "1.499e-06",
    )
    same = ["--dataset=gen", "--device=cpu", "--compile=False", "--n_layer=1"]
    assert pair("arguments", [*same, "--n_embd=32"], [*same, "--n_embd=48"]) == (
        "… --n_embd=32",
        "… --n_embd=48",
    )
    assert pair("arguments", ["--a", "1", "--b"], ["--a", "1"]) == ("… --b", "… (none)")
    left, right = pair("path", "/data/" + "x" * 100 + "/a.py", "/data/" + "x" * 100 + "/b.py")
    assert len(left) == 59 and left.startswith("/data/x") and left.endswith("/a.py")
    assert right.endswith("/b.py") and "…" in right
