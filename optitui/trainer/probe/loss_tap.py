"""The loss of a loop optitui does not own: the scalar ``backward()`` is called on.

While a tap is started, ``torch.autograd.backward`` (which ``Tensor.backward``
calls) is wrapped so that every scalar it is called on reaches the taps, still
on the device. Two cases need more than the scalar itself:

- **AMP**: ``scaler.scale(loss).backward()`` passes the loss times the scale
  (65536 at first). ``GradScaler.scale`` is wrapped too, and a backward on the
  tensor it just returned reports the unscaled loss it was given.
- **Closures** (LBFGS calls its closure up to 20 times a step): losses seen
  inside ``optimizer.step()`` belong to that step, and the step's loss is the
  first one, which is what ``step()`` returns.

Half-precision losses are accumulated in float32 (eight bf16 micro-batch
losses summed in bf16 drift by a percent).
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable
from typing import Any

import torch

_listeners: list[Callable[[torch.Tensor], None]] = []
_real_backward: Callable[..., Any] | None = None
_real_scale: Callable[..., Any] | None = None
#: the newest scalar GradScaler.scale returned, and the loss it scaled
_last_scaled: tuple[weakref.ref[torch.Tensor], torch.Tensor] | None = None


def _tapped_scale(scaler: Any, outputs: Any) -> Any:
    global _last_scaled
    assert _real_scale is not None
    out = _real_scale(scaler, outputs)
    if isinstance(outputs, torch.Tensor) and isinstance(out, torch.Tensor) and out.numel() == 1:
        _last_scaled = (weakref.ref(out), outputs.detach())
    return out


def _tapped_backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
    if _listeners:
        t = tensors[0] if isinstance(tensors, list | tuple) and len(tensors) == 1 else tensors
        grad = args[0] if args else kwargs.get("grad_tensors")
        if grad is None and isinstance(t, torch.Tensor) and t.requires_grad and t.numel() == 1:
            scaled = _last_scaled
            # kept on the device: nothing is read here
            d = scaled[1] if scaled is not None and scaled[0]() is t else t.detach()
            for listen in list(_listeners):
                listen(d)
    assert _real_backward is not None
    return _real_backward(tensors, *args, **kwargs)


class LossTap:
    """The scalar losses passed to ``backward()`` since the last :meth:`take`, summed (or,
    for a step that evaluated a closure, the first loss inside it)."""

    def __init__(self) -> None:
        self._sum: torch.Tensor | None = None
        self._inside = False
        self._first: torch.Tensor | None = None
        self.seen = 0

    def _see(self, loss: torch.Tensor) -> None:
        self.seen += 1
        if loss.dtype in (torch.float16, torch.bfloat16):
            loss = loss.float()
        if self._inside:  # a closure evaluated by optimizer.step()
            if self._first is None:
                self._first = loss
            return
        self._sum = loss if self._sum is None else self._sum + loss

    def enter_step(self) -> None:
        """``optimizer.step()`` begins: losses from here on come from its closure."""
        self._inside, self._first = True, None

    def take(self) -> torch.Tensor | None:
        """The step's loss, and start afresh."""
        first, s = self._first, self._sum
        self._inside, self._first, self._sum = False, None, None
        return first if first is not None else s

    def start(self) -> None:
        global _real_backward, _real_scale
        if not _listeners:
            _real_backward = torch.autograd.backward
            torch.autograd.backward = _tapped_backward  # type: ignore[assignment]
            _real_scale = torch.amp.GradScaler.scale
            torch.amp.GradScaler.scale = _tapped_scale  # type: ignore[method-assign,assignment]
        _listeners.append(self._see)

    def stop(self) -> None:
        global _real_backward, _real_scale, _last_scaled
        with contextlib.suppress(ValueError):
            _listeners.remove(self._see)
        if not _listeners and _real_backward is not None:
            if torch.autograd.backward is _tapped_backward:
                torch.autograd.backward = _real_backward  # type: ignore[assignment]
            if _real_scale is not None and torch.amp.GradScaler.scale is _tapped_scale:  # type: ignore[comparison-overlap]
                torch.amp.GradScaler.scale = _real_scale  # type: ignore[method-assign]
            _real_backward, _real_scale, _last_scaled = None, None, None
