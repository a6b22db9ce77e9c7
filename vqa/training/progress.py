"""``EpochLog``: one line per epoch where no progress bar is drawn (a log file, a batch job).

Under a scheduler, or with ``vqa fit > log``, a progress bar writes nothing useful until its
epoch ends; this callback prints, at the end of each training epoch, the epoch, the global step,
the epoch's mean training loss, the latest validation metrics, and the elapsed and (estimated)
remaining time. On a terminal Lightning's bar is drawn instead and this prints nothing.
"""

from __future__ import annotations

import time
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only


def _duration(seconds: float) -> str:
    m, s = divmod(round(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class EpochLog(pl.Callback):
    """Prints ``epoch 3/32 step 1252 train/loss 0.8123 val/vqa_acc 71.20 ... elapsed 1:14
    remaining 6:41`` when the trainer draws no progress bar (rank zero only).

    Args:
        metrics: how many validation metrics to print at most (the headline ones first).
    """

    def __init__(self, metrics: int = 4) -> None:
        self.metrics = metrics
        self._start: float | None = None
        self._first_epoch = 0
        self._loss, self._questions = 0.0, 0  # this epoch: loss x questions (a tensor), questions

    def _active(self, trainer: pl.Trainer) -> bool:
        return trainer.progress_bar_callback is None and not trainer.sanity_checking

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start, self._first_epoch = time.monotonic(), trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._loss, self._questions = 0.0, 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        if self._active(trainer) and isinstance(outputs, dict) and "loss" in outputs:
            # Lightning divides the returned loss by accumulate_grad_batches; weighted by
            # questions, and summed on the device (no synchronisation per step).
            n = len(batch)
            self._loss = self._loss + outputs["loss"].detach() * trainer.accumulate_grad_batches * n
            self._questions += n

    @rank_zero_only
    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer) or self._start is None:
            return
        done = trainer.current_epoch + 1
        elapsed = time.monotonic() - self._start
        metrics = trainer.callback_metrics
        total = trainer.max_epochs if trainer.max_epochs not in (None, -1) else "?"
        parts = [f"epoch {done}/{total}",
                 f"step {trainer.global_step}"]
        if self._questions:
            parts.append(f"train/loss {float(self._loss) / self._questions:.4f}")
        val = sorted((k for k in metrics if k.startswith("val/")),
                     key=lambda k: (k.count("/"), k.endswith("loss"), k))  # headline first
        parts += [f"{k} {float(metrics[k]):.2f}" for k in val[: self.metrics]]
        parts.append(f"elapsed {_duration(elapsed)}")
        if trainer.max_epochs not in (None, -1) and done > self._first_epoch:
            per_epoch = elapsed / (done - self._first_epoch)
            parts.append(f"remaining {_duration(per_epoch * (trainer.max_epochs - done))}")
        print("  ".join(parts), flush=True)
