"""Writes predictions in the benchmark's results format (VQA: ``[{"question_id": int, "answer":
str}]``; GQA: ``questionId`` / ``prediction``; VizWiz: ``image`` / ``answer`` / ``answerable``)."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from vqa._io import write_json


class ResultsWriter(BasePredictionWriter):
    """At the end of ``vqa predict``, map answer indices to strings and write the results JSON
    atomically (rank zero, after gathering in multi-process runs). Every question of the predict
    split is answered, or nothing is written. The data's hooks complete each entry (the chosen
    multiple-choice candidate as the questions file spells it; VizWiz's ``answerable``).

    Args:
        path: where the results JSON goes; default ``results_{split}.json`` in the run folder
            (``trainer.default_root_dir``), ``split`` naming the predict split's files: its data
            subtype (``results_val2014.json``, ``results_test-dev2015.json``) or questions file.
    """

    def __init__(self, path: str | None = None) -> None:
        super().__init__(write_interval="epoch")
        self.path = path

    def _path(self, trainer: pl.Trainer) -> Path:
        if self.path is not None:
            return Path(self.path)
        dm = getattr(trainer, "datamodule", None)
        label = dm.label("predict") if hasattr(dm, "label") else "predict"
        return Path(trainer.default_root_dir) / f"results_{label}.json"

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        # One row per question: its id, answer index and what the data's hooks predicted.
        rows = [{k: v[j].item() for k, v in batch.items()}
                for batch in predictions for j in range(len(batch["question_id"]))]
        if trainer.world_size > 1:
            gathered: list[Any] = [None] * trainer.world_size
            import torch.distributed as dist

            dist.all_gather_object(gathered, rows)
            rows = [r for part in gathered for r in part]
        if not trainer.is_global_zero:
            return
        path = self._path(trainer)
        if pl_module.pipeline is None:
            raise RuntimeError("the model has no input pipeline: load it from a checkpoint")
        answers = pl_module.pipeline.answers.tokens
        results = {r["question_id"]: r for r in rows}  # a question answered twice counts once
        dm = getattr(trainer, "datamodule", None)
        if not hasattr(dm, "data_format"):  # plain loaders: the VQA layout, answers as indexed
            write_json(path, [{"question_id": q, "answer": answers[r["answer"]]}
                                   for q, r in sorted(results.items())])
            return
        examples = {ex.question_id: ex for ex in dm.dataset("predict").examples}
        cut = cut_questions(dm)
        if cut:
            print(f"warning: {cut}", file=sys.stderr)
        fmt, hooks = dm.data_format("predict"), dm.hooks("predict")
        missing = examples.keys() - results.keys()
        if missing:
            raise RuntimeError(f"no prediction for {len(missing)} question(s), e.g. "
                               f"{sorted(missing)[:5]}; {path} not written")
        entries = []
        for q, row in sorted(results.items()):
            entries.append(fmt.result(examples[q], answers[row["answer"]]))
            for hook in hooks:
                hook.result(entries[-1], examples[q], row, fmt)
        write_json(path, entries)
        print(f"wrote {len(results)} answers to {path}")


def cut_questions(dm: Any) -> str | None:
    """How many questions of the data module's predict split were cut to the pipeline's maximum
    question length, as a notice (``None``: none was). Only questions that fill that length can
    have been cut: only those are tokenized again, whole."""
    pipeline, (data, _) = dm.pipeline, dm.preprocessed("predict")
    limit = pipeline.max_question_length
    filled = [data.examples[i] for i in (data.lengths >= limit).nonzero().flatten().tolist()]
    if not filled:
        return None
    tokens = pipeline.encode([ex.question for ex in filled]).full_lengths
    cut = [(ex, int(n)) for ex, n in zip(filled, tokens, strict=True) if n > limit]
    if not cut:
        return None
    ex, n = cut[0]
    return (f"{len(cut)} of the {len(data.examples)} questions of the predict split have more "
            f"tokens than the pipeline's max_question_length ({limit}) and were cut to it, e.g. "
            f"question {ex.question_id} ({n} tokens)")
