"""Everything a step depends on, copied to host memory and put back exactly.

Used for checkpoints (saved to disk) and for the range test (kept in memory):
parameters and buffers, optimizer and scheduler state, lr multipliers and
controls, RNG states (python, numpy, torch CPU and every CUDA device), step
and epoch, and the data position. Copies always land on the host, so a
snapshot never doubles accelerator memory.

The data position is the epoch, the number of batches taken from it, and the
RNG states from just before the epoch's iterator was created (global RNGs and
the generators a DataLoader or iterable keeps). Replaying it recreates the
iterator under those states and skips the batches already taken, so a
shuffled order comes out the same.
"""

from __future__ import annotations

import random
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import torch

from optitui.store.records import Event
from optitui.trainer.core import inplace

if TYPE_CHECKING:
    from optitui.trainer.core.training import Training


def to_host(obj: Any) -> Any:
    """A deep copy with every tensor on the CPU (cloned: training goes on mutating them)."""
    if isinstance(obj, int | float | str | bool | None):
        return obj
    if isinstance(obj, torch.Tensor):
        t = obj.detach()
        return t.to("cpu", copy=True) if t.device.type != "cpu" else t.clone()
    if isinstance(obj, dict):
        return {k: to_host(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [to_host(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(to_host(v) for v in obj)
    return obj


# -- random number generators ------------------------------------------------------
def data_generators(data: Any) -> list[torch.Generator]:
    """The torch.Generators a DataLoader (its sampler, batch sampler) or iterable keeps."""
    found: list[torch.Generator] = []
    holders = [data]
    for name in ("sampler", "batch_sampler"):
        holder = getattr(data, name, None)
        if holder is not None:
            holders.append(holder)
            inner = getattr(holder, "sampler", None)
            if inner is not None:
                holders.append(inner)
    for h in holders:
        values: Iterable[Any] = vars(h).values() if hasattr(h, "__dict__") else ()
        for v in values:
            if isinstance(v, torch.Generator) and all(v is not g for g in found):
                found.append(v)
    return found


def rng_state(generators: list[torch.Generator], *, saved: bool = True) -> dict[str, Any]:
    """Python, numpy, torch CPU, every initialised CUDA device, and ``generators``.

    ``saved=False`` keeps Python's state as the tuple ``random.getstate()`` returns (a
    state taken every epoch and saved only with a snapshot: :func:`as_saved` makes it
    the saved form then, not each time)."""
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal) if saved else internal, gauss],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],  # type: ignore[no-untyped-call]
        "generators": [g.get_state() for g in generators],
    }
    try:
        kind, keys, pos, has_gauss, cached = _numpy_state()
        state["numpy"] = [kind, torch.from_numpy(keys.astype("int64")), pos, has_gauss, cached]
    except ImportError:
        state["numpy"] = None
    return state


#: numpy's global RNG state as last read in full, and the generator's raw words then
_numpy_seen: tuple[bytes, Any] | None = None
#: numpy's MT19937 state in memory: 624 uint32 words and an int position
_MT_BYTES = 624 * 4 + 4


def _numpy_state() -> Any:
    """``np.random.get_state()``, read again only when it may have changed.

    A full read takes about 100 us (numpy builds the 624-word key one element at a
    time), and every epoch takes one. The generator's raw words are a 2.5 KB copy
    (through numpy's ctypes interface); when they are those of the last full read,
    nothing was drawn since, and the state is the same unless that read held a cached
    Gaussian (drawing it changes no word): then it is read in full again."""
    global _numpy_seen
    import numpy as np

    raw = _numpy_raw(np)
    seen = _numpy_seen
    if raw is not None and seen is not None and seen[0] == raw and not seen[1][3]:
        return seen[1]
    got = np.random.get_state()  # after the raw words: a draw between makes them differ
    _numpy_seen = None if raw is None else (raw, got)
    return got


def _numpy_raw(np: Any) -> bytes | None:
    """The global generator's raw state, or None when it is not numpy's usual MT19937."""
    get = getattr(np.random, "get_bit_generator", None)  # numpy 1.25 and later
    if get is None:
        return None
    gen = get()
    if type(gen).__name__ != "MT19937":
        return None
    import ctypes

    return ctypes.string_at(gen.ctypes.state_address, _MT_BYTES)


def as_saved(state: dict[str, Any] | None) -> dict[str, Any] | None:
    """``state`` in the form :func:`rng_state` saves (Python's state as a list)."""
    if state is None or isinstance(state["python"][1], list):
        return state
    version, internal, gauss = state["python"]
    return {**state, "python": [version, list(internal), gauss]}


def set_rng_state(state: dict[str, Any], generators: list[torch.Generator]) -> str | None:
    """Put RNG states back; returns what could not be (CUDA devices this process does
    not see: a resume on fewer GPUs restores the ones that match)."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    torch.set_rng_state(state["torch"])
    note = None
    saved_cuda = state["cuda"]
    if saved_cuda and torch.cuda.is_available():
        here = torch.cuda.device_count()
        for i, s in enumerate(saved_cuda[:here]):
            torch.cuda.set_rng_state(s, i)
        if len(saved_cuda) != here:
            note = (
                f"CUDA RNG states saved for {len(saved_cuda)} device(s), this process sees "
                f"{here}: restored device(s) 0..{min(here, len(saved_cuda)) - 1} only"
            )
    for g, s in zip(generators, state["generators"], strict=False):
        g.set_state(s)
    if state.get("numpy") is not None:
        import numpy as np

        global _numpy_seen
        _numpy_seen = None  # the Gaussian cache may differ with the same words
        kind, keys, pos, has_gauss, cached = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype("uint32"), pos, has_gauss, cached))
    return note


def gather_rng(trainer: Training) -> dict[int, dict[str, Any]] | None:
    """Under torch.distributed, every rank's own RNG states by rank (a collective: every
    rank calls it at the same step); None without distributed."""
    if trainer.dist is None:
        return None
    from optitui.trainer.core import dist

    own = rng_state(data_generators(trainer.job.train_data))
    return dict(enumerate(dist.all_gather_objects(own, trainer.device)))


def _own_rng(trainer: Training, snap: dict[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """This rank's RNG states in ``snap`` (None when it has none for this rank), and a
    note naming the ranks that keep their own. A rank's own snapshot (range test,
    rollback) has its states; a checkpoint saved by every rank at one step (``save``,
    before a restore) has every rank's; one saved by rank 0 alone has rank 0's only,
    and the other ranks' generators are left as they are rather than given rank 0's."""
    rank, world = (0, 1) if trainer.dist is None else (trainer.dist.rank, trainer.dist.world)
    by_rank = snap.get("rng_by_rank")
    saved: dict[int, Any] = {0: snap["rng"]} if by_rank is None else by_rank
    missing = [r for r in range(world) if r not in saved]
    note = None
    if missing and rank == 0:
        note = (
            f"RNG states saved for rank(s) {', '.join(map(str, sorted(saved)))} only: "
            f"rank(s) {', '.join(map(str, missing))} keep their own"
        )
    return saved.get(rank), note


# -- the whole training state ----------------------------------------------------------
def _same(obj: Any) -> Any:
    return obj


def capture(trainer: Training, *, data: bool = True, copy: bool = True) -> dict[str, Any]:
    """A host-memory snapshot of everything the next steps depend on.

    ``copy=False`` keeps the live tensors themselves, for a snapshot that is written to
    a file at once (``torch.save`` copies one tensor at a time): no second copy of the
    whole state in host memory."""
    host = to_host if copy else _same
    gens = data_generators(trainer.job.train_data)
    lr = trainer.lr
    look = trainer.lookahead
    snap: dict[str, Any] = {
        "model": host(trainer.model.state_dict()),
        "optimizer": host(trainer.optimizer.state_dict()),
        "optimizer_class": type(trainer.optimizer).__name__,
        "scheduler": None if lr.scheduler is None else host(lr.scheduler.state_dict()),
        "lr_control": lr.state(),
        "requires_grad": [p.requires_grad for p in trainer.model.parameters()],
        "clip": trainer.clip,
        "scaler": trainer.amp.state_dict(),  # fp16's loss scale (None otherwise)
        "lookahead": None
        if look is None
        else {
            "k": look.k,
            "alpha": look.alpha,
            "count": look.count,
            "slow": host(look.slow),
        },
        "step": trainer.step,
        "epoch": trainer.epoch,
        "rng": rng_state(gens),  # fresh host copies already
    }
    if trainer.dist is not None:  # whose they are: restored on this rank only
        snap["rng_by_rank"] = {trainer.dist.rank: snap["rng"]}
    if data:
        snap["data"] = {
            "batch": trainer.epoch_batches if trainer.data_iter is not None else 0,
            "started": trainer.data_iter is not None,
            "epoch_rng": as_saved(trainer.epoch_rng),
        }
    return snap


def restore(trainer: Training, snap: dict[str, Any], *, data: bool = True) -> None:
    """Put a snapshot back. ``data=False`` leaves the main loop's iterator as it is."""
    from optitui.trainer.core.lookahead import Lookahead

    trainer.model.load_state_dict(snap["model"])  # copies into the live tensors
    for p, rg in zip(trainer.model.parameters(), snap["requires_grad"], strict=True):
        p.requires_grad_(rg)
    # into the live state and tensor hyperparameters: never two copies on the device
    inplace.load_optimizer(trainer.optimizer, snap["optimizer"])
    lr = trainer.lr
    if lr.scheduler is not None and snap["scheduler"] is not None:
        lr.scheduler.load_state_dict(snap["scheduler"])
    lr.load_state(snap["lr_control"])  # and the lrs as loaded are optitui's
    trainer.clip = snap["clip"]
    trainer.amp.load_state_dict(snap.get("scaler"))
    look = snap["lookahead"]
    if look is None:
        trainer.lookahead = None
    else:
        old = trainer.lookahead
        params = [p for g in trainer.optimizer.param_groups for p in g["params"]]
        current = None
        if old is not None and len(old.params) == len(params):
            same = all(a is b for a, b in zip(old.params, params, strict=True))
            current = old.slow if same else None
        slow = inplace.load_slow_weights(current, look["slow"], params)
        la = Lookahead(trainer.optimizer, look["k"], look["alpha"], slow=slow)
        la.count = look["count"]
        trainer.lookahead = la
    trainer.step = snap["step"]
    trainer.epoch = snap["epoch"]
    gens = data_generators(trainer.job.train_data)
    if data:
        pos = snap["data"]
        trainer.epoch_rng = pos["epoch_rng"]
        trainer.data_iter = None
        trainer.epoch_batches = 0
        if pos["started"] and pos["epoch_rng"] is not None:
            set_rng_state(pos["epoch_rng"], gens)
            if trainer.dist is not None:
                from optitui.trainer.core.dist import set_epoch

                set_epoch(trainer.job.train_data, trainer.epoch)
            trainer.data_iter = iter(trainer.job.train_data)
            for _ in range(pos["batch"]):  # replay the order; these batches are skipped
                next(trainer.data_iter)
            trainer.epoch_batches = pos["batch"]
    rng, note = _own_rng(trainer, snap)
    cuda_note = None if rng is None else set_rng_state(rng, gens)
    for n in (note, cuda_note):
        if n is not None:
            trainer.recorder.put(Event(trainer.step, "warning", n))
