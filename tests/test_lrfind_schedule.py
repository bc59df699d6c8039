"""The range test's sweep: config validation, the lr schedule, group ratios, smoothing, stopping."""

from __future__ import annotations

import json
import math
import random
import subprocess
import sys

import pytest
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st

from optitui.lrfind.schedule import (
    Smoother,
    SweepConfig,
    factor,
    factors,
    multiplier,
    schedule,
    should_stop,
    smooth,
)


def test_the_package_loads_no_torch_numpy_or_textual() -> None:
    code = (
        "import sys, optitui.lrfind, optitui.lrfind.schedule, optitui.lrfind.suggest\n"
        "print(' '.join(sorted(sys.modules)))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    mods = set(out.stdout.split())
    assert "optitui.lrfind.suggest" in mods  # the probe really imported the package
    for heavy in ("torch", "numpy", "textual"):
        assert not any(m == heavy or m.startswith(heavy + ".") for m in mods), heavy


# --- SweepConfig -------------------------------------------------------------------------


def test_defaults_are_torch_lr_finder_like_and_valid() -> None:
    cfg = SweepConfig()
    assert (cfg.start_lr, cfg.end_lr, cfg.num_iter, cfg.mode) == (None, 10.0, 100, "exp")
    assert (cfg.smooth_f, cfg.diverge_th, cfg.skip_start, cfg.skip_end) == (0.05, 5.0, 10, 5)
    assert cfg.bias_correction is True
    cfg.validate()


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("start_lr", 0.0, "> 0"),
        ("start_lr", -1e-3, "> 0"),
        ("start_lr", 10.0, "< end_lr"),
        ("start_lr", math.nan, "finite"),
        ("start_lr", 5e-324, "overflows"),
        ("end_lr", math.inf, "finite"),
        ("end_lr", 0.0, "> 0"),
        ("num_iter", 1, "from 2 to 100000"),
        ("num_iter", 100_001, "from 2 to 100000"),
        ("num_iter", 50.0, "integer"),
        ("num_iter", True, "integer"),
        ("mode", "cosine", "'exp' or 'linear'"),
        ("smooth_f", 0.0, "> 0 and <= 1"),
        ("smooth_f", 1.5, "> 0 and <= 1"),
        ("smooth_f", math.nan, "finite"),
        ("bias_correction", 1, "true or false"),
        ("diverge_th", 1.0, "> 1"),
        ("diverge_th", math.inf, "finite"),
        ("skip_start", -1, ">= 0"),
        ("skip_end", 2.0, "integer"),
    ],
)
def test_validation_names_the_field_the_value_and_what_is_allowed(
    field: str, value: object, allowed: str
) -> None:
    with pytest.raises(ValueError) as info:
        SweepConfig(**{field: value})  # type: ignore[arg-type]
    msg = str(info.value)
    assert msg.startswith(f"{field}={value!r}:"), msg
    assert allowed in msg


def test_json_round_trip_and_refusals() -> None:
    cfg = SweepConfig(start_lr=1e-6, end_lr=1.0, num_iter=50, mode="linear", smooth_f=0.1)
    assert SweepConfig.from_json(cfg.to_json()) == cfg
    assert json.loads(cfg.to_json())["mode"] == "linear"
    # JSON integers are accepted for float fields, and missing fields take defaults.
    assert SweepConfig.from_json('{"end_lr": 1, "num_iter": 20}') == SweepConfig(
        end_lr=1.0, num_iter=20
    )
    with pytest.raises(ValueError, match="unknown SweepConfig field"):
        SweepConfig.from_json('{"num_iters": 20}')
    with pytest.raises(ValueError, match="must be an object"):
        SweepConfig.from_json("[1, 2]")
    with pytest.raises(ValueError, match="not valid JSON"):
        SweepConfig.from_json("{")
    with pytest.raises(ValueError, match=r"num_iter=20\.0"):
        SweepConfig.from_json('{"num_iter": 20.0}')
    # an integer past a float's range is refused as out of range, never an OverflowError
    for key in ("start_lr", "end_lr", "smooth_f", "diverge_th"):
        with pytest.raises(ValueError, match=f"{key}=1111"):
            SweepConfig.from_json(f'{{"{key}": {"1" * 400}}}')


@given(
    start=st.one_of(st.none(), st.floats(1e-9, 1e-2)),
    n=st.integers(2, 100_000),
    mode=st.sampled_from(["exp", "linear"]),
    f=st.floats(1e-3, 1.0),
    bc=st.booleans(),
)
def test_json_round_trip_property(
    start: float | None, n: int, mode: str, f: float, bc: bool
) -> None:
    cfg = SweepConfig(start_lr=start, num_iter=n, mode=mode, smooth_f=f, bias_correction=bc)  # type: ignore[arg-type]
    assert SweepConfig.from_json(cfg.to_json()) == cfg


# --- the schedule ------------------------------------------------------------------------


def test_exp_and_linear_known_values() -> None:
    exp = SweepConfig(start_lr=1e-4, end_lr=1.0, num_iter=5)
    lrs = schedule(exp, base_lr=123.0)  # start_lr given: the current lr is ignored
    assert lrs[0] == 1e-4
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0], rel=1e-12)
    lin = SweepConfig(start_lr=1.0, end_lr=9.0, num_iter=5, mode="linear")
    assert schedule(lin, base_lr=0.5) == [1.0, 3.0, 5.0, 7.0, 9.0]


def test_start_none_sweeps_from_the_current_lr() -> None:
    cfg = SweepConfig(end_lr=1.0, num_iter=3)
    assert factor(cfg, 0, 0.01) == 0.01
    assert factor(cfg, 1, 0.01) == pytest.approx(0.1, rel=1e-12)
    assert factor(cfg, 2, 0.01) == pytest.approx(1.0, rel=1e-12)


def test_factor_is_torch_lr_finders_expression() -> None:
    # torch_lr_finder's ExponentialLR/LinearLR.get_lr written out (the parity test runs them).
    rng = random.Random(0)
    for _ in range(200):
        base, end, n = 10 ** rng.uniform(-8, -1), 10 ** rng.uniform(-0.5, 1), rng.randint(2, 500)
        it = rng.randrange(n)
        r = it / (n - 1)
        exp = SweepConfig(start_lr=base, end_lr=end, num_iter=n)
        lin = SweepConfig(start_lr=base, end_lr=end, num_iter=n, mode="linear")
        assert factor(exp, it, 1.0) == base * (end / base) ** r
        assert factor(lin, it, 1.0) == base + r * (end - base)


@pytest.mark.parametrize(
    ("it", "base"), [(-1, 0.1), (100, 0.1), (0, 0.0), (0, 10.0), (0, math.nan)]
)
def test_factor_refuses_bad_iterations_and_bases(it: int, base: float) -> None:
    with pytest.raises(ValueError):
        factor(SweepConfig(), it, base)


def test_groups_keep_their_ratios_through_the_sweep() -> None:
    cfg = SweepConfig(end_lr=1.0, num_iter=50)
    groups = [1e-3, 1e-4, 3e-3]
    for it in range(cfg.num_iter):
        lrs = factors(cfg, it, groups)
        assert lrs[0] == factor(cfg, it, groups[0])  # the reference sweeps exactly
        for g in range(3):
            assert lrs[g] / lrs[0] == pytest.approx(groups[g] / groups[0], rel=1e-14)
        m = multiplier(cfg, it, groups[0])
        assert lrs == pytest.approx([lr * m for lr in groups], rel=1e-15)
    last = factors(cfg, cfg.num_iter - 1, groups)
    assert last == pytest.approx([1.0, 0.1, 3.0], rel=1e-12)


def test_a_given_start_lr_moves_the_reference_group_there() -> None:
    cfg = SweepConfig(start_lr=1e-6, end_lr=1.0, num_iter=10)
    assert factors(cfg, 0, [1e-2, 1e-3], ref=1) == pytest.approx([1e-5, 1e-6], rel=1e-14)
    assert factors(cfg, 9, [1e-2, 1e-3], ref=1) == pytest.approx([10.0, 1.0], rel=1e-12)
    with pytest.raises(ValueError, match="ref=2"):
        factors(cfg, 0, [1e-2, 1e-3], ref=2)
    with pytest.raises(ValueError, match=r"group_lrs\[1\]"):
        factors(cfg, 0, [1e-2, 0.0])


# --- smoothing ---------------------------------------------------------------------------


def _torch_lr_finder_smoothing(losses: list[float], smooth_f: float) -> list[float]:
    """The history update of torch_lr_finder.LRFinder.range_test, line for line."""
    history: list[float] = []
    for iteration, raw in enumerate(losses):
        loss = raw
        if iteration != 0 and smooth_f > 0:
            loss = smooth_f * loss + (1 - smooth_f) * history[-1]
        history.append(loss)
    return history


@pytest.mark.parametrize("seed", range(5))
def test_uncorrected_smoother_is_torch_lr_finders(seed: int) -> None:
    rng = random.Random(seed)
    losses = [rng.uniform(0.1, 5.0) for _ in range(300)]
    f = rng.choice([0.05, 0.1, 0.3, 0.98])
    assert smooth(losses, f, bias_correction=False) == _torch_lr_finder_smoothing(losses, f)


def test_bias_corrected_smoother_is_the_normalised_weighted_mean() -> None:
    rng = random.Random(1)
    losses = [rng.uniform(0.0, 3.0) for _ in range(60)]
    beta = 0.9
    out = smooth(losses, 0.1)
    for n in range(1, len(losses) + 1):
        weights = [beta ** (n - 1 - k) for k in range(n)]
        expected = sum(w * x for w, x in zip(weights, losses[:n], strict=True)) / sum(weights)
        assert out[n - 1] == pytest.approx(expected, rel=1e-12)
    assert Smoother(0.1).update(2.5) == pytest.approx(2.5, rel=1e-15)  # unbiased from step 1


def test_bias_correction_removes_the_lag_of_a_falling_curve() -> None:
    falling = [10.0 - 0.5 * i for i in range(15)]
    corrected, seeded = smooth(falling), smooth(falling, bias_correction=False)
    # Both lag a falling curve; the first-value seed lags by more, at every step.
    for i in range(1, 15):
        assert falling[i] < corrected[i] < seeded[i]


def test_smooth_f_one_is_no_smoothing_and_nan_propagates() -> None:
    xs = [3.0, 1.0, 4.0, 1.5]
    assert smooth(xs, 1.0) == xs
    assert smooth(xs, 1.0, bias_correction=False) == xs
    s = Smoother()
    s.update(1.0)
    assert math.isnan(s.update(math.nan))
    assert math.isnan(s.update(1.0))
    s.reset()
    assert (s.count, s.value) == (0, None)
    assert s.update(2.0) == pytest.approx(2.0)
    assert Smoother.from_config(SweepConfig(smooth_f=0.2, bias_correction=False)).smooth_f == 0.2
    with pytest.raises(ValueError, match="smooth_f=0"):
        Smoother(0)


# --- stopping ----------------------------------------------------------------------------


def test_should_stop() -> None:
    assert should_stop(4.9, 1.0, 5.0) is None
    assert should_stop(5.0, 1.0, 5.0) is None  # strictly greater, as torch-lr-finder
    reason = should_stop(5.01, 1.0, 5.0)
    assert reason is not None and "diverged" in reason
    for bad in (math.nan, math.inf, -math.inf):
        reason = should_stop(bad, 1.0, 5.0)
        assert reason is not None and "not finite" in reason
    # A loss that can be negative: the ratio is meaningless, only non-finite stops.
    assert should_stop(100.0, -1.0, 5.0) is None
    assert should_stop(100.0, 0.0, 5.0) is None
