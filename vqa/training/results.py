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
        pairs = [(int(q), int(a) if "choice" not in batch else -1 - int(c))
                 for batch in predictions
                 for q, a, c in zip(batch["question_id"], batch["answer"],
                                    batch.get("choice", batch["answer"]), strict=True)]
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
        examples = _predict_examples(trainer)
        choices = {ex.question_id: ex.multiple_choices for ex in examples}
        # a >= 0: vocabulary answer; a < 0: candidate -1 - a. A dict de-duplicates padded samples.
        results = {q: answers[a] if a >= 0 else choices[q][-1 - a] for q, a in pairs}
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
