"""Writes predictions in the official results format ``[{"question_id": int, "answer": str}]``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from vqa._io import write_json


class ResultsWriter(BasePredictionWriter):
    """At the end of ``vqa predict``, map answer indices to strings and write the results JSON
    atomically (rank zero, after gathering in multi-process runs). Every question of the predict
    split is answered, or nothing is written. Multiple-choice answers are the chosen candidate
    exactly as the questions file spells it (the official evaluation checks membership).

    Args:
        path: where the results JSON goes.
    """

    def __init__(self, path: str = "results.json") -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        # (question id, vocabulary answer, multiple-choice candidate or None)
        rows = [(int(q), int(a), int(batch["choice"][k]) if "choice" in batch else None)
                for batch in predictions
                for k, (q, a) in enumerate(zip(batch["question_id"], batch["answer"], strict=True))]
        if trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            import torch.distributed as dist

            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if not trainer.is_global_zero:
            return
        if pl_module.pipeline is None:
            raise RuntimeError("the model has no input pipeline: load it from a checkpoint")
        answers = pl_module.pipeline.answers.tokens
        examples = _predict_examples(trainer)
        choices = {ex.question_id: ex.multiple_choices for ex in examples}
        # A dict de-duplicates the samples distributed runs pad with.
        results = {q: answers[a] if c is None else choices[q][c] for q, a, c in rows}
        missing = choices.keys() - results.keys()
        if examples and missing:
            raise RuntimeError(f"no prediction for {len(missing)} question(s), e.g. "
                               f"{sorted(missing)[:5]}; {self.path} not written")
        write_json(self.path, [{"question_id": q, "answer": a} for q, a in sorted(results.items())])
        print(f"wrote {len(results)} answers to {self.path}")


def _predict_examples(trainer: pl.Trainer) -> list[Any]:
    """The examples of the predict split, when the data come from a ``VQADataModule``."""
    dm = getattr(trainer, "datamodule", None)
    return dm.dataset("predict").examples if hasattr(dm, "dataset") else []
