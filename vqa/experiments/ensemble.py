"""``vqa ensemble``: average the answer probabilities several models saved for one split, and
write the ensemble's results file in the benchmark's layout.

The standard ensemble of classifiers: the mean of the members' output distributions (softmax; the
sigmoids of ``bce`` models), the answer its argmax (Hansen & Salamon 1990; Lakshminarayanan et al.
2017 average softmax outputs the same way). Members are the ``probabilities_{split}.npz`` files of
``vqa predict --results.probabilities true`` (``vqa.training.results``). The answer is picked and
the results file written by the code ``vqa predict`` uses (``vqa.data.hooks.predict``,
``vqa.training.results.results_entries``), so multiple choice still picks among each question's
candidates and VizWiz entries carry ``answerable``. When the split is annotated, the ensemble and
every member (answered from its saved probabilities) are scored as ``vqa evaluate`` scores them.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vqa._io import write_json
from vqa.benchmark import evaluate_files
from vqa.data.batch import Batch
from vqa.data.datamodule import VQADataModule
from vqa.data.dataset import VQADataset
from vqa.data.hooks import HookContext, predict
from vqa.data.split import Split
from vqa.training.results import results_entries

KEYS = ("question_id", "probabilities", "answers")
CHUNK = 4096  # questions answered at a time


def read_probabilities(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A probabilities file: ``question_id`` (N,), ``probabilities`` (N, A), ``answers`` (A,)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        with np.load(path, allow_pickle=False) as f:
            data = {k: f[k] for k in KEYS if k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # not .npz, truncated...
        raise ValueError(f"{path}: not a .npz probabilities file ({e})") from None
    missing = [k for k in KEYS if k not in data]
    if missing:
        raise ValueError(f"{path}: no {missing[0]!r} array; expected the probabilities file of "
                         "`vqa predict --results.probabilities true`")
    n, a = len(data["question_id"]), len(data["answers"])
    if data["probabilities"].shape != (n, a) or data["answers"].dtype.kind != "U":
        raise ValueError(f"{path}: probabilities should be (questions, answers) = ({n}, {a}) "
                         f"with answers as text; got {data['probabilities'].shape}, answers of "
                         f"dtype {data['answers'].dtype}")
    if len(np.unique(data["question_id"])) != n:
        raise ValueError(f"{path}: a question id appears more than once")
    return data


def members(paths: Sequence[str | os.PathLike]) -> Iterator[tuple[str, dict[str, np.ndarray]]]:
    """Each file's contents, in turn (one in memory at a time), checked to share the first
    file's answer vocabulary and question ids; else an error naming the file."""
    first: dict[str, np.ndarray] | None = None
    for path in paths:
        data = read_probabilities(path)
        if first is None:
            first = {k: data[k] for k in ("question_id", "answers")}
        elif not np.array_equal(data["answers"], first["answers"]):
            raise ValueError(f"{path}: its answer vocabulary differs from that of {paths[0]} "
                             f"({_first_difference(data['answers'], first['answers'])}); an "
                             "ensemble averages models with one vocabulary")
        elif not np.array_equal(np.sort(data["question_id"]), np.sort(first["question_id"])):
            raise ValueError(f"{path}: its question ids differ from those of {paths[0]} "
                             f"({_id_difference(data['question_id'], first['question_id'])})")
        yield str(path), data


def _first_difference(a: np.ndarray, b: np.ndarray) -> str:
    if len(a) != len(b):
        return f"{len(a)} answers, not {len(b)}"
    i = int(np.flatnonzero(a != b)[0])
    return f"answer {i} is {str(a[i])!r}, not {str(b[i])!r}"


def _id_difference(ids: np.ndarray, known: np.ndarray) -> str:
    missing, extra = np.setdiff1d(known, ids), np.setdiff1d(ids, known)
    return "; ".join([f"{len(missing)} missing, e.g. {missing[:5].tolist()}"] * bool(len(missing))
                     + [f"{len(extra)} others, e.g. {extra[:5].tolist()}"] * bool(len(extra)))


def aligned(paths: Sequence[str | os.PathLike], vocabulary: np.ndarray, wanted: np.ndarray,
            split: str) -> Iterator[tuple[str, np.ndarray]]:
    """Each member's probabilities (N, A), rows in the order of the question ids ``wanted``;
    a member whose answer vocabulary is not ``vocabulary`` or whose questions are not
    ``wanted`` is refused by name."""
    for path, data in members(paths):
        if not np.array_equal(data["answers"], vocabulary):
            raise ValueError(f"{path}: its answer vocabulary is not the config's data's "
                             f"({_first_difference(data['answers'], vocabulary)}); give the "
                             "members' checkpoint with --pipeline")
        ids = data["question_id"].astype(np.int64)
        if not np.array_equal(np.sort(ids), np.sort(wanted)):
            raise ValueError(f"{path}: its questions are not those of the predict split {split} "
                             f"({_id_difference(ids, wanted)})")
        order = np.argsort(ids)
        yield path, data["probabilities"][order[np.searchsorted(ids[order], wanted)]]


def data_module(configs: Sequence[str], pipeline: str | None = None) -> VQADataModule:
    """The data module of ``vqa fit -c CONFIG ...``, its images never decoded (only the predict
    split's questions and hooks are used); ``pipeline``: a checkpoint or ``pipeline.json`` whose
    input pipeline (answer vocabulary) to use instead of the config's."""
    from vqa.training.lightning_cli import read_config

    data = read_config(list(configs))["data"].as_dict()
    for name in ("train", "val", "test", "predict"):
        if data.get(name):
            parts = data[name]
            data[name] = [Split(**p) for p in parts] if isinstance(parts, list) else Split(**parts)
    data["cache_images"] = False
    if pipeline:
        data["pipeline"] = pipeline
    return VQADataModule(**data)


def hook_batches(dataset: VQADataset) -> list[tuple[np.ndarray, Batch]]:
    """The predict split in chunks of ``CHUNK`` questions (dataset rows), each with a ``Batch``
    carrying the hooks' inputs (``extra``: multiple-choice candidates...) and the questions'
    tokens, ids and labels; no images and no targets (``target`` is (B, 0)): hooks pick and
    complete answers from ``extra`` alone."""
    d, out = dataset.data, []
    for start in range(0, len(dataset), CHUNK):
        rows = np.arange(start, min(start + CHUNK, len(dataset)))
        index = torch.from_numpy(rows)
        extras = [{k: v for h in dataset.hooks for k, v in h.item(dataset, int(i)).items()}
                  for i in rows]
        question = d.questions[index]  # (B, T)
        out.append((rows, Batch(
            question=question,
            question_mask=torch.arange(question.shape[1]) < d.lengths[index][:, None],
            question_id=torch.tensor([dataset.examples[i].question_id for i in rows]),
            target=torch.zeros(len(rows), 0), answer_index=d.answer_index[index],
            groups=d.groups[index], scored=None if d.scored is None else d.scored[index],
            extra={k: torch.stack([e[k] for e in extras]) for k in extras[0]})))
    return out


def answer_rows(probabilities: np.ndarray, batches: list[tuple[np.ndarray, Batch]],
                dataset: VQADataset, context: HookContext) -> dict[int, dict[str, Any]]:
    """Each question's results row (``answer`` index and the hooks' predictions), by question
    id, from ``probabilities`` (N, A) in dataset row order, as ``vqa predict`` answers."""
    rows: dict[int, dict[str, Any]] = {}
    for index, batch in batches:
        p = torch.from_numpy(np.ascontiguousarray(probabilities[index], np.float32))  # (B, A)
        out = predict(dataset.hooks, p, batch, p, context)
        for j, i in enumerate(index):
            rows[dataset.examples[i].question_id] = {k: v[j].item() for k, v in out.items()}
    return rows


def ensemble(configs: Sequence[str], paths: Sequence[str | os.PathLike], out: str | os.PathLike,
             pipeline: str | None = None) -> dict[str, Any]:
    """Average the probabilities files ``paths`` for the predict split of ``configs`` and write
    the ensemble's results file ``out``. Returns ``{"out", "members", "metrics"}``: the
    benchmark's metrics (``vqa.benchmark.evaluate_files``) of the ensemble (``ensemble``) and of
    each member (by path), or ``{}`` when the split is not annotated (or joins several files)."""
    if not paths:
        raise ValueError("give the members' probabilities files (--probabilities P1.npz ...)")
    dm = data_module(configs, pipeline)
    dataset = dm.dataset("predict")
    vocabulary = np.array(list(dm.pipeline.answers.tokens), dtype=str)
    wanted = np.array([ex.question_id for ex in dataset.examples], np.int64)
    batches = hook_batches(dataset)
    context = HookContext(dm.pipeline, (), ())  # predictions only: no attention maps
    parts = dm.splits["predict"] if isinstance(dm.splits["predict"], list) else [
        dm.splits["predict"]]
    scored = len(parts) == 1 and all(ex.answers for ex in dataset.examples)
    total: np.ndarray | None = None
    member_rows: dict[str, dict[int, dict[str, Any]]] = {}
    for path, probabilities in aligned(paths, vocabulary, wanted, dm.label("predict")):
        if total is None:  # a float32 sum of the float16 members, one member in memory at once
            total = probabilities.astype(np.float32)
        else:
            total += probabilities
        if scored:
            member_rows[path] = answer_rows(probabilities, batches, dataset, context)
    mean = total / len(paths)
    write_json(out, results_entries(answer_rows(mean, batches, dataset, context),
                                    dm.pipeline.answers.tokens, dm, out))
    result: dict[str, Any] = {"out": str(out), "members": [str(p) for p in paths], "metrics": {}}
    if scored:
        split = parts[0]

        def score(results: str | os.PathLike) -> dict[str, Any]:
            return evaluate_files(split.questions, split.annotations, results, split.format,
                                  dm.eval_version)

        result["metrics"]["ensemble"] = score(out)
        with tempfile.TemporaryDirectory() as tmp:
            for i, (path, rows) in enumerate(member_rows.items()):
                member = Path(tmp) / f"member{i}.json"
                write_json(member, results_entries(rows, dm.pipeline.answers.tokens, dm, member))
                result["metrics"][path] = score(member)
    return result
