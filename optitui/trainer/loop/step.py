"""One optimizer step and what it records: the data, the step, validation, the flush.

The hot path keeps to cheap host-side work: losses stay on the device in a list and
are read with one ``tolist()`` every ``flush_every`` steps (on CUDA from a copy made
without blocking, one flush later: :mod:`~optitui.trainer.loop.device_read`), and
records go to a bounded queue.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from optitui.store.records import MetaUpdate, MetricBatch, StatusUpdate, ValRecord
from optitui.trainer.core import dist, lr_record, state
from optitui.trainer.core.device import batch_size, memory_allocated, memory_reserved, to_device
from optitui.trainer.core.health import Measured, health_columns, health_values
from optitui.trainer.core.job import JobError
from optitui.trainer.loop.steering import Steering
from optitui.trainer.loop.user_metrics import UserMetrics, Value, accumulate, read_with, scaled

_HALF = (torch.float16, torch.bfloat16)


class EndOfData(Exception):
    """max_epochs reached, or a one-shot iterable ran out."""


class Stepping(Steering):
    """The step the loop repeats: fetch a batch, forward and backward, step, record."""

    # -- data ----------------------------------------------------------------
    def next_batch(self) -> Any:
        while True:
            if self.data_iter is None:
                # the RNG states the epoch's order is drawn from: a checkpoint replays them
                gens = state.data_generators(self.job.train_data)
                # fresh host copies already; made the saved form only if a snapshot takes it
                self.epoch_rng = state.rng_state(gens, saved=False)
                if self.dist is not None:
                    dist.set_epoch(self.job.train_data, self.epoch)
                self.data_iter = iter(self.job.train_data)
                self.epoch_batches = 0
                self._measure_batch = True
            try:
                batch = next(self.data_iter)
            except StopIteration:
                self.data_iter = None
                if self.epoch_batches == 0:
                    if not self._ever_batched:  # nothing to train on: the Job is unusable
                        msg = "train_data yielded no batches: nothing to train on"
                        raise JobError(msg) from None
                    raise EndOfData("train_data yielded no batches") from None
                self._end_epoch()
                continue
            self.epoch_batches += 1
            self._ever_batched = True
            return batch

    def _end_epoch(self) -> None:
        self.epoch += 1
        job = self.job
        if job.val_data is not None and job.val_every is None:
            self._validate()
        if job.scheduler_interval == "epoch":
            self.lr.step_scheduler()
        if job.max_epochs is not None and self.epoch >= job.max_epochs:
            raise EndOfData(f"{job.max_epochs} epoch(s) done")

    # -- the step ------------------------------------------------------------
    def _loss(self, batch: Any) -> torch.Tensor:
        job = self.job
        if job.step_fn is not None:  # its other metrics, when any, wait in _got
            loss, self._got = self._split(job.step_fn(self.net, batch))
            return loss
        assert job.loss_fn is not None
        try:
            x, y = batch
        except (TypeError, ValueError):
            raise JobError(
                f"loss_fn needs (x, y) batches, got a {type(batch).__name__}; "
                "use step_fn(model, batch) for other batches"
            ) from None
        return job.loss_fn(self.net(x), y)

    def _split(self, out: Any) -> tuple[torch.Tensor, dict[str, Value] | None]:
        """step_fn's loss, and its other metrics when it returned a mapping."""
        if not isinstance(out, Mapping):
            return out, None
        if "loss" not in out:
            keys = ", ".join(repr(k) for k in list(out)[:8])
            raise JobError(f"step_fn returned a mapping without a 'loss' key (keys: {keys})")
        # a step's values go straight to the flush's buffer, checked there all at once;
        # those that are summed first (micro-batches, validation) are checked now
        if self._one_pass:
            return out["loss"], self.user.check_step(out, skip="loss")
        # a micro-batch's values belong to the step being taken; validation's are logged
        # at the step recorded last
        return out["loss"], self.user.check(out, "loss", self.step + 1 if self._micro else None)

    def _check_loss(self, loss: Any) -> None:
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            what = (
                type(loss).__name__
                if not isinstance(loss, torch.Tensor)
                else (f"a tensor of shape {tuple(loss.shape)}")
            )
            raise JobError(f"the loss must be a scalar tensor, got {what}")
        if not loss.requires_grad:
            raise JobError("the loss does not require grad (is the model frozen, or detached?)")
        self._checked_loss = True

    def gradients(self, next_batch: Callable[[], Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The job's own step up to ``optimizer.step()``: zero the grads, forward and backward
        over ``grad_accum`` micro-batches, clip. Returns the mean loss and the grad norm
        (when clipping), both still on the device. The range test uses it too."""
        self.optimizer.zero_grad(set_to_none=True)
        accum = self.job.grad_accum
        total: torch.Tensor | None = None
        metrics: dict[str, Value] | None = None
        for k in range(accum):
            batch = next_batch()
            if self._move:  # on the CPU, batches from a CPU loader are already in place
                batch = to_device(batch, self.device)
            if self._measure_batch:  # once an epoch, not every step
                self._batch_samples = batch_size(batch) * accum
                self._measure_batch = False
                if self._batch_unrecorded and self._batch_samples:  # data that did not say
                    self.recorder.put(MetaUpdate({"batch_size": self._batch_samples // accum}))
                    self._batch_unrecorded = False
            if accum == 1 and self.amp.dtype is None:  # no context to enter: the common case
                self._one_pass = True
                try:
                    loss = self._loss(batch)
                finally:
                    self._one_pass = False
                got, self._got = self._got, None
                if not self._checked_loss:
                    self._check_loss(loss)
                self.amp.backward(loss)
            else:
                loss, got = self._micro_batch(batch, k, accum)
            d = loss.detach()
            if d.dtype in _HALF:  # a sum of 8 bf16 losses drifts
                d = d.float()
            total = d if total is None else total + d
            if got:
                metrics = accumulate(metrics, got)
        assert total is not None
        # the step's metrics (the mean over micro-batches), taken by the step that records
        self._step_metrics = metrics if accum == 1 or not metrics else scaled(metrics, accum)
        norm = None
        if self.clip is not None:
            self.amp.unscale(self.optimizer)  # clip the true gradients, not the scaled ones
            params = [p for g in self.optimizer.param_groups for p in g["params"]]
            norm = torch.nn.utils.clip_grad_norm_(params, self.clip)
        return (total / accum if accum > 1 else total), norm

    def _micro_batch(
        self, batch: Any, k: int, accum: int
    ) -> tuple[torch.Tensor, dict[str, Value] | None]:
        """Forward and backward of micro-batch ``k`` under autocast; DDP all-reduces the
        gradients of the last micro-batch only."""
        with dist.no_sync(self.net, k < accum - 1):
            with self.amp.autocast():  # the forward pass and the loss; backward outside
                self._micro = True
                try:
                    loss = self._loss(batch)
                finally:
                    self._micro = False
                got, self._got = self._got, None
            if not self._checked_loss:
                self._check_loss(loss)
            self.amp.backward(loss / accum if accum > 1 else loss)  # scaled under fp16
        return loss, got

    def optimizer_step(self) -> torch.Tensor | float:
        """``optimizer.step()``, through the GradScaler under fp16; returns whether the
        scaler skipped it (a device tensor, read at flush; 0.0 when nothing can skip)."""
        return self.amp.step(self.optimizer)

    def _train_step(self) -> None:
        loss, norm = self.gradients(self.next_batch)
        if norm is not None:
            self._buf_gn.append(norm)
        lr, health, rows = self.lr, self.health, self._rows
        lr.notice_writes()  # a step_fn that writes the lr itself: its value is the base
        measuring = health.start(self.step, self.optimizer)  # on health steps: copies now
        skipped = self.optimizer_step()
        if measuring:
            self.take_health(len(rows))
        if self.lookahead is not None:
            self.lookahead.after_step()
        # record the lr this step used, before the scheduler moves it (the row of the
        # step before again when no lr moved since)
        lrs = lr_record.snapshot(self.optimizer.param_groups, rows[-1][2] if rows else None)
        if lr.scheduler is not None and self.job.scheduler_interval == "step":
            lr.step_scheduler()
        self.user.add_step(self._step_metrics)
        rows.append((loss, skipped, lrs, time.time(), self.epoch))

    def take_health(self, row: int) -> None:
        """Buffer the health measured in the step just taken (if it was) for ``row``."""
        measured = self.health.take()
        if measured is not None:
            self._buf_health.append((row, measured))

    def _after_step(self) -> None:
        """The step is done: count it, then save, validate and flush when each is due."""
        self.step += 1
        if self._budget:
            self._budget -= 1
        if self.step >= self._ckpt_at:
            self.save_checkpoint("periodic")
        val_every = self.job.val_every
        if val_every is not None and self.step % val_every == 0:
            self._validate()
        rows = self._rows
        if len(rows) >= self.flush_every or rows[-1][3] - self._last_flush[0] >= self.flush_seconds:
            self.flush(check=True)

    def _validate(self) -> None:
        job = self.job
        if job.val_data is None:
            return
        was_training = self.model.training
        self.model.eval()
        total = torch.zeros((), device=self.device)
        sums: dict[str, Value] | None = None
        n = 0
        with torch.no_grad():
            for batch in job.val_data:
                loss = self._loss(to_device(batch, self.device))
                got, self._got = self._got, None
                total += loss.detach().float()
                if got:
                    sums = accumulate(sums, got)
                n += 1
        self.model.train(was_training)
        value, means = self._val_means(total, sums, n)
        self.last_val = value
        self.recorder.put(ValRecord(self.step, self.epoch, value))
        if means:  # val_<name> beside val_loss, written with the next flush
            self.user.log(self.step, self.epoch, time.time(), means)
        saver = self.saver
        if (
            saver is not None
            and self.policy.keep_best
            and math.isfinite(value)
            and (saver.best_val is None or value < saver.best_val)
        ):
            saver.best_val = value
            self.save_checkpoint("best")
        if isinstance(job.scheduler, ReduceLROnPlateau) and math.isfinite(value):
            self.lr.step_scheduler(value)

    def log_values(self, values: Mapping[Any, Any]) -> None:
        """Values logged at the current step, not with it (an evaluation): checked now,
        tensors read at the next flush."""
        self.user.log(self.step, self.epoch, time.time(), values)

    def _val_means(
        self, total: torch.Tensor, sums: dict[str, Value] | None, n: int
    ) -> tuple[float, dict[str, float]]:
        """The mean validation loss and metrics: one read (one sync per rank meeting
        under torch.distributed)."""
        if not n:
            return math.nan, {}
        names = list(sums or {})
        if self.dist is None:
            tensors = [v for v in (sums or {}).values() if isinstance(v, torch.Tensor)]
            [value], read = read_with((total / n).reshape(1), tensors)
            it = iter(read)
            got = [next(it) if isinstance(v, torch.Tensor) else v for v in (sums or {}).values()]
        else:
            value = self.mean(total / n)
            got = [  # numbers too: each rank's own (a per-rank count)
                self.mean(v if isinstance(v, torch.Tensor) else torch.tensor(v, device=self.device))
                for v in (sums or {}).values()
            ]
        return value, {f"val_{k}": float(v) / n for k, v in zip(names, got, strict=True)}

    # -- records -------------------------------------------------------------
    def flush(self, check: bool = False) -> None:
        """Read the buffered values (one read for the whole batch) and queue the records.

        With ``check``, the divergence guard looks at what was read (and may pause or
        roll back). On CUDA the flush every ``flush_every`` steps (``check``) records the
        previous flush's values, copied to host memory meanwhile, and starts the copy of
        its own (:mod:`~optitui.trainer.loop.device_read`); every other flush reads
        everything now."""
        deferred = self.reads is not None and check and self.dist is None
        if not deferred:
            self.settle()
        n = len(self._rows)
        if n == 0:
            if self.user.logged:  # values logged with no step since the last flush
                _, read = read_with(torch.zeros(0, device=self.device), self.user)
                logged = self.user.take(read, 0)[1]
                if logged is not None:
                    self.recorder.put(logged)
            return
        # under torch.distributed every rank takes a batch per step: samples/s is the total
        self._samples += n * self._batch_samples * (1 if self.dist is None else self.dist.world)
        now = time.time()
        t0, s0, n0 = self._last_flush
        dt = max(now - t0, 1e-9)
        steps_per_s = (self.step - s0) / dt
        mem = memory_allocated(self.device)
        if mem is not None:  # host-side counters of the caching allocator: no sync
            held = memory_reserved(self.device)
            self.recorder.put(MetaUpdate({"memory": {"allocated": mem, "reserved": held}}))
        taken = self._take(n)
        seen: Seen | None = None
        if self.dist is None:  # everything of the flush in one read
            values = taken.packed(self.device, torch.stack(taken.losses))
            if deferred:
                assert self.reads is not None
                flying, self._in_flight = self._in_flight, self.reads.start(values, taken, check)
                if flying is not None:
                    seen = self._record(flying.batch, flying.values())
                    check = flying.check
            else:
                seen = self._record(taken, values.tolist())
        else:  # the mean over ranks, and each rank's pace and memory, in one all-gather
            # (and each rank's machine samples since the last flush)
            stats = [steps_per_s, float(mem or 0), *self.machine.packed(now)]
            losses, ranks = dist.gather_losses(torch.stack(taken.losses), stats, self.device)
            self.machine.absorb([s[2:] for s in ranks], now)
            self.recorder.put(
                MetaUpdate(
                    {
                        "ranks": [
                            {
                                "rank": r,
                                "steps_per_s": s[0],
                                "device_mem": int(s[1]) if mem is not None else None,
                                "system": self.machine.of_rank(r),
                            }
                            for r, s in enumerate(ranks)
                        ]
                    }
                )
            )
            # this rank's own metrics and health (rank 0 records them): a second read
            rest = taken.packed(
                self.device, torch.zeros(0, device=self.device, dtype=torch.float64)
            )
            seen = self._record(taken, losses + (rest.tolist() if rest.numel() else []))
        self.recorder.put(
            StatusUpdate(
                self.state,
                self.step,
                self.epoch,
                steps_per_s=steps_per_s,
                samples_per_s=(self._samples - n0) / dt,
                device_mem=mem,
                last_record=now,
            )
        )
        self._last_flush = (now, self.step, self._samples)
        if self.policy.minutes is not None and self.saver is not None and self.saver.due():
            self.save_checkpoint("periodic")
        self.published.publish_if_moved()  # a cycled momentum, a field ramp
        if check and seen is not None:
            self.guard.observe(*seen)

    def settle(self) -> None:
        """Record the values still on their way to the host (CUDA), waiting for them if
        they are not there yet; the guard looks at them when their flush asked it to."""
        flying, self._in_flight = self._in_flight, None
        if flying is not None:
            seen = self._record(flying.batch, flying.values())
            if flying.check:
                self.guard.observe(*seen)

    def _take(self, n: int) -> Taken:
        """The buffers of the last ``n`` steps, handed over; the buffers start afresh."""
        losses, skips, lrs, times, epochs = (list(c) for c in zip(*self._rows, strict=True))
        taken = Taken(
            first=self.step - n + 1,
            losses=losses,
            norms=self._buf_gn if len(self._buf_gn) == n else [],
            skips=skips,
            lrs=lrs,
            times=times,
            epochs=epochs,
            health=self._buf_health,
            user=self.user.split(self.step - n + 1),
        )
        self._rows, self._buf_gn, self._buf_health = [], [], []
        return taken

    def _record(self, taken: Taken, values: list[float]) -> Seen:
        """Queue a flush's metric batch (and logged values) from its values as read;
        returns what the divergence guard looks at."""
        n = len(taken.losses)
        losses, at = values[:n], n
        if self.saver is not None:
            self.saver.last_loss = losses[-1]
        cols: dict[str, Any] = {  # ints and floats alike: the encoder stores float64
            "step": range(taken.first, taken.first + n),
            "epoch": taken.epochs,
            "time": taken.times,
            "loss": losses,
        }
        norms = None
        if taken.norms:
            cols["grad_norm"] = norms = values[at : at + n]
            at += n
        flags = [f for f in taken.skips if isinstance(f, torch.Tensor)]
        it = iter(values[at : at + len(flags)])
        at += len(flags)
        skipped = None
        if flags or any(taken.skips):
            skipped = [
                1.0 if (next(it) if isinstance(f, torch.Tensor) else f) else 0.0
                for f in taken.skips
            ]
        if skipped is None and self._skips_recorded:
            skipped = [0.0] * n  # the column stays once a step could be skipped
        if skipped is not None:
            self._skips_recorded = True  # the scaler skipped these: no update, no true grad norm
            cols["skipped"] = skipped
            if norms is not None:
                cols["grad_norm"] = norms = [
                    math.nan if s else v for s, v in zip(skipped, norms, strict=True)
                ]
        # tensor-valued lrs (capturable, fused) were copied each step; read here, once
        by_group = list(zip(*lr_record.columns(taken.lrs), strict=True))
        for i, col in enumerate(by_group):
            cols[f"lr/{i}"] = list(col)
        measured = sum(len(m) for _, m in taken.health)
        user, logged = taken.user.take(values[at + measured :], n)
        cols.update(user)
        if taken.health:  # NaN on steps not measured, and on skipped ones
            cols.update(health_columns(taken.health, values[at : at + measured], n, skipped))
        self.recorder.put(MetricBatch(cols))
        if logged is not None:
            self.recorder.put(logged)
        return cols["step"], losses, norms, skipped


#: (steps, losses, grad norms, skipped flags) of a flush, as the divergence guard takes them
Seen = tuple[Any, list[float], list[float] | None, list[float] | None]


@dataclass
class Taken:
    """The host-side part of a flush: what the last steps buffered, handed over."""

    first: int  # the first step's number
    losses: list[torch.Tensor]
    norms: list[torch.Tensor]  # one per step, or none
    skips: list[torch.Tensor | float]  # one per step, or none
    lrs: list[lr_record.LrRow]
    times: list[float]
    epochs: list[int]
    health: Measured
    user: UserMetrics

    def packed(self, device: torch.device, first: torch.Tensor) -> torch.Tensor:
        """``first`` (the losses), then the grad norms, the skip flags that are tensors,
        the health measurements and the user's tensors: one tensor, one read."""
        wide = torch.float32 if device.type == "mps" else torch.float64
        parts = [first.reshape(-1).to(wide)]
        if self.norms:
            parts.append(torch.stack(self.norms).reshape(-1).to(device, wide))
        flags = [f.reshape(()).to(device, wide) for f in self.skips if isinstance(f, torch.Tensor)]
        if flags:
            parts.append(torch.stack(flags))
        measured = health_values(self.health)
        if measured is not None:
            parts.append(measured.reshape(-1).to(device, wide, non_blocking=True))
        user = self.user.stacked_or_dropped(device, wide)
        if user is not None:
            parts.append(user)
        return parts[0] if len(parts) == 1 else torch.cat(parts)
