"""Training callbacks: how the CLI's progress bar, the app's job runner and tests watch a run.

Every task trainer calls these hooks; none of them may change training results.
"""
from __future__ import annotations

from typing import Any

__all__ = ["Callback", "CallbackList", "StopTraining"]


class StopTraining(Exception):
    """Raised by a trainer when a callback asked to stop (e.g. the job was cancelled)."""


class Callback:
    def on_train_start(self, cfg: dict[str, Any]) -> None: ...
    def on_epoch_start(self, epoch: int, epochs: int) -> None: ...
    def on_batch_end(self, step: int, steps: int, loss: float) -> None: ...
    def on_epoch_end(self, epoch: int, metrics: dict[str, Any]) -> None: ...
    def on_train_end(self, summary: dict[str, Any]) -> None: ...
    def on_log(self, message: str) -> None: ...
    def should_stop(self) -> bool:
        return False


class CallbackList(Callback):
    """Fan a hook out to several callbacks; ``should_stop`` if any says so."""

    def __init__(self, callbacks: list[Callback] | None = None) -> None:
        self.callbacks = list(callbacks or [])

    def on_train_start(self, cfg):
        for c in self.callbacks:
            c.on_train_start(cfg)

    def on_epoch_start(self, epoch, epochs):
        for c in self.callbacks:
            c.on_epoch_start(epoch, epochs)

    def on_batch_end(self, step, steps, loss):
        for c in self.callbacks:
            c.on_batch_end(step, steps, loss)

    def on_epoch_end(self, epoch, metrics):
        for c in self.callbacks:
            c.on_epoch_end(epoch, metrics)

    def on_train_end(self, summary):
        for c in self.callbacks:
            c.on_train_end(summary)

    def on_log(self, message):
        for c in self.callbacks:
            c.on_log(message)

    def should_stop(self) -> bool:
        return any(c.should_stop() for c in self.callbacks)
