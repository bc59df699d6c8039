"""The race on a 2D test function: its paths are a plain torch.optim loop's, bit for bit;
its candidates are checked by the rules of set and swap-optimizer; --json prints them."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from jobs import command, make_trainer, tiny_job

from optitui.cli import main
from optitui.store.candidates import parse_candidate
from optitui.store.commands import SWAPPABLE, CommandError
from optitui.surface.functions import DEFAULT_SET, SURFACES
from optitui.surface.result import SurfaceRace
from optitui.trainer.control import commands as control
from optitui.trainer.control.surface_race import SurfaceRaceError, prepare, race

# The functions as the literature writes them, typed here again on purpose: the race's
# paths must be these functions' paths.
FORMULAS: dict[str, Any] = {
    "rosenbrock": lambda x, y: (1 - x) ** 2 + 100 * (y - x**2) ** 2,
    "beale": lambda x, y: (
        (1.5 - x + x * y) ** 2 + (2.25 - x + x * y**2) ** 2 + (2.625 - x + x * y**3) ** 2
    ),
    "saddle": lambda x, y: x**2 - y**2 + y**4 / 4,
    "rastrigin": lambda x, y: (
        20 + (x**2 - 10 * torch.cos(2 * math.pi * x)) + (y**2 - 10 * torch.cos(2 * math.pi * y))
    ),
}


def direct(
    surface: str, cls: str, kwargs: dict[str, Any], steps: int, start: Any = None
) -> list[tuple[float, float]]:
    """The loop a person writes: torch.optim on one 2-element float64 tensor."""
    x0 = SURFACES[surface].start if start is None else start
    p = torch.tensor(x0, dtype=torch.float64, requires_grad=True)
    opt = getattr(torch.optim, cls)([p], **kwargs)
    path = [(float(p[0].detach()), float(p[1].detach()))]
    for _ in range(steps):
        opt.zero_grad()
        FORMULAS[surface](p[0], p[1]).backward()
        opt.step()
        if not torch.isfinite(p).all():
            break
        path.append((float(p[0].detach()), float(p[1].detach())))
    return path


#: each default racer as the direct loop spells it
DEFAULT_DIRECT = {
    "SGD": ("SGD", {}),
    "Momentum": ("SGD", {"momentum": 0.9}),
    "Nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "RMSprop": ("RMSprop", {}),
    "Adam": ("Adam", {}),
    "AdamW": ("AdamW", {}),
    "RAdam": ("RAdam", {}),
    "NAdam": ("NAdam", {}),
    "Adagrad": ("Adagrad", {}),
}


def default_entries() -> list[tuple[str, Any]]:
    return [(name, parse_candidate(text)) for name, text in DEFAULT_SET]


@pytest.mark.parametrize("surface", list(SURFACES))
def test_default_paths_are_a_direct_torch_optim_loop_bit_for_bit(surface: str) -> None:
    s = SURFACES[surface]
    got = race(s, default_entries(), steps=40)
    assert [r.name for r in got.racers] == list(DEFAULT_DIRECT)
    for r in got.racers:
        cls, kw = DEFAULT_DIRECT[r.name]
        want = direct(surface, cls, {"lr": s.lrs[cls], **kw}, 40)
        assert r.optimizer == cls
        assert r.path == tuple(want), r.name  # exact float equality, every step
        assert len(r.path) == 41 and r.diverged_at is None


@pytest.mark.parametrize(
    ("text", "base", "cls", "kwargs"),
    [
        ("lr*2", "SGD", "SGD", {"lr": 2 * SURFACES["beale"].lrs["SGD"]}),
        ("momentum=0.8", "SGD", "SGD", {"lr": 3e-3, "momentum": 0.8}),
        (
            "lr=0.001,momentum=0.9,nesterov=true",
            "SGD",
            "SGD",
            {"lr": 1e-3, "momentum": 0.9, "nesterov": True},
        ),
        ("optimizer=Adam,betas=0.9,0.99", "SGD", "Adam", {"lr": 0.1, "betas": (0.9, 0.99)}),
        ("optimizer=Adam,lr=0.05,amsgrad=true", "SGD", "Adam", {"lr": 0.05, "amsgrad": True}),
        (
            "optimizer=RMSprop,momentum=0.5,centered=true",
            "SGD",
            "RMSprop",
            {"lr": 0.1, "momentum": 0.5, "centered": True},
        ),
        ("betas=0.5,0.9", "Adam", "Adam", {"lr": 0.1, "betas": (0.5, 0.9)}),
        ("lr*0.5", "Adam", "Adam", {"lr": 0.05}),
        ("weight_decay=0.1", "AdamW", "AdamW", {"lr": 0.1, "weight_decay": 0.1}),
        ("optimizer=Rprop", "SGD", "Rprop", {"lr": 0.01}),
    ],
)
def test_every_form_reads_on_a_surface_as_documented(
    text: str, base: str, cls: str, kwargs: dict[str, Any]
) -> None:
    """lr*F and FIELD=VALUE change the base at the surface's lr for it; optimizer=CLASS
    starts from CLASS's defaults at the surface's lr for it."""
    got = race(SURFACES["beale"], [("c", parse_candidate(text))], steps=40, base=base)
    assert got.racers[0].path == tuple(direct("beale", cls, kwargs, 40))


def test_start_point_and_every_swappable_class() -> None:
    s = SURFACES["saddle"]
    entries = [(n, parse_candidate(f"optimizer={n}")) for n in SWAPPABLE]
    got = race(s, entries, steps=15, start=(0.5, -0.25))
    for r in got.racers:
        assert r.path[0] == (0.5, -0.25)
        want = direct("saddle", r.optimizer, {"lr": s.lrs[r.optimizer]}, 15, (0.5, -0.25))
        assert r.path == tuple(want), r.name


def test_a_diverging_candidate_is_marked_and_the_others_run_on() -> None:
    s = SURFACES["rosenbrock"]
    entries = [("fast", parse_candidate("lr*100")), ("Adam", parse_candidate("optimizer=Adam"))]
    got = race(s, entries, steps=50)
    fast, adam = got.racers
    want = direct("rosenbrock", "SGD", {"lr": s.lrs["SGD"] * 100}, 50)
    assert fast.diverged_at == len(want) and len(want) < 50  # the step that left the floats
    assert fast.path == tuple(want)
    assert adam.diverged_at is None and len(adam.path) == 51
    last = got.standings(50)
    assert [got.racers[st.index].name for st in last] == ["Adam", "fast"]
    assert last[1].diverged and math.isinf(last[1].distance)
    early = got.standings(0)  # before it left, it stands where it was
    assert not any(st.diverged for st in early)
    js = json.loads(json.dumps(got.to_json(), allow_nan=False))
    assert js["candidates"][0]["diverged_at"] == fast.diverged_at


def test_one_bad_candidate_refuses_the_race_before_anything_runs() -> None:
    s = SURFACES["beale"]
    for text, reason in (
        ("momentum=-1", "momentum: got -1; allowed: a finite number >= 0"),
        ("nesterov=true", "nesterov needs momentum > 0 and dampening = 0"),
        ("betas=0.9,0.99", "one of this SGD group's fields"),
        ("optimizer=Adam,momentum=0.9", "Adam has no field(s) ['momentum']"),
        ("optimizer=Adam,betas=0.9", "betas: got 0.9; allowed: 2 numbers"),
        ("optimizer=Adam,betas=0.9,1.5", "betas: got (0.9, 1.5)"),
        ("optimizer=Adam,foreach=true", "not editable"),
        ("optimizer=SGD,nesterov=true", "nesterov needs momentum > 0"),
        ("optimizer=RMSprop,alpha=-1", "alpha: got -1"),
        ("lr*1e300", "lr: got 3e+297; allowed"),
    ):
        entries = [("ok", parse_candidate("lr*2")), ("bad", parse_candidate(text))]
        with pytest.raises(SurfaceRaceError) as exc:
            prepare(s, entries)
        assert str(exc.value).startswith(f"candidate {text!r}: ")
        assert reason in str(exc.value), str(exc.value)


def test_the_race_refuses_with_the_words_the_live_commands_use(tmp_path: Path) -> None:
    """Not a second validator: a value `set` or `swap-optimizer` rejects on a live SGD job
    is refused by the race for the same reason, in the same words."""
    trainer = make_trainer(tmp_path, tiny_job("SGD", {"lr": 0.01}))
    cases = [
        ("set", {"values": {"momentum": -1}}, "momentum=-1"),
        ("set", {"values": {"nesterov": True}}, "nesterov=true"),
        ("set", {"values": {"weight_decay": -0.5}}, "weight_decay=-0.5"),
        (
            "swap-optimizer",
            {"name": "Adam", "values": {"betas": (0.9, 1.5)}},
            "optimizer=Adam,betas=0.9,1.5",
        ),
        ("swap-optimizer", {"name": "Adam", "values": {"betas": 0.9}}, "optimizer=Adam,betas=0.9"),
        (
            "swap-optimizer",
            {"name": "Adagrad", "values": {"momentum": 0.5}},
            "optimizer=Adagrad,momentum=0.5",
        ),
        (
            "swap-optimizer",
            {"name": "RMSprop", "values": {"alpha": -1}},
            "optimizer=RMSprop,alpha=-1",
        ),
    ]
    for kind, args, text in cases:
        with pytest.raises(control.Rejection) as live:
            control.apply(trainer, command(kind, **args))
        reason = str(live.value).removeprefix("group body: ")
        with pytest.raises(SurfaceRaceError) as raced:
            prepare(SURFACES["saddle"], [("c", parse_candidate(text))])
        assert str(raced.value) == f"candidate {text!r}: {reason}"
    with pytest.raises(CommandError) as live_scale:
        command("scale-lr", factor=0.0)
    with pytest.raises(CommandError) as raced_scale:
        parse_candidate("lr*0")
    assert str(raced_scale.value).endswith(str(live_scale.value))


def test_every_surface_has_an_lr_for_every_swappable_class_and_its_minimum() -> None:
    for s in SURFACES.values():
        assert set(s.lrs) == set(SWAPPABLE)
        for m in s.minima:
            assert s.distance(*m) == 0.0
            assert s.value(*m) == pytest.approx(s.low, abs=1e-12)
        x0, x1, y0, y1 = s.view
        assert x0 <= s.start[0] <= x1 and y0 <= s.start[1] <= y1
        assert all(x0 <= mx <= x1 and y0 <= my <= y1 for mx, my in s.minima)


def test_json_out_is_the_race(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["race", "--surface", "saddle", "--steps", "12", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["surface"] == "saddle" and out["steps"] == 12 and out["dtype"] == "float64"
    assert [c["name"] for c in out["candidates"]] == list(DEFAULT_DIRECT)
    s = SURFACES["saddle"]
    for c in out["candidates"]:
        cls, kw = DEFAULT_DIRECT[c["name"]]
        assert [tuple(p) for p in c["path"]] == direct("saddle", cls, {"lr": s.lrs[cls], **kw}, 12)
        assert c["distance"] == [s.distance(x, y) for x, y in c["path"]]
        assert c["changed"]["lr"] == s.lrs[cls] and c["settings"]["lr"] == s.lrs[cls]
        assert len(c["f"]) == 13
    assert out["candidates"][2]["changed"] == {"lr": 0.01, "momentum": 0.9, "nesterov": True}
    back = SurfaceRace.from_json(out)
    assert back.to_json() == out


def test_named_candidates_race_after_the_base(capsys: pytest.CaptureFixture[str]) -> None:
    args = ["race", "--surface", "beale", "--steps", "5", "--start", "1,1", "--json"]
    assert main([*args, "--base", "Adam", "lr*2", "optimizer=SGD,momentum=0.9"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [c["name"] for c in out["candidates"]] == ["base", "lr*2", "optimizer=SGD,momentum=0.9"]
    assert [c["optimizer"] for c in out["candidates"]] == ["Adam", "Adam", "SGD"]
    assert out["start"] == [1.0, 1.0]
    assert out["candidates"][1]["changed"]["lr"] == 2 * SURFACES["beale"].lrs["Adam"]


@pytest.mark.parametrize(
    ("argv", "reason"),
    [
        (["momentum=-1"], "candidate 'momentum=-1': momentum: got -1"),
        (["lr*2", "optimizer=Nope"], "candidate 'optimizer=Nope': name: 'Nope' is not one of"),
        (["lr*2", "lr*2"], "given twice"),
        (["--steps", "20001"], "--steps: at most 20000"),
    ],
)
def test_a_bad_race_is_one_line_and_exit_2(
    argv: list[str], reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["race", "--surface", "beale", "--json", *argv]) == 2
    out, errs = capsys.readouterr()
    assert out == ""
    assert errs.count("\n") == 1 and errs.startswith("optitui: ") and reason in errs, errs


def test_without_a_terminal_the_screen_is_refused_with_a_hint(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["race", "--surface", "saddle", "--steps", "3"]) == 2  # pytest has no tty
    assert "add --json" in capsys.readouterr().err


@pytest.mark.parametrize("start", ["1", "1,2,3", "a,b", "nan,1", "1,inf"])
def test_a_bad_start_is_refused_by_the_parser(start: str) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["race", "--surface", "saddle", "--start", start, "--json"])
    assert exc.value.code == 2
