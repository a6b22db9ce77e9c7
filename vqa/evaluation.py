"""The official VQA evaluation: overall, per answer type and per question type accuracy.

Numbers equal ``vqaEval.py`` on the same files (``version`` chooses which release, see
``vqa.data.answers``), rounded as it rounds: ``round(100 * mean, 2)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from itertools import chain
from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from vqa._io import gc_paused, read_json
from vqa.data.answers import EvalVersion, accuracy_from_matches, leave_one_out, process_answers, rules
from vqa.data.datasets.vqa import load_vqa
from vqa.data.scoring import percent


def read_results(path: str | os.PathLike) -> dict[int, str]:
    """Read ``[{"question_id": int, "answer": str}]``; malformed entries are errors."""
    data = read_json(path)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a JSON list of {{'question_id', 'answer'}} objects")
    out: dict[int, str] = {}
    for i, r in enumerate(data):
        if not isinstance(r, dict):
            raise ValueError(f"{path}: entry {i} is not an object")
        qid, ans = r.get("question_id"), r.get("answer")
        if not isinstance(qid, int) or isinstance(qid, bool):
            raise ValueError(f"{path}: entry {i} has no integer 'question_id'")
        if not isinstance(ans, str):
            raise ValueError(f"{path}: question_id {qid} has no string 'answer'")
        if qid in out:
            raise ValueError(f"{path}: question_id {qid} is answered more than once")
        out[qid] = ans
    return out


def _grouped_pct(keys: Sequence[str], scores: np.ndarray, n: int) -> dict[str, float]:
    """``percent`` per distinct key (in order of first appearance), each sum in question order."""
    codes = {k: i for i, k in enumerate(dict.fromkeys(keys))}
    ids = np.fromiter(map(codes.__getitem__, keys), np.int64, len(keys))
    order = np.argsort(ids, kind="stable")
    parts = np.split(scores[order], np.cumsum(np.bincount(ids, minlength=len(codes)))[:-1])
    return {k: percent(parts[i].tolist(), n) for k, i in codes.items()}


def summarize(question_types: Sequence[str], answer_types: Sequence[str],
              scores: Sequence[float] | np.ndarray, n: int = 2) -> dict[str, Any]:
    """Official rounding, ``round(100 * mean, n)``, overall, per question type and per answer type
    (one type of each kind and one score per question; sums run in question order, as the
    official script's do)."""
    scores = np.asarray(scores, np.float64)
    return {
        "overall": percent(scores.tolist(), n),
        "perQuestionType": _grouped_pct(question_types, scores, n),
        "perAnswerType": _grouped_pct(answer_types, scores, n),
        "num_questions": len(scores),
    }


def check_coverage(question_ids: Sequence[int], results: dict[int, str], source: str) -> None:
    """Results must answer exactly the annotated questions, as the official ``loadRes`` asserts."""
    want = set(question_ids)
    missing, extra = want - results.keys(), results.keys() - want
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"{len(missing)} question(s) unanswered, e.g. {sorted(missing)[:5]}")
        if extra:
            parts.append(f"{len(extra)} answer(s) for unknown questions, e.g. {sorted(extra)[:5]}")
        raise ValueError(f"{source}: results do not match the questions: " + "; ".join(parts))


def _ragged_grid(values: np.ndarray, lengths: np.ndarray, fill: int) -> np.ndarray:
    """Flat per-question values (sum(lengths),) laid out as (Q, max(lengths)), padded with fill."""
    out = np.full((len(lengths), int(lengths.max())), fill, np.int64)
    rows = np.repeat(np.arange(len(lengths)), lengths)
    out[rows, np.arange(len(values)) - np.repeat(np.cumsum(lengths) - lengths, lengths)] = values
    return out


class _Strings:
    """Strings as integer ids; transforms run once per distinct string (answers repeat a lot)."""

    def __init__(self) -> None:
        self.table: dict[str, int] = {}

    def ids(self, strings: list[str], *fns: Callable[[str], str]) -> list[np.ndarray]:
        """For each ``fn``, the id of ``fn(s)`` for every ``s``, each shape (len(strings),)."""
        distinct = list(dict.fromkeys(strings))
        if not all(type(x) is str for x in distinct):
            raise TypeError("answers must be strings")
        position = {x: i for i, x in enumerate(distinct)}
        where = np.fromiter(map(position.__getitem__, strings), np.int64, len(strings))
        table = self.table
        return [np.array([table.setdefault(fn(x), len(table)) for x in distinct], np.int64)[where]
                for fn in fns]


def score_table(flat: list[str], lengths: np.ndarray, predictions: list[str],
                version: EvalVersion = "current") -> np.ndarray:
    """Official accuracy per question when all answer records are distinct, vectorised: (Q,).

    ``flat`` holds every question's human answers in order, ``lengths`` (Q,) how many each. The
    release's ``RULES`` give each string's compared forms, computed once per distinct string;
    matches are counted on a (Q, L) array of string ids and scored by ``accuracy_from_matches``.
    """
    r = rules(version)
    strings = _Strings()

    def grid(ids: np.ndarray) -> np.ndarray:  # (Q, L), -1 where a question has fewer answers
        return _ragged_grid(ids, lengths, -1)

    h_same, h_differ = map(grid, strings.ids(flat, r.same_human, r.differ_human))
    p_same, p_differ = strings.ids(predictions, r.same_prediction, r.differ_prediction)
    valid = h_same >= 0
    same = ((h_same == h_same[:, :1]) | ~valid).all(1)  # (Q,) identical answers
    h = np.where(same[:, None], h_same, h_differ)  # (Q, L)
    p = np.where(same, p_same, p_differ)  # (Q,)
    m = ((h == p[:, None]) & valid).sum(1).astype(np.float64)  # (Q,) matching annotators
    return accuracy_from_matches(m, lengths.astype(np.float64))


def _repeated_records(answer_ids: list, lengths: np.ndarray) -> np.ndarray:
    """Indices of questions whose answer records may repeat (duplicate or missing answer_id)."""
    ids = np.array([a if type(a) is int else -1 - i for i, a in enumerate(answer_ids)], np.int64)
    grid = _ragged_grid(ids, lengths, np.iinfo(np.int64).max)
    grid.sort(1)
    dup = (grid[:, 1:] == grid[:, :-1]) & (grid[:, 1:] != np.iinfo(np.int64).max)
    return np.flatnonzero(dup.any(1))


class _Question(msgspec.Struct, gc=False):
    question_id: int
    image_id: int
    multiple_choices: list[str] = []


class _Questions(msgspec.Struct, gc=False):
    questions: list[_Question]
    task_type: str = "Open-Ended"


class _Answer(msgspec.Struct, gc=False):
    answer: str
    answer_id: Any = None


class _Annotation(msgspec.Struct, gc=False):
    question_id: int
    image_id: int
    question_type: str
    answer_type: str
    answers: list[_Answer]


class _Annotations(msgspec.Struct, gc=False):
    annotations: list[_Annotation]


class _Result(msgspec.Struct, gc=False):
    question_id: int
    answer: str


def _decode(path: str | os.PathLike, kind: type, explain: Callable[[], object]) -> Any:
    """Decode only the fields the evaluation reads, typed (msgspec skips the rest unparsed).

    On bad input ``explain`` re-reads the file with a validating reader that names the question;
    if that finds nothing, msgspec's own message (with the JSON path) is raised.
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.MsgspecError as e:
        explain()
        raise ValueError(f"{path}: {e}") from None


def evaluate(
    questions: str | os.PathLike, annotations: str | os.PathLike, results: str | os.PathLike,
    version: EvalVersion = "current",
) -> dict[str, Any]:
    """Score a results file against official question and annotation files.

    Fast path: typed decoding of just the needed fields, then ``score_table`` on string ids; any
    structural problem is named by re-reading the files with the validating ``load_vqa`` and
    ``read_results``. The garbage collector is paused throughout: nothing here makes cycles, and
    its passes over the millions of parsed objects would otherwise cost more than the scoring.
    """
    with gc_paused():
        return _evaluate(questions, annotations, results, version)


def _reference(questions: str | os.PathLike, annotations: str | os.PathLike
               ) -> tuple[_Questions, list[_Annotation]]:
    """The questions file and its annotations in question order, checked to match."""

    def explain() -> None:
        load_vqa(questions, annotations)

    q_file = _decode(questions, _Questions, explain)
    qs = q_file.questions
    anns = {a.question_id: a for a in _decode(annotations, _Annotations, explain).annotations}
    order = [q.question_id for q in qs]
    try:
        joined = [anns[q.question_id] for q in qs]
        ok = len(anns) == len(order) == len(set(order)) and all(
            a.image_id == q.image_id and a.answers for a, q in zip(joined, qs, strict=True))
    except KeyError:
        ok = False
    if not ok:  # find the problem and name it
        explain()
        raise ValueError(f"{annotations}: annotations do not match {questions}")
    return q_file, joined


def _scores(questions: str | os.PathLike, annotations: str | os.PathLike, q_file: _Questions,
            joined: list[_Annotation], results: str | os.PathLike, version: EvalVersion
            ) -> np.ndarray:
    """The official accuracy of each question (question-file order) of one results file."""
    qs = q_file.questions
    order = [q.question_id for q in qs]
    res_list = _decode(results, list[_Result], lambda: read_results(results))
    res = {r.question_id: r.answer for r in res_list}
    if len(res) != len(res_list):
        read_results(results)  # names the repeated question id
    check_coverage(order, res, str(results))
    if q_file.task_type == "Multiple Choice":  # as the official loadRes asserts
        for q in qs:
            if res[q.question_id] not in q.multiple_choices:
                raise ValueError(f"{results}: question_id {q.question_id} is answered "
                                 f"{res[q.question_id]!r}, which is not one of its multiple "
                                 f"choices in {questions}")

    answer_lists = list(map(attrgetter("answers"), joined))
    lengths = np.fromiter(map(len, answer_lists), np.int64, len(joined))
    records = list(chain.from_iterable(answer_lists))  # every human answer record, in order
    scores = score_table(list(map(attrgetter("answer"), records)), lengths,
                         list(map(res.__getitem__, order)), version)
    repeated = _repeated_records(list(map(attrgetter("answer_id"), records)), lengths)
    if len(repeated):  # rare: records may repeat, compare whole records as the official script
        full = {a["question_id"]: a["answers"] for a in read_json(annotations)["annotations"]}
        for i in repeated:
            recs = full[order[i]]
            pred, proc = process_answers(res[order[i]], [d["answer"] for d in recs], version)
            keys = [tuple(sorted((k, repr(v)) for k, v in d.items() if k != "answer")) for d in recs]
            recs_ = [(a, *k) for a, k in zip(proc, keys, strict=True)]
            scores[i] = leave_one_out(proc, recs_, pred)
    return scores


def question_scores(questions: str | os.PathLike, annotations: str | os.PathLike,
                    results: Sequence[str | os.PathLike], version: EvalVersion = "current"
                    ) -> tuple[list[int], list[np.ndarray], dict[str, list[str]]]:
    """The official accuracy of every question (0 to 1), for each results file, the question and
    annotation files read once: the question ids in question-file order, one (Q,) array per
    results file, and each question's ``answer_type`` and ``question_type`` (the categories
    ``evaluate`` reports)."""
    with gc_paused():
        qs, joined = _reference(questions, annotations)
        scores = [_scores(questions, annotations, qs, joined, r, version) for r in results]
    order = [q.question_id for q in qs.questions]
    return order, scores, {"answer_type": list(map(attrgetter("answer_type"), joined)),
                           "question_type": list(map(attrgetter("question_type"), joined))}


def _evaluate(questions: str | os.PathLike, annotations: str | os.PathLike,
              results: str | os.PathLike, version: EvalVersion) -> dict[str, Any]:
    qs, joined = _reference(questions, annotations)
    scores = _scores(questions, annotations, qs, joined, results, version)
    summary = summarize(list(map(attrgetter("question_type"), joined)),
                        list(map(attrgetter("answer_type"), joined)), scores)
    summary["eval_version"] = version
    return summary
