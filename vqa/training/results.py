"""Writes predictions in the official results format ``[{"question_id": int, "answer": str}]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from vqa._io import write_json


class ResultsWriter(BasePredictionWriter):
    """At the end of ``vqa predict``, map answer indices to strings and write the results JSON
    atomically (rank zero, after gathering in multi-process runs).

    Args:
        path: where the results JSON goes.
    """

    def __init__(self, path: str = "results.json") -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        pairs = [(int(q), int(a)) for batch in predictions
                 for q, a in zip(batch["question_id"], batch["answer"], strict=True)]
        if trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            import torch.distributed as dist

            dist.all_gather_object(gathered, pairs)
            pairs = [p for part in gathered for p in part]
        if not trainer.is_global_zero:
            return
        if pl_module.vocab is None:
            raise RuntimeError("the model has no vocabulary: load it from a checkpoint")
        answers = pl_module.vocab.answers.tokens
        results = {q: answers[a] for q, a in pairs}  # de-duplicates padded distributed samples
        write_json(self.path, [{"question_id": q, "answer": a} for q, a in sorted(results.items())])
        print(f"wrote {len(results)} answers to {self.path}")
