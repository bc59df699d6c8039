"""What 5 tensor scalars per step add to ``probe.step``, on a busy machine.

``python benchmarks/metrics_blocks.py [--pairs N] [--block S] [--control] [--floor]``

One probe run of the near-empty step (section 7's loop): blocks of S steps (default 64,
one flush each) with and without the 5 scalars, in turn (ABBA), each pair's difference
per step. Short blocks, many pairs and the median leave little for a machine whose
speed drifts from minute to minute to weigh on; the 95% interval of the median is a
bootstrap over the pairs. The added time is also given as a share of the step without
the scalars, which is what carries over to a machine of another speed. ``--control``
runs the same measure with the scalars in neither block: it should read 0. ``--floor``
also measures, in turn with optitui, the least any logger pays that keeps a step's
tensors until a batched read every 64 steps (held in a list, each read at that read,
nothing checked or written): what is left above it is optitui's own. It measures
the optitui of the checkout it sits in (put first on the path, as ``health_cost.py`` and
``overhead.py`` do), so a copy in another checkout measures that code.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from compare_metrics import FLOOR, PROBE, alternating


def median_interval(xs: list[float], draws: int = 1000) -> tuple[float, float]:
    """A bootstrap 95% interval of the median of ``xs``."""
    rng = random.Random(0)
    meds = sorted(statistics.median(rng.choices(xs, k=len(xs))) for _ in range(draws))
    return meds[int(0.025 * draws)], meds[int(0.975 * draws) - 1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", type=int, default=800, help="pairs of blocks measured")
    ap.add_argument("--block", type=int, default=64, help="steps per block")
    ap.add_argument("--control", action="store_true", help="no scalars in either block")
    ap.add_argument(
        "--floor",
        action="store_true",
        help="also measure the floor (the step's tensors held, read every 64 steps), in turn",
    )
    args = ap.parse_args()
    tools = [PROBE, FLOOR] if args.floor else [PROBE]
    got: dict[str, dict[str, list[float]]] = {t: {} for t in tools}
    with tempfile.TemporaryDirectory() as tmp:
        # with the floor: each measured in quarters, in turn, so that a drift of the
        # machine weighs on both alike
        quarters = 4 if args.floor else 1
        for q in range(quarters):
            for tool in tools if q % 2 == 0 else tools[::-1]:
                where = Path(tmp) / f"q{q}"  # a run directory per measure
                where.mkdir(exist_ok=True)
                part = alternating(tool, args.pairs // quarters, where, args.block, args.control)
                for key, xs in part.items():
                    got[tool].setdefault(key, []).extend(xs)
    what = "control (no scalars in either block)" if args.control else "5 tensor scalars"
    print(f"{what}: {args.pairs} pairs of {args.block}-step blocks, load {os.getloadavg()[0]:.2f}")
    for tool in tools:
        base = statistics.median(got[tool]["base"])
        if args.floor:
            print(f"{tool}:")
        print(f"  step without them: {base:.1f} us (median)")
        for key in ("wall", "cpu"):
            med = statistics.median(got[tool][key])
            lo, hi = median_interval(got[tool][key])
            share = f"{100 * med / base:+.2f}% [{100 * lo / base:+.2f}..{100 * hi / base:+.2f}]"
            print(
                f"  added {key:4s}: {med:+.2f} us/step [95% {lo:+.2f}..{hi:+.2f}] = {share} "
                "of the step"
            )


if __name__ == "__main__":
    main()
