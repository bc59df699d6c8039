"""The race's candidate grammar (torch-free): every form, and the refusals, with the rules
of the commands each form reads like."""

from __future__ import annotations

import re

import pytest

from optitui.store.candidates import (
    MAX_CANDIDATES,
    Candidate,
    parse_candidate,
    parse_candidates,
    parse_race,
)
from optitui.store.commands import CommandError, validate
from optitui.store.words import parse_send


@pytest.mark.parametrize(
    ("text", "form", "factor", "optimizer", "values"),
    [
        ("lr*2", "scale", 2.0, None, {}),
        ("lr*0.5", "scale", 0.5, None, {}),
        ("lr*1e-1", "scale", 0.1, None, {}),
        ("momentum=0.8", "set", None, None, {"momentum": 0.8}),
        ("lr=3e-4,betas=0.9,0.95", "set", None, None, {"lr": 3e-4, "betas": (0.9, 0.95)}),
        ("betas=(0.9,0.95),eps=1e-6", "set", None, None, {"betas": (0.9, 0.95), "eps": 1e-6}),
        ("nesterov=true,momentum=0.9", "set", None, None, {"nesterov": True, "momentum": 0.9}),
        ("optimizer=Adam", "swap", None, "Adam", {}),
        (
            "optimizer=AdamW,lr=1e-3,betas=0.9,0.99,weight_decay=0.1",
            "swap",
            None,
            "AdamW",
            {"lr": 1e-3, "betas": (0.9, 0.99), "weight_decay": 0.1},
        ),
        ("momentum=0.9,optimizer=SGD", "swap", None, "SGD", {"momentum": 0.9}),
        (" lr*3 ", "scale", 3.0, None, {}),
    ],
)
def test_every_form_parses(
    text: str, form: str, factor: float | None, optimizer: str | None, values: dict[str, object]
) -> None:
    c = parse_candidate(text)
    assert (c.form, c.factor, c.optimizer, dict(c.values)) == (form, factor, optimizer, values)
    assert c.text == text.strip()
    assert Candidate.from_json(c.to_json()) == c


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("lr*0", "factor: must be > 0"),  # the rule of scale-lr
        ("lr*-2", "factor: must be > 0"),
        ("lr*inf", "factor: 'inf' is not a number"),
        ("lr*1_0", "factor: '1_0' is not a number"),
        ("lr*x", "factor: 'x' is not a number"),
        ("lr=nan", "lr: 'nan' is not a number"),  # the rules of set
        ("lr=1e400", "lr: '1e400' is not a number"),
        ("momentum=x", "momentum: 'x' is not a number"),
        ("momentum", "expected FIELD=VALUE"),
        ("=3", "expected FIELD=VALUE"),
        ("", "a candidate is lr*F"),
        ("1bad=3", "'1bad' is not a field name"),
        ("momentum=0.9,momentum=0.5", "momentum is given twice"),
        ("optimizer=Bogus", "'Bogus' is not one of SGD"),  # the rules of swap-optimizer
        ("optimizer=torch.optim.SGD", "is not one of"),
        ("optimizer=Adam,optimizer=SGD", "optimizer is given twice"),
        ("betas=" + ",".join(["0.1"] * 9), "expected 1 to 8 numbers"),
    ],
)
def test_bad_candidates_are_refused_with_the_reason(text: str, reason: str) -> None:
    with pytest.raises(CommandError, match=re.escape(reason)) as exc:
        parse_candidate(text)
    assert str(exc.value).startswith(f"candidate {text!r}: ")
    assert "\n" not in str(exc.value)


def _send_refusal(command: str, words: list[str]) -> str:
    """What ``optitui send RUN COMMAND WORDS`` says before anything is sent."""
    with pytest.raises(ValueError) as exc:
        validate(*parse_send(command, words, None))
    return str(exc.value)


def test_the_forms_refuse_exactly_what_their_commands_refuse() -> None:
    """The shape rules are the commands' own: whatever `send ... set`, `scale-lr` or
    `swap-optimizer` refuse before sending, the candidate refuses in the same words."""
    for word in ("lr=inf", "lr=1_0", "x" * 70 + "=1", "betas=" + ",".join(["0.1"] * 9)):
        with pytest.raises(CommandError) as raced:
            parse_candidate(word)
        assert str(raced.value).endswith(_send_refusal("set", [word])), word
    with pytest.raises(CommandError) as raced:
        parse_candidate("optimizer=Lion,momentum=0.9")
    assert str(raced.value).endswith(_send_refusal("swap-optimizer", ["Lion", "momentum=0.9"]))
    for factor in ("0", "-1"):
        with pytest.raises(CommandError) as raced:
            parse_candidate(f"lr*{factor}")
        assert str(raced.value).endswith(_send_refusal("scale-lr", [factor]))


def test_a_race_refuses_as_a_whole() -> None:
    assert [c.text for c in parse_candidates(["lr*2", "momentum=0.8"])] == ["lr*2", "momentum=0.8"]
    with pytest.raises(CommandError, match="candidate 'momentum=-x'"):
        parse_candidates(["lr*2", "momentum=-x", "lr*3"])
    with pytest.raises(CommandError, match="given twice"):
        parse_candidates(["lr*2", "lr*2"])
    with pytest.raises(CommandError, match="at most"):
        parse_candidates([f"lr*{i + 1}" for i in range(MAX_CANDIDATES + 1)])
    with pytest.raises(CommandError, match="always runs first"):
        parse_candidates(["current", "lr*2"])


def test_the_live_race_words() -> None:
    r = parse_race(["steps=50", "val=true", "lr*0.5", "lr*2", "momentum=0.8"], group="head")
    assert (r.steps, r.val, r.group) == (50, True, "head")
    assert [c.form for c in r.candidates] == ["scale", "scale", "set"]
    r = parse_race(["optimizer=Adam,lr=3e-4"], group="1")
    assert (r.steps, r.val, r.group, r.candidates[0].optimizer) == (None, None, 1, "Adam")
    for words, reason in (
        ([], "usage: race"),
        (["steps=50"], "usage: race"),
        (["steps=0", "lr*2"], "steps: expected 1.."),
        (["steps=x", "lr*2"], "steps: 'x' is not a whole number"),
        (["steps=1.5", "lr*2"], "steps: '1.5' is not a whole number"),
        (["steps=1_0", "lr*2"], "steps: '1_0' is not a whole number"),
        (["val=maybe", "lr*2"], "val: expected true or false"),
        (["val=1", "lr*2"], "val: expected true or false"),
    ):
        with pytest.raises(CommandError, match=re.escape(reason)):
            parse_race(words)
    with pytest.raises(CommandError, match="group"):
        parse_race(["lr*2"], group="x" * 101)


def test_a_candidate_from_json_must_match_its_text() -> None:
    good = parse_candidate("momentum=0.8").to_json()
    assert Candidate.from_json(good).values == {"momentum": 0.8}
    for bad in (
        {**good, "values": {"momentum": 0.1}},
        {**good, "form": "swap"},
        {"form": "set"},
        "momentum=0.8",
        {**parse_candidate("optimizer=Adam").to_json(), "optimizer": "os.system"},
    ):
        with pytest.raises(CommandError):
            Candidate.from_json(bad)
