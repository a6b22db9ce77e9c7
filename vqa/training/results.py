"""Writes predictions in the benchmark's results format (VQA: ``[{"question_id": int, "answer":
str}]``; GQA: ``questionId`` / ``prediction``; VizWiz: ``image`` / ``answer`` / ``answerable``)."""

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
        # (question id, vocabulary answer, multiple-choice candidate or None, answerability)
        rows = [(int(q), int(a), int(batch["choice"][k]) if "choice" in batch else None,
                 float(batch["answerable"][k]) if "answerable" in batch else None)
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
        dm = getattr(trainer, "datamodule", None)
        if not hasattr(dm, "data_format"):  # plain loaders: the VQA layout, answers as indexed
            plain = {q: answers[a] for q, a, _, _ in rows}
            write_json(self.path, [{"question_id": q, "answer": a} for q, a in sorted(plain.items())])
            return
        examples = {ex.question_id: ex for ex in dm.dataset("predict").examples}
        fmt = dm.data_format("predict")
        # A dict de-duplicates the samples distributed runs pad with.
        results = {q: (answers[a] if c is None else examples[q].multiple_choices[c], p)
                   for q, a, c, p in rows}
        missing = examples.keys() - results.keys()
        if missing:
            raise RuntimeError(f"no prediction for {len(missing)} question(s), e.g. "
                               f"{sorted(missing)[:5]}; {self.path} not written")
        entries = []
        for q, (answer, answerable) in sorted(results.items()):
            entries.append(fmt.result(examples[q], answer))
            if answerable is not None:
                entries[-1]["answerable"] = answerable
        write_json(self.path, entries)
        print(f"wrote {len(results)} answers to {self.path}")
