"""``StopOnSignal``: SIGTERM and SIGINT end training with ``last.ckpt`` and a non-zero exit.

Schedulers send SIGTERM at a time limit or on preemption (SLURM, Kubernetes, ``kill``); Ctrl-C
sends SIGINT. Either one is noted when it arrives, and at the end of the training step in
flight every process saves the same state a step checkpoint holds (``last.ckpt``; the data
order, random generators and loop counters included), so ``vqa fit ... --ckpt_path last``
resumes exactly, as after SIGKILL. The run then exits with ``128 + signal`` (143 for SIGTERM,
130 for SIGINT): ``fit && predict`` stops, and the scheduler sees a run that did not finish.

This complements Lightning's SLURM requeue (SIGUSR1), which it leaves in place. A second
SIGINT stops at once, as Ctrl-C does elsewhere.
"""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_info

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(SystemExit):
    """Training stopped by a signal after saving ``last.ckpt``; exits with ``128 + signal``."""


class StopOnSignal(Callback):
    """Handles SIGTERM and SIGINT while ``fit`` trains (their previous handlers come back after).

    Args:
        filename: the checkpoint written, in the folder of the run's ``last.ckpt``.
    """

    def __init__(self, filename: str = "last.ckpt") -> None:
        self.filename = filename
        self.received: int | None = None
        self._previous: dict[int, Any] = {}

    def _note(self, signum: int, frame: FrameType | None) -> None:
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # Ctrl-C twice: stop now
        self.received = signum

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.received = None
        for s in SIGNALS:  # after Lightning's own handlers (registered before this hook)
            self._previous[s] = signal.signal(s, self._note)

    def _restore(self) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                     exception: BaseException) -> None:
        self._restore()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           outputs: Any, batch: Any, batch_idx: int) -> None:
        """Where step checkpoints are saved: a checkpoint taken here resumes exactly. Every
        process takes part in the decision, so all stop at the same step."""
        if not trainer.strategy.reduce_boolean_decision(self.received is not None, all=False):
            return
        path = self.path(trainer)
        trainer.save_checkpoint(path)
        name = signal.Signals(self.received).name if self.received else "a signal"
        code = 128 + (self.received or signal.SIGTERM)
        rank_zero_info(f"{name}: stopped at epoch {trainer.current_epoch}, step "
                       f"{trainer.global_step}; saved {path} (resume with --ckpt_path last); "
                       f"exit code {code}")
        raise Stopped(code)

    def path(self, trainer: pl.Trainer) -> Path:
        """``last.ckpt`` beside the run's other ``last`` checkpoints."""
        folders = [c.dirpath for c in trainer.checkpoint_callbacks
                   if isinstance(c, ModelCheckpoint) and c.save_last and c.dirpath]
        folder = folders[0] if folders else Path(trainer.default_root_dir) / "checkpoints"
        return Path(folder) / self.filename
