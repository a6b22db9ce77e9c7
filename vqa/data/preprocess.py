"""Examples + vocabularies -> model inputs and training targets, cached on disk.

Building a VQA v2 train split (443k questions, 4.4M answers) took 37 s including the cache write
(``scripts/bench_preprocess.py``, 2 CPU cores); the result is written once to ``cache_dir`` under a
key of everything it depends on (input files' paths, sizes and modification times, the
vocabularies, the settings) and read back in 2.2 s (the pickle cache it replaced: 2.3 s on the
same machine). Cache files hold data, never code: an ``.npz`` of arrays and a JSON tree, decoded
into the types the caller names (``cached``), so a file planted in a shared cache runs nothing.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import numpy as np
import torch

from vqa._io import atomic_open, gc_paused
from vqa.data.answers import EvalVersion
from vqa.data.example import Example
from vqa.data.pipeline import InputPipeline
from vqa.data.scoring import Scorer, VQAScore
from vqa.data.vocab import Vocabulary

CACHE_FORMAT = "vqa-preprocessed/6"  # 6: .npz of arrays + JSON, never pickle
T = TypeVar("T")


@dataclass
class Preprocessed:
    """One split as arrays, row ``i`` for ``examples[i]``.

    questions: (N, T) token ids, right-padded to ``lengths`` (N,); ``words``: (N, T) the word of
    each token (``vqa.data.tokenizers.Encoded``). targets: CSR soft scores, the vocabulary answers of
    row ``i`` at ``target_index[target_offsets[i]:target_offsets[i + 1]]`` with their official
    accuracy in ``target_score``. answer_index: (N,) most common answer or -100.
    groups: (N, G) index into ``group_names`` of each example's category on each of the G axes
    the benchmark reports (``Example.types``), -1 where it has none. answerable: (N,) VizWiz's
    answerability label (1., 0., -1. unknown), ``None`` for other datasets. choices: (N, K)
    vocabulary index of each multiple-choice candidate, -1 when not in the vocabulary (``None``:
    open-ended). scored: (N,) bool, the questions the benchmark's evaluation scores (``None``:
    all).
    """

    examples: list[Example]
    questions: torch.Tensor
    lengths: torch.Tensor
    words: np.ndarray
    target_offsets: np.ndarray
    target_index: np.ndarray
    target_score: np.ndarray
    answer_index: torch.Tensor
    groups: torch.Tensor
    group_names: list[str]
    answerable: torch.Tensor | None = None
    choices: torch.Tensor | None = None
    scored: torch.Tensor | None = None

    def target(self, i: int, num_answers: int) -> torch.Tensor:
        """(A,) soft scores of row ``i``."""
        lo, hi = self.target_offsets[i], self.target_offsets[i + 1]
        out = torch.zeros(num_answers)
        out[torch.from_numpy(self.target_index[lo:hi].astype(np.int64))] = torch.from_numpy(
            self.target_score[lo:hi])
        return out


def _scorer(scorer: Scorer | EvalVersion | None) -> Scorer:
    """A scorer; a VQA evaluation release names the VQA accuracy of that release."""
    return VQAScore(scorer) if isinstance(scorer, str) else scorer or VQAScore()


def soft_targets(examples: Sequence[Example], answers: Vocabulary,
                 scorer: Scorer | EvalVersion | None = None) -> list[tuple[list[int], list[float]]]:
    """Per example, the vocabulary answers with a non-zero benchmark score and that score.

    A vocabulary answer ``a`` is scored as the evaluation scores the prediction ``a``: the target
    at the predicted index is the benchmark's per-question score (default: official VQA accuracy).
    """
    scorer = _scorer(scorer)
    index: dict[Callable[[str], str], dict[str, list[int]]] = {}  # per form: form(a) -> indices
    out = []
    for ex in examples:
        scores, form = scorer.targets(ex.answers)
        if form not in index:
            index[form] = {}
            for i, a in enumerate(answers.tokens):
                index[form].setdefault(form(a), []).append(i)
        pairs = [(i, s) for a, s in scores.items() for i in index[form].get(a, ())]
        out.append(([i for i, _ in pairs], [s for _, s in pairs]))
    return out


def group_name(axis: str, value: str, axes: int) -> str:
    """A category's metric key: ``yes_no`` for one axis, ``structural/query`` for several."""
    value = value.replace("/", "_")
    return value if axes == 1 else f"{axis}/{value}"


def groups(examples: Sequence[Example]) -> tuple[torch.Tensor, list[str]]:
    """(N, G) category index per example and axis (-1: none), and the sorted category names."""
    axes = list(dict.fromkeys(k for ex in examples for k in ex.types))
    names = sorted({group_name(a, v, len(axes)) for ex in examples for a, v in ex.types.items()})
    where = {name: i for i, name in enumerate(names)}
    table = torch.full((len(examples), len(axes)), -1, dtype=torch.long)
    for i, ex in enumerate(examples):
        for j, axis in enumerate(axes):
            if axis in ex.types:
                table[i, j] = where[group_name(axis, ex.types[axis], len(axes))]
    return table, names


def preprocess(examples: Sequence[Example], pipeline: InputPipeline,
               scorer: Scorer | EvalVersion | None = None,
               scored: Callable[[Example], bool] | None = None) -> Preprocessed:
    """Tokens, soft targets, answer indices, categories and which questions the benchmark scores
    (``scored``, default all), and multiple-choice candidates."""
    scorer = _scorer(scorer)
    norm = scorer.normalize
    with gc_paused():
        examples = list(examples)
        n = len(examples)
        encoded = pipeline.encode([ex.question for ex in examples])  # (N, T)
        targets = soft_targets(examples, pipeline.answers, scorer)
        lengths = np.fromiter((len(ix) for ix, _ in targets), np.int64, n)
        answers = pipeline.answers.index
        choices = None
        if any(ex.multiple_choices for ex in examples):
            k = max(len(ex.multiple_choices) for ex in examples)
            choices = torch.full((n, k), -1, dtype=torch.long)  # (N, K)
            for i, ex in enumerate(examples):
                choices[i, :len(ex.multiple_choices)] = torch.tensor(
                    [answers.get(norm(c), -1) for c in ex.multiple_choices])
        return Preprocessed(
            examples, torch.from_numpy(encoded.ids), torch.from_numpy(encoded.lengths),
            encoded.words,
            np.concatenate([[0], np.cumsum(lengths)]),
            np.fromiter((i for ix, _ in targets for i in ix), np.int32, int(lengths.sum())),
            np.fromiter((s for _, sc in targets for s in sc), np.float32, int(lengths.sum())),
            torch.tensor([answers.get(norm(ex.multiple_choice_answer), -100)
                          if ex.multiple_choice_answer is not None else -100 for ex in examples]),
            *groups(examples), _answerable(examples), choices,
            None if scored is None or all(map(scored, examples))
            else torch.tensor([scored(ex) for ex in examples]))


def _answerable(examples: Sequence[Example]) -> torch.Tensor | None:
    """(N,) answerability labels (1., 0., -1. unknown), or ``None`` when no example has one."""
    if all(ex.answerable is None for ex in examples):
        return None
    return torch.tensor([-1.0 if ex.answerable is None else float(ex.answerable)
                         for ex in examples])


def cached(cache_dir: str | os.PathLike | None, name: str, key: Any, build: Callable[[], T],
           type: Any = Any) -> T:
    """``build()``, or its result from ``cache_dir`` when an earlier run stored it under ``key``.

    The file ``{name}-{hash of key}.npz`` holds data only (``save_data``), written atomically, and
    is read back as ``type``; an unreadable one is rebuilt with a warning. ``None`` disables caching.
    """
    if cache_dir is None:
        return build()
    digest = hashlib.sha256(repr([CACHE_FORMAT, key]).encode()).hexdigest()[:20]
    path = Path(cache_dir) / f"{name}-{digest}.npz"
    if path.is_file():
        try:
            return load_data(path, type)
        except Exception as e:  # a cache is disposable: whatever fails to read is rebuilt
            why = str(e).splitlines()[0] if str(e) else e.__class__.__name__
            warnings.warn(f"{path}: unreadable cache file, rebuilding it ({why})", stacklevel=2)
    value = build()
    save_data(path, value)
    return value


def save_data(path: str | os.PathLike, value: Any) -> None:
    """Write ``value`` as an ``.npz`` of plain arrays (no pickle): its numpy arrays and tensors
    (``"0"``, ``"1"``, ...) and a JSON tree of the rest (``"tree"``) naming them by key.

    Dataclasses, lists, tuples, dicts, scalars and ``Vocabulary`` are stored; object arrays are
    refused."""
    arrays: dict[str, np.ndarray] = {}

    def enc_hook(obj: Any) -> Any:
        if isinstance(obj, torch.Tensor):
            obj = obj.detach().cpu().numpy()
        if isinstance(obj, np.ndarray):
            if obj.dtype.hasobject:
                raise TypeError(f"cannot cache an array of dtype {obj.dtype} without pickle")
            arrays[str(len(arrays))] = obj
            return str(len(arrays) - 1)
        if isinstance(obj, Vocabulary):
            return _VocabularyData(obj.tokens, obj.unknown)
        raise NotImplementedError(f"cannot cache a {type(obj).__name__}")

    tree = msgspec.json.encode(value, enc_hook=enc_hook)
    with atomic_open(path, "wb") as f:
        np.savez(f, tree=np.frombuffer(tree, np.uint8), **arrays)


def load_data(path: str | os.PathLike, type: Any = Any) -> Any:
    """Read a ``save_data`` file as ``type`` (msgspec validates it): never unpickles, and
    instantiates only the types ``type`` names. Raises on a foreign or corrupt file."""
    with open(path, "rb") as f:  # np.load(path) leaves the file open when it is not a zip
        z = np.load(f, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("not an .npz file")
        arrays = {k: z[k] for k in z.files}
    if "tree" not in arrays:
        raise ValueError("no tree in the file")
    tree = arrays.pop("tree").tobytes()

    def dec_hook(kind: Any, obj: Any) -> Any:
        if kind is Vocabulary:
            v = msgspec.convert(obj, _VocabularyData)
            if v.unknown is not None and v.unknown not in v.tokens:
                raise ValueError("unknown token not in the vocabulary")
            return Vocabulary(v.tokens, v.unknown)
        if kind in (np.ndarray, torch.Tensor) and isinstance(obj, str) and obj in arrays:
            return arrays[obj] if kind is np.ndarray else torch.from_numpy(arrays[obj])
        raise ValueError(f"expected {getattr(kind, '__name__', kind)}")

    with gc_paused():
        return msgspec.json.decode(tree, type=type, dec_hook=dec_hook)


class _VocabularyData(msgspec.Struct, array_like=True):
    """A ``Vocabulary`` as stored: its tokens and unknown token."""

    tokens: list[str]
    unknown: str | None
