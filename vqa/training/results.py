"""Writes predictions in the benchmark's results format (VQA: ``[{"question_id": int, "answer":
str}]``; GQA: ``questionId`` / ``prediction``; VizWiz: ``image`` / ``answer`` / ``answerable``),
and on request each question's answer probabilities (``vqa ensemble`` averages them)."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.callbacks import BasePredictionWriter

from vqa._io import atomic_open, write_json


class ResultsWriter(BasePredictionWriter):
    """At the end of ``vqa predict``, map answer indices to strings and write the results JSON
    atomically (rank zero, after gathering in multi-process runs). Every question of the predict
    split is answered, or nothing is written. The data's hooks complete each entry (the chosen
    multiple-choice candidate as the questions file spells it; VizWiz's ``answerable``).

    Args:
        path: where the results JSON goes; default ``results_{split}.json`` in the run folder
            (``trainer.default_root_dir``), ``split`` naming the predict split's files: its data
            subtype (``results_val2014.json``, ``results_test-dev2015.json``) or questions file.
        probabilities: also write ``probabilities_{split}.npz`` beside the results file (what
            ``vqa ensemble`` averages): ``question_id`` (N,) int64, ascending; ``probabilities``
            (N, A) float16, every answer's probability as the loss models it (softmax; sigmoids
            for ``bce``), before any multiple-choice restriction; ``answers`` (A,) the answer
            vocabulary, fixed-width unicode. N x A x 2 bytes: 1.3 GB for VQA v2 val at A = 3000.
    """

    def __init__(self, path: str | None = None, probabilities: bool = False) -> None:
        super().__init__(write_interval="epoch")
        self.path = path
        self.probabilities = probabilities

    def _label(self, trainer: pl.Trainer) -> str:
        dm = getattr(trainer, "datamodule", None)
        return dm.label("predict") if hasattr(dm, "label") else "predict"

    def _path(self, trainer: pl.Trainer) -> Path:
        if self.path is not None:
            return Path(self.path)
        return Path(trainer.default_root_dir) / f"results_{self._label(trainer)}.json"

    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.predict_probabilities = self.probabilities

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        pl_module.predict_probabilities = False

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           predictions: Sequence[Any], batch_indices: Sequence[Any]) -> None:
        # One row per question: its id, answer index and what the data's hooks predicted.
        rows = [{k: v[j].item() for k, v in batch.items() if k != "probabilities"}
                for batch in predictions for j in range(len(batch["question_id"]))]
        saved = ([(batch["question_id"].numpy(), batch["probabilities"].numpy())
                  for batch in predictions] if self.probabilities else [])
        if trainer.world_size > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * trainer.world_size
            dist.all_gather_object(gathered, (rows, saved))
            rows = [r for part, _ in gathered for r in part]
            saved = [s for _, part in gathered for s in part]
        if not trainer.is_global_zero:
            return
        path = self._path(trainer)
        if pl_module.pipeline is None:
            raise RuntimeError("the model has no input pipeline: load it from a checkpoint")
        answers = pl_module.pipeline.answers.tokens
        results = {r["question_id"]: r for r in rows}  # a question answered twice counts once
        dm = getattr(trainer, "datamodule", None)
        if hasattr(dm, "data_format"):
            cut = cut_questions(dm)
            if cut:
                print(f"warning: {cut}", file=sys.stderr)
        write_json(path, results_entries(results, answers, dm, path))
        print(f"wrote {len(results)} answers to {path}")
        if self.probabilities:
            npz = path.parent / f"probabilities_{self._label(trainer)}.npz"
            save_probabilities(npz, saved, answers)
            print(f"wrote the answer probabilities of {len(results)} questions to {npz}")


def results_entries(rows: Mapping[int, dict[str, Any]], answers: Sequence[str], dm: Any,
                    path: str | os.PathLike) -> list[dict[str, Any]]:
    """The entries of the results file ``path``, in question id order, from each question's
    predictions ``rows`` (by question id: ``answer``, an index into ``answers``, and what the
    data's hooks predicted) and the data module ``dm`` whose predict split they answer: its
    format's layout, completed by its hooks (``vqa.data.hooks``). Without a ``VQADataModule``
    (plain loaders), the VQA layout with the answers as indexed."""
    if not hasattr(dm, "data_format"):
        return [{"question_id": q, "answer": answers[r["answer"]]} for q, r in sorted(rows.items())]
    examples = {ex.question_id: ex for ex in dm.dataset("predict").examples}
    missing = examples.keys() - rows.keys()
    if missing:
        raise RuntimeError(f"no prediction for {len(missing)} question(s), e.g. "
                           f"{sorted(missing)[:5]}; {path} not written")
    fmt, hooks = dm.data_format("predict"), dm.hooks("predict")
    entries = []
    for q, row in sorted(rows.items()):
        entries.append(fmt.result(examples[q], answers[row["answer"]]))
        for hook in hooks:
            hook.result(entries[-1], examples[q], row, fmt)
    return entries


def save_probabilities(path: str | os.PathLike, parts: Sequence[tuple[np.ndarray, np.ndarray]],
                       answers: Sequence[str]) -> None:
    """Write a probabilities file (``ResultsWriter``'s ``probabilities``) atomically from
    ``parts``, batches of question ids (B,) and their probabilities (B, A): one row per question
    id, ascending (a repeated id, as padded multi-process shards give, is kept once). Rows are
    copied into place batch by batch: at most twice the N x A float16 in memory."""
    ids = np.unique(np.concatenate([i for i, _ in parts]).astype(np.int64))
    probabilities = np.empty((len(ids), len(answers)), np.float16)
    for i, p in parts:
        probabilities[np.searchsorted(ids, i)] = p
    with atomic_open(path, "wb") as f:
        np.savez(f, question_id=ids, probabilities=probabilities,
                 answers=np.array(list(answers), dtype=str))


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
