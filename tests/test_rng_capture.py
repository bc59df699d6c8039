"""numpy's global RNG state, taken every epoch: read in full only when it may have changed,
and always equal to ``np.random.get_state()``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from optitui.trainer.core import state

OPS: dict[str, Callable[[], Any]] = {
    "nothing": lambda: None,
    "uniform": lambda: np.random.rand(),
    "three uniforms": lambda: np.random.rand(3),
    "gaussian": lambda: np.random.standard_normal(),  # a cached one every other time
    "seed": lambda: np.random.seed(7),
    "python and torch": lambda: (__import__("random").random(), __import__("torch").rand(1)),
}


def same(a: Any, b: Any) -> bool:
    return a[0] == b[0] and (a[1] == b[1]).all() and a[2:] == b[2:]


@given(ops=st.lists(st.sampled_from(sorted(OPS)), max_size=12))
@settings(max_examples=60, deadline=None)
def test_the_state_taken_is_numpys_whatever_was_drawn_between(ops: list[str]) -> None:
    np.random.seed(0)
    for op in ["nothing", *ops]:
        OPS[op]()
        assert same(state._numpy_state(), np.random.get_state()), op


def test_a_state_set_with_the_same_words_but_a_cached_gaussian_is_read_again() -> None:
    np.random.seed(1)
    before = state._numpy_state()
    assert not before[3]
    kind, keys, pos, _, _ = before
    state.set_rng_state(
        {
            **state.rng_state([]),
            "numpy": [kind, torch.from_numpy(keys.astype("int64")), pos, 1, 0.5],
        },
        [],
    )
    assert state._numpy_state()[3:] == (1, 0.5) == np.random.get_state()[3:]


def test_nothing_drawn_since_the_last_read_reads_nothing_in_full(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The full read costs about 100 us; a loop that never draws from numpy pays it once."""
    full = np.random.get_state
    calls: list[int] = []
    monkeypatch.setattr(np.random, "get_state", lambda: calls.append(1) or full())
    np.random.seed(2)
    first = [state.rng_state([])["numpy"] for _ in range(5)]
    assert len(calls) == 1
    assert all((f[1] == first[0][1]).all() and f[2:] == first[0][2:] for f in first)
    np.random.rand()
    state.rng_state([])
    assert len(calls) == 2
