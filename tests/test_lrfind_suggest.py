"""Suggestion rules on synthetic curves with known answers, and against fastai's code."""

from __future__ import annotations

import math
import random
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optitui.lrfind.schedule import SweepConfig, schedule, smooth
from optitui.lrfind.suggest import (
    MIN_POINTS,
    RULES,
    Suggestion,
    gradient,
    minimum,
    slide,
    steep,
    suggest_all,
    trust_note,
    valley,
)

NO_SKIP = {"skip_start": 0, "skip_end": 0}

# An exp sweep 1e-6 -> 10 in 71 points: log10(lr) steps by exactly 0.1 (up to rounding).
LRS = schedule(SweepConfig(start_lr=1e-6, end_lr=10.0, num_iter=71), 1.0)


def sigmoid_curve(center: float = -2.5, width: float = 0.4) -> list[float]:
    """A loss falling from 3 to 1 in log lr, steepest exactly at log10(lr) = center."""
    return [2.0 - math.tanh((math.log10(lr) - center) / width) for lr in LRS]


def same_bits(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


# --- numpy.gradient, bit for bit ---------------------------------------------------------

floats = st.floats(allow_nan=False, allow_infinity=False, width=64)


@settings(max_examples=300)
@given(st.lists(floats, min_size=2, max_size=30), st.data())
def test_gradient_equals_numpy_bit_for_bit(values: list[float], data: st.DataObject) -> None:
    with np.errstate(all="ignore"):
        expected = np.gradient(np.array(values)).tolist()
    assert all(same_bits(a, b) for a, b in zip(gradient(values), expected, strict=True))
    coords = data.draw(st.lists(floats, min_size=len(values), max_size=len(values)))
    coords.sort()
    with np.errstate(all="ignore"):
        expected = np.gradient(np.array(values), np.array(coords)).tolist()
    assert all(same_bits(a, b) for a, b in zip(gradient(values, coords), expected, strict=True))


def test_gradient_equals_numpy_on_sweep_shaped_inputs() -> None:
    rng = random.Random(0)
    for _ in range(200):
        n = rng.randint(2, 200)
        losses = [rng.uniform(0.0, 3.0) for _ in range(n)]
        lrs = schedule(SweepConfig(start_lr=10 ** rng.uniform(-8, -3), num_iter=max(n, 2)), 1.0)
        logs = [math.log(x) for x in lrs[:n]]
        assert gradient(losses) == np.gradient(np.array(losses)).tolist()
        assert gradient(losses, logs) == np.gradient(np.array(losses), np.array(logs)).tolist()
    uniform = [0.0, 0.5, 1.0, 1.5]  # equal spacings take numpy's scalar path
    assert (
        gradient([1.0, 4.0, 2.0, 8.0], uniform)
        == np.gradient([1.0, 4.0, 2.0, 8.0], uniform).tolist()
    )
    with pytest.raises(ValueError):
        gradient([1.0])


# --- reference implementations (fastai, torch-lr-finder), transcribed for comparison -------


def fastai_valley_idx(losses: list[float]) -> int:
    n = len(losses)
    max_start, max_end = 0, 0
    lds = [1] * n
    for i in range(1, n):
        for j in range(0, i):
            if (losses[i] < losses[j]) and (lds[i] < lds[j] + 1):
                lds[i] = lds[j] + 1
            if lds[max_end] < lds[i]:
                max_end = i
                max_start = max_end - lds[max_end]
    sections = (max_end - max_start) / 3
    return max_start + int(sections) + int(sections / 2)


def fastai_slide_lr(lrs: list[float], losses: list[float], lr_diff: int = 15) -> float:
    loss_grad = np.gradient(np.array(losses))
    r_idx = -1
    l_idx = r_idx - lr_diff
    local_min_lr = lrs[l_idx]
    while (l_idx >= -len(losses)) and (abs(loss_grad[r_idx] - loss_grad[l_idx]) > 0.005):
        local_min_lr = lrs[l_idx]
        r_idx -= 1
        l_idx -= 1
    return float(local_min_lr)


def noisy_curve(seed: int, sigma: float) -> tuple[list[float], list[float]]:
    rng = random.Random(seed)
    raw = [x + rng.gauss(0.0, sigma) for x in sigmoid_curve()]
    return raw, smooth(raw)


curves = st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=80)


@settings(max_examples=200)
@given(curves)
def test_valley_equals_fastais_quadratic_dp(losses: list[float]) -> None:
    lrs = LRS[: len(losses)] + [10.0 + i for i in range(len(losses) - len(LRS))]
    got = valley(lrs, losses, **NO_SKIP)
    if len(losses) < 2 or got.lr is None:
        return
    assert got.index == max(0, fastai_valley_idx(losses))


@settings(max_examples=200)
@given(st.lists(st.floats(0.0, 10.0), min_size=16, max_size=71))
def test_slide_equals_fastais_slide(losses: list[float]) -> None:
    lrs = LRS[: len(losses)]
    got = slide(lrs, losses, **NO_SKIP)
    assert got.lr == fastai_slide_lr(lrs, losses)


# --- synthetic curves with known answers ---------------------------------------------------


@pytest.mark.parametrize("against", ["log_lr", "index"])
def test_steep_finds_the_analytic_steepest_point(against: str) -> None:
    losses = sigmoid_curve(center=-2.5)
    s = steep(LRS, losses, skip_start=10, skip_end=5, against=against)  # type: ignore[arg-type]
    assert s.index == 35  # log10(LRS[35]) == -2.5
    assert s.lr == LRS[35]
    assert s.note == ""


def test_steep_against_log_lr_on_a_linear_sweep() -> None:
    # On a linear sweep the slope per index is the slope per decade divided by lr, which
    # pulls the index rule towards small lrs; the log-lr gradient finds the analytic point.
    lrs = schedule(SweepConfig(start_lr=1e-3, end_lr=1.0, num_iter=200, mode="linear"), 1.0)
    losses = [2.0 - math.tanh((math.log10(lr) + 1.0) / 0.3) for lr in lrs]
    s = steep(lrs, losses, **NO_SKIP)
    assert s.lr is not None and abs(math.log10(s.lr) + 1.0) < 0.01
    by_index = steep(lrs, losses, against="index", **NO_SKIP)
    assert by_index.lr is not None and math.log10(by_index.lr) < -1.05


def test_valley_on_a_known_longest_decreasing_run() -> None:
    # 5 flat points, 12 falling points (indices 5..16), then a rise.
    losses = [3.0] * 5 + [3.0 - 0.1 * k for k in range(1, 13)] + [2.0 + 0.2 * k for k in range(8)]
    lrs = LRS[: len(losses)]
    s = valley(lrs, losses, **NO_SKIP)
    # lds peaks at 13 (a flat 3.0 then the 12 falling points) at index 16: max_start = 3,
    # sections = 13 / 3, index = 3 + 4 + 2.
    assert (s.index, s.lr) == (9, lrs[9])
    assert fastai_valley_idx(losses) == 9


def test_minimum_is_a_tenth_of_the_lr_at_the_lowest_loss() -> None:
    losses = [abs(i - 40) * 0.05 + 1.0 for i in range(len(LRS))]
    s = minimum(LRS, losses)
    assert (s.index, s.lr, s.note) == (40, LRS[40] / 10, "")


def test_slide_on_a_straight_line_stops_at_once() -> None:
    losses = [5.0 - 0.01 * i for i in range(len(LRS))]  # constant gradient
    s = slide(LRS, losses, skip_start=10, skip_end=5)
    usable = len(LRS) - 15
    assert s.index == 10 + usable - 1 - 15
    assert s.lr == LRS[s.index]


def test_slide_moves_left_past_a_steep_tail() -> None:
    # Flat, then a quadratic rise over the last 20 points: the rule walks left until both
    # ends of its 15-point window have the flat part's gradient.
    losses = [1.0] * 50 + [1.0 + 0.01 * k * k for k in range(1, 21)]
    s = slide(LRS[:70], losses, **NO_SKIP)
    assert s.lr == fastai_slide_lr(LRS[:70], losses)
    assert s.index is not None and s.index < 50 - 15


def test_flat_curve() -> None:
    flat = [2.0] * len(LRS)
    out = suggest_all(LRS, flat)
    assert [s.rule for s in out] == list(RULES)
    by = {s.rule: s for s in out}
    assert by["steep"].lr is None and by["steep"].note == "no decreasing run"
    assert by["valley"].lr is None and by["valley"].note == "no decreasing run"
    assert by["minimum"].lr is not None and by["minimum"].note.startswith("no decrease")
    assert by["slide"].lr is not None and by["slide"].note.startswith("no decrease")
    assert not any(s.trusted for s in out)


def test_too_short_curves() -> None:
    losses = sigmoid_curve()[28:50]  # 22 points, 7 after skipping 10 + 5
    for s in suggest_all(LRS[28:50], losses):
        assert "curve too short (7 points after skipping)" in s.note or "for slide" in s.note
        assert not s.trusted
    for n in (0, 1):
        out = suggest_all(LRS[:n], sigmoid_curve()[:n], SweepConfig(skip_start=0, skip_end=0))
        assert {s.rule: s.lr is None for s in out} == {
            "steep": True,
            "valley": True,
            "minimum": n == 0,
            "slide": True,
        }
        assert all(s.note.startswith("curve too short") for s in out if s.lr is None)


def test_nan_ending_curve_is_cut_at_the_first_nan() -> None:
    losses = sigmoid_curve()
    tail = [*losses[:60], math.nan, math.nan, 7.0]
    out = suggest_all(LRS[:63], tail, SweepConfig(skip_end=0))
    assert out == suggest_all(LRS[:60], losses[:60], SweepConfig(skip_end=0))
    assert out[0].index == 35


def test_inf_in_the_middle_cuts_the_curve_there() -> None:
    losses = sigmoid_curve(center=-1.0)  # steepest at index 50
    losses[45] = math.inf
    for s in suggest_all(LRS, losses):
        assert s.index is None or s.index < 45
    s = steep(LRS, losses)
    assert s.index == 44 and "edge" in s.note  # still falling faster when the curve stops


def test_steepest_point_past_the_usable_range_is_noted() -> None:
    losses = [3.0 - math.exp(math.log10(lr)) for lr in LRS]  # falls faster and faster
    s = steep(LRS, losses)
    assert s.index == len(LRS) - 5 - 1
    assert s.note == "steepest point at the edge of the usable range"


def test_minimum_at_the_end_is_noted() -> None:
    s = minimum(LRS, [3.0 - 0.01 * i for i in range(len(LRS))])
    assert s.index == len(LRS) - 6 and "may not have turned up" in s.note


def test_non_increasing_lrs_give_no_log_slope() -> None:
    lrs = list(reversed(LRS))
    s = steep(lrs, sigmoid_curve())
    assert s.lr is None and "not increasing" in s.note
    assert steep(lrs, sigmoid_curve(), against="index").lr is not None


@pytest.mark.parametrize(("sigma", "trusted"), [(0.0, True), (0.03, True), (1.0, False)])
def test_noise_note(sigma: float, trusted: bool) -> None:
    raw, smoothed = noisy_curve(seed=0, sigma=sigma)
    out = suggest_all(LRS, smoothed, raw_losses=raw)
    if trusted:
        assert [s.note for s in out if s.rule != "minimum"] == ["", "", ""]
    else:
        assert all(s.note.startswith("too noisy") for s in out), [s.note for s in out]
        assert not any(s.trusted for s in out)


def test_trust_note_thresholds() -> None:
    assert (
        trust_note([1.0] * (MIN_POINTS - 1))
        == f"curve too short ({MIN_POINTS - 1} points after skipping)"
    )
    assert trust_note([2.0 - 0.1 * i for i in range(MIN_POINTS)]) == ""
    zigzag = [2.0 + (0.3 if i % 2 else 0.0) - 0.01 * i for i in range(20)]
    assert trust_note(zigzag).startswith("too noisy")


def test_suggest_all_uses_the_config_skips_and_fixed_order() -> None:
    losses = sigmoid_curve()
    out = suggest_all(LRS, losses, SweepConfig(skip_start=40, skip_end=0))
    assert [s.rule for s in out] == ["steep", "valley", "minimum", "slide"]
    assert all(s.index is None or s.index >= 40 for s in out)
    assert out[0] == steep(LRS, losses, skip_start=40, skip_end=0)


# --- properties: never raise; an lr is always one of the input lrs -----------------------

any_float = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300)
@given(
    st.lists(st.tuples(any_float, any_float), max_size=60),
    st.integers(0, 12),
    st.integers(0, 8),
    st.sampled_from(["log_lr", "index"]),
)
def test_no_rule_raises_and_answers_are_input_lrs(
    points: list[tuple[float, float]], skip_start: int, skip_end: int, against: str
) -> None:
    lrs = [p[0] for p in points]
    losses = [p[1] for p in points]
    cfg = SweepConfig(skip_start=skip_start, skip_end=skip_end)
    out = suggest_all(lrs, losses, cfg, against=against)  # type: ignore[arg-type]
    out.append(suggest_all(lrs, losses, cfg, raw_losses=losses)[0])
    for s in out:
        assert isinstance(s, Suggestion)
        if s.lr is None:
            assert s.index is None and s.note
            continue
        assert s.index is not None and skip_start <= s.index < len(lrs) - skip_end
        assert math.isfinite(s.lr) and s.lr > 0
        assert s.lr == (lrs[s.index] / 10 if s.rule == "minimum" else lrs[s.index])
        assert math.isfinite(losses[s.index])


@settings(max_examples=200)
@given(st.lists(st.floats(0.0, 1e3), min_size=0, max_size=71))
def test_sweep_shaped_curves_always_get_an_lr_from_minimum_and_slide(losses: list[float]) -> None:
    out = {s.rule: s for s in suggest_all(LRS[: len(losses)], losses)}
    usable = max(0, len(losses) - 15)
    assert (out["minimum"].lr is not None) == (usable >= 1)
    assert (out["slide"].lr is not None) == (usable >= 2)
