"""The sweep of an LR range test: its configuration, the lr at each step, smoothing, stopping.

Pure Python (``math`` only) so that the viewer, the CLI and the trainer can all share it
without loading torch or numpy.

The schedule and the un-corrected smoothing reproduce torch-lr-finder bit for bit (same
float expressions in the same order), so a test configured like torch-lr-finder records
the same lrs and the same smoothed losses. Our defaults differ where it helps: the
smoothed loss is bias-corrected (as fastai and Lightning do), which removes the lag of
torch-lr-finder's first-value-seeded EMA.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

__all__ = [
    "MAX_NUM_ITER",
    "Smoother",
    "StopRule",
    "SweepConfig",
    "factor",
    "factors",
    "multiplier",
    "schedule",
    "should_stop",
    "smooth",
]

MAX_NUM_ITER = 100_000

Mode = Literal["exp", "linear"]


def _finite(value: object) -> bool:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:  # an int past a float's range (10**400) is not a finite float
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass(frozen=True)
class SweepConfig:
    """How to sweep: from ``start_lr`` to ``end_lr`` in ``num_iter`` steps, and when to stop.

    ``start_lr=None`` starts from the current lr (of the reference group when several
    groups are swept together). ``smooth_f`` is the EMA weight of the newest loss.
    ``diverge_th`` stops the test once the smoothed loss exceeds that multiple of the best
    smoothed loss. ``skip_start``/``skip_end`` are the points the suggestion rules drop at
    either end of the curve. The config is validated on construction.
    """

    start_lr: float | None = None
    end_lr: float = 10.0
    num_iter: int = 100
    mode: Mode = "exp"
    smooth_f: float = 0.05
    bias_correction: bool = True
    diverge_th: float = 5.0
    skip_start: int = 10
    skip_end: int = 5

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first bad field, its value and what is allowed."""

        def bad(name: str, allowed: str) -> ValueError:
            return ValueError(f"{name}={getattr(self, name)!r}: {allowed}")

        if not _finite(self.end_lr) or self.end_lr <= 0:
            raise bad("end_lr", "must be a finite number > 0")
        if self.start_lr is not None and (
            not _finite(self.start_lr) or not 0 < self.start_lr < self.end_lr
        ):
            raise bad("start_lr", f"must be None or a finite number > 0 and < end_lr={self.end_lr}")
        if self.start_lr is not None and math.isinf(self.end_lr / self.start_lr):
            raise bad("start_lr", "is too small: end_lr / start_lr overflows")
        n = self.num_iter
        if not isinstance(n, int) or isinstance(n, bool) or not 2 <= n <= MAX_NUM_ITER:
            raise bad("num_iter", f"must be an integer from 2 to {MAX_NUM_ITER}")
        if self.mode not in ("exp", "linear"):
            raise bad("mode", "must be 'exp' or 'linear'")
        if not _finite(self.smooth_f) or not 0 < self.smooth_f <= 1:
            raise bad("smooth_f", "must be a finite number > 0 and <= 1 (1 means no smoothing)")
        if not isinstance(self.bias_correction, bool):
            raise bad("bias_correction", "must be true or false")
        if not _finite(self.diverge_th) or self.diverge_th <= 1:
            raise bad("diverge_th", "must be a finite number > 1")
        for name in ("skip_start", "skip_end"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise bad(name, "must be an integer >= 0")

    def to_dict(self) -> dict[str, Any]:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SweepConfig:
        """Build from a dict (missing fields take their defaults; unknown ones are refused)."""
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown SweepConfig field(s): {', '.join(unknown)}")
        clean: dict[str, Any] = {}
        for key, value in data.items():
            # JSON has one number type: accept 1 for a float field, not 1.0 for an int one.
            if key in ("start_lr", "end_lr", "smooth_f", "diverge_th") and (
                isinstance(value, int) and not isinstance(value, bool) and abs(value) <= 2**1000
            ):
                value = float(value)  # (a larger int is left to the checks to refuse)
            clean[key] = value
        return cls(**clean)

    def to_json(self) -> str:
        """A compact JSON object (keys sorted) that :meth:`from_json` reads back."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> SweepConfig:
        """Parse and validate a JSON object; ValueError on bad JSON or bad fields."""
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"SweepConfig JSON is not valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ValueError(f"SweepConfig JSON must be an object, got {type(data).__name__}")
        return cls.from_dict(data)


def factor(config: SweepConfig, it: int, base_lr: float) -> float:
    """The lr at iteration ``it`` (0 <= it < num_iter) of a sweep.

    The sweep starts at ``config.start_lr``, or at ``base_lr`` (the group's current lr)
    when ``start_lr`` is None, and ends at ``end_lr``. With r = it / (num_iter - 1):
    exp gives ``start * (end / start) ** r`` and linear ``start + r * (end - start)`` --
    torch-lr-finder's expressions, so the lrs are equal to the last bit.
    """
    start = config.start_lr if config.start_lr is not None else base_lr
    if not _finite(start) or not 0 < start < config.end_lr or math.isinf(config.end_lr / start):
        raise ValueError(f"start lr {start!r}: must be finite, > 0 and < end_lr={config.end_lr}")
    if not isinstance(it, int) or not 0 <= it < config.num_iter:
        raise ValueError(f"it={it!r}: must be an integer in [0, {config.num_iter})")
    r = it / (config.num_iter - 1)
    if config.mode == "exp":
        growth: float = (config.end_lr / start) ** r
        return start * growth
    return start + r * (config.end_lr - start)


def schedule(config: SweepConfig, base_lr: float) -> list[float]:
    """Every lr of the sweep, ``[factor(config, it, base_lr) for it in range(num_iter)]``."""
    return [factor(config, it, base_lr) for it in range(config.num_iter)]


def multiplier(config: SweepConfig, it: int, ref_lr: float) -> float:
    """The common factor at iteration ``it``: the reference lr of the sweep over ``ref_lr``.

    ``ref_lr`` is the reference group's lr before the test. Multiplying every group's lr by
    this factor keeps the ratios between groups. Applying a suggested lr later is the
    same idea: the factor is ``suggested_lr / ref_lr``.
    """
    return factor(config, it, ref_lr) / ref_lr


def factors(config: SweepConfig, it: int, group_lrs: Sequence[float], ref: int = 0) -> list[float]:
    """Each group's lr at iteration ``it`` when all groups are swept together.

    The sweep is defined on a *reference* lr: group ``ref`` goes from ``start_lr`` (or its
    own current lr) to ``end_lr`` exactly as :func:`factor` gives, and every other group
    gets ``lr_g = group_lrs[g] * ref_lr(it) / group_lrs[ref]``, so the ratios between
    groups hold at every step. When ``start_lr`` is None this is
    ``group_lr_g * ref_lr(it) / ref_start``; when it is set, the reference group starts at
    ``start_lr`` and the others start at the same ratio to it as before. The curve's
    x-axis is the reference lr. The reference group's own entry is the exact
    :func:`factor` value (not recomputed through the ratio) so that a one-group sweep
    equals a single sweep bit for bit.
    """
    if not 0 <= ref < len(group_lrs):
        raise ValueError(f"ref={ref!r}: must index one of the {len(group_lrs)} groups")
    for g, lr in enumerate(group_lrs):
        if not _finite(lr) or lr <= 0:
            raise ValueError(f"group_lrs[{g}]={lr!r}: must be a finite number > 0")
    ref_now = float(group_lrs[ref])
    ref_lr = factor(config, it, ref_now)
    m = ref_lr / ref_now
    return [ref_lr if g == ref else float(lr) * m for g, lr in enumerate(group_lrs)]


class Smoother:
    """Exponential moving average of the loss, with or without bias correction.

    Without bias correction it is torch-lr-finder's smoothing, bit for bit: the first
    value is the raw loss, then ``s = smooth_f * loss + (1 - smooth_f) * s_prev``.
    With bias correction (the default) it is fastai's: ``avg = beta * avg + (1 - beta) *
    loss`` from ``avg = 0`` with ``beta = 1 - smooth_f``, and ``s = avg / (1 - beta**n)``
    after n losses -- an unbiased average from the first step, without the lag the
    first-value seed carries through the early, fast-falling part of the curve.
    A non-finite loss makes every later value non-finite, which :func:`should_stop` reports.
    """

    def __init__(self, smooth_f: float = 0.05, bias_correction: bool = True) -> None:
        if not _finite(smooth_f) or not 0 < smooth_f <= 1:
            raise ValueError(f"smooth_f={smooth_f!r}: must be a finite number > 0 and <= 1")
        self.smooth_f = float(smooth_f)
        self.bias_correction = bias_correction
        self.reset()

    @classmethod
    def from_config(cls, config: SweepConfig) -> Smoother:
        """The smoother a sweep with this config uses."""
        return cls(config.smooth_f, config.bias_correction)

    def reset(self) -> None:
        """Forget every loss seen so far."""
        self.count = 0
        self._avg = 0.0
        self.value: float | None = None

    def update(self, loss: float) -> float:
        """Feed one raw loss; return the smoothed loss after it."""
        loss = float(loss)
        self.count += 1
        if self.bias_correction:
            beta = 1.0 - self.smooth_f
            self._avg = beta * self._avg + (1.0 - beta) * loss
            value = self._avg / (1.0 - beta**self.count)
        elif self.value is None:
            value = loss
        else:
            value = self.smooth_f * loss + (1 - self.smooth_f) * self.value
        self.value = value
        return value


def smooth(
    losses: Sequence[float], smooth_f: float = 0.05, bias_correction: bool = True
) -> list[float]:
    """The smoothed curve of a whole list of raw losses (a fresh :class:`Smoother`)."""
    s = Smoother(smooth_f, bias_correction)
    return [s.update(x) for x in losses]


def should_stop(smoothed: float, best: float, diverge_th: float) -> str | None:
    """Why the sweep must stop now, or None to go on.

    Stops when the smoothed loss is not finite, or exceeds ``diverge_th`` times ``best``,
    the lowest smoothed loss so far *including this one* (as torch-lr-finder updates its
    best before comparing). The ratio test only means something for a positive best: with
    a best <= 0 (a loss that can go negative) only a non-finite loss stops the sweep.
    """
    if not math.isfinite(smoothed):
        return f"the smoothed loss is not finite ({smoothed})"
    if math.isfinite(best) and best > 0 and smoothed > diverge_th * best:
        return f"diverged: smoothed loss {smoothed:.4g} > {diverge_th:g} x best {best:.4g}"
    return None


def noise_level(values: Sequence[float]) -> tuple[float, float]:
    """(median, noise) of some losses: the noise is the median absolute deviation in units
    of a normal noise's sigma, robust to the heavy tails of a converged run's losses."""
    finite = sorted(v for v in values if math.isfinite(v))
    if not finite:
        return math.nan, 0.0
    mid = _median(finite)
    return mid, 1.4826 * _median(sorted(abs(v - mid) for v in finite))


def _median(ordered: Sequence[float]) -> float:
    n = len(ordered)
    return ordered[n // 2] if n % 2 else (ordered[n // 2 - 1] + ordered[n // 2]) / 2


class StopRule:
    """When a sweep must stop, fed each iteration's raw and smoothed loss.

    Configured like torch-lr-finder (``bias_correction=False``) it is exactly
    :func:`should_stop`: the smoothed loss above ``diverge_th`` times the best smoothed
    loss so far. Otherwise, as a mid-run test needs, it stops only when the loss really
    blows up, not when a converged run's small, heavy-tailed loss wobbles (at 5e-4 a
    single batch at 1e-2 lifts the smoothed loss five times above its best). It reads
    the loss on a log scale, where such noise is even: the loss now is the median of the
    last :data:`WINDOW` log losses, its lowest so far is the reference, and the noise is
    measured from the step-to-step changes of every log loss so far. The sweep stops
    when the loss now is over ``diverge_th`` times the reference *and* more than
    :data:`NOISE` noise widths (of such a median) above it, for :data:`PATIENCE`
    iterations in a row; not in the first :data:`WARMUP` iterations. A non-finite loss
    stops at once; a loss that is not positive falls back to the exact rule.
    """

    WARMUP = 10
    WINDOW = 9
    NOISE = 8.0
    PATIENCE = 2

    def __init__(self, config: SweepConfig) -> None:
        self.exact = not config.bias_correction
        self.diverge_th = config.diverge_th
        self.best = math.inf  # the lowest smoothed loss (the exact rule's reference)
        self._low = math.inf  # the lowest median log loss
        self._recent: list[float] = []
        self._steps: list[float] = []  # |change| of the log loss, iteration to iteration
        self._n = 0
        self._over = 0

    def update(self, raw: float, smoothed: float) -> str | None:
        """Why the sweep stops after this iteration, or None to go on."""
        self.best = min(self.best, smoothed)
        self._n += 1
        if not (math.isfinite(smoothed) and math.isfinite(raw)):
            return f"the loss is not finite ({raw if not math.isfinite(raw) else smoothed})"
        if self.exact or raw <= 0:
            self.exact = True  # no log scale for a loss that is not positive
            return should_stop(smoothed, self.best, self.diverge_th)
        x = math.log(raw)
        if self._recent:
            self._steps.append(abs(x - self._recent[-1]))
        self._recent = [*self._recent[-(self.WINDOW - 1) :], x]
        if self._n <= self.WARMUP:
            return None
        now = _median(sorted(self._recent))
        self._low = min(self._low, now)
        # a step-to-step change of white noise is sqrt(2) sigmas wide: median |d| = 0.954
        # sigma; the median of WINDOW values is 1.2533 sigma / sqrt(WINDOW) wide
        sigma = _median(sorted(self._steps)) / 0.954
        width = 1.2533 * sigma / math.sqrt(self.WINDOW)
        rise = max(math.log(self.diverge_th), self.NOISE * width)
        self._over = self._over + 1 if now > self._low + rise else 0
        if self._over < self.PATIENCE:
            return None
        return (
            f"diverged: the loss ({math.exp(now):.4g}, median of the last {self.WINDOW}) "
            f"is {math.exp(now - self._low):.3g} x its lowest {math.exp(self._low):.4g}, "
            "beyond its noise"
        )
