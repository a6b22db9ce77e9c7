"""``RunSummary``: ``summary.json``, one run in one row, written when ``vqa fit`` ends.

It holds what a study table gathers (``vqa.experiments.table``): the validation metrics of the
epoch the best checkpoint was taken at (overall accuracy, each benchmark category, grounding at
each level, as logged), the seed, the model's parameters, training questions per second and wall
time. A run resumed from ``last.ckpt`` continues the same summary (the callback's state is saved
in checkpoints), so an interrupted run's row equals an uninterrupted one's, times included.
"""

from __future__ import annotations

import datetime
import os
import platform
import time
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch

from vqa._io import write_json

FORMAT = "vqa-summary/1"


class RunSummary(pl.Callback):
    """Writes ``summary.json`` in the run folder at the end of ``fit`` (rank zero).

    Args:
        path: where to write it (default ``RUN/summary.json``, ``RUN`` being
            ``trainer.default_root_dir``).
    """

    def __init__(self, path: str | None = None) -> None:
        self.path = path
        self.history: list[dict[str, float]] = []  # per validation: epoch, step and val/* metrics
        self.train_seconds = 0.0  # in training epochs, validation excluded
        self.wall_seconds = 0.0  # the whole fit, over every session of a resumed run
        self.questions = 0  # trained on this process
        self._fit_start = self._epoch_start = 0.0

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history, "train_seconds": self.train_seconds,
                "wall_seconds": self.wall_seconds + time.monotonic() - self._fit_start,
                "questions": self.questions}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])
        self.train_seconds, self.wall_seconds = state["train_seconds"], state["wall_seconds"]
        self.questions = state["questions"]

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # A run resumed mid-epoch gets no on_train_epoch_start for that epoch: it starts now.
        self._fit_start = self._epoch_start = time.monotonic()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any,
                           batch: Any, batch_idx: int) -> None:
        self.questions += len(batch)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.train_seconds += time.monotonic() - self._epoch_start

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith("val/")}
        self.history.append({"epoch": trainer.current_epoch, "step": trainer.global_step,
                             **metrics})

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        questions = int(trainer.strategy.reduce(torch.tensor(float(self.questions)),
                                                reduce_op="sum"))  # every process calls it
        if not trainer.is_global_zero:
            return
        wall = self.wall_seconds + time.monotonic() - self._fit_start
        monitor = getattr(trainer.checkpoint_callback, "monitor", None)
        scored = [h for h in self.history if monitor in h]
        best = max(scored, key=lambda h: h[monitor]) if scored else \
            (self.history[-1] if self.history else {})
        params = sum(p.numel() for p in pl_module.parameters())
        trainable = sum(p.numel() for p in pl_module.parameters() if p.requires_grad)
        write_json(self.path or Path(trainer.default_root_dir) / "summary.json", {
            "format": FORMAT,
            "run": str(trainer.default_root_dir),
            "seed": _seed(),
            "monitor": monitor,
            "best": best,  # the metrics of the epoch the best checkpoint holds
            "epochs": trainer.current_epoch, "steps": trainer.global_step,
            "parameters": params, "trainable_parameters": trainable,
            "questions_trained": questions,
            "train_questions_per_second": questions / self.train_seconds if self.train_seconds
            else None,
            "train_seconds": self.train_seconds, "wall_seconds": wall,
            "deterministic": torch.are_deterministic_algorithms_enabled(),
            "precision": str(trainer.precision), "processes": trainer.world_size,
            "device": str(trainer.strategy.root_device),
            "torch": str(torch.__version__), "python": platform.python_version(),
            "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        }, indent=2)


def _seed() -> int | None:
    """The seed ``seed_everything`` set (Lightning keeps it in ``PL_GLOBAL_SEED``)."""
    value = os.environ.get("PL_GLOBAL_SEED")
    return int(value) if value is not None else None
