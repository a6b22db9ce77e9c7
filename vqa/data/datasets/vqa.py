"""VQA v1 / v2 (Antol et al. 2015; Goyal et al. 2017), scored with the official VQA accuracy. The
shapes dataset is written in this format too.

Questions ``{"data_subtype": "val2014", "task_type": "Open-Ended", "questions": [{"image_id",
"question", "question_id"}]}`` (VQA v1 multiple choice adds ``"multiple_choices": [18 answers]``
per question); annotations ``{"annotations": [{"question_id", "image_id", "question_type",
"answer_type", "multiple_choice_answer", "answers": [10 x {"answer", "answer_confidence",
"answer_id"}]}]}``. Fields beyond these (e.g. the shapes dataset's ``grounding``) are kept in
``Example.extra``.
"""

from __future__ import annotations

import os
from typing import Any

from vqa._io import gc_paused, read_json
from vqa.data.example import HUMAN_ANSWERS, Example
from vqa.data.format import DataFormat
from vqa.data.hooks import Families, Grounding, MultipleChoice
from vqa.data.scoring import VQAScore

_QUESTION_FIELDS = {"image_id": int, "question": str, "question_id": int}
_ANNOTATION_FIELDS = {"question_id": int, "image_id": int, "question_type": str,
                      "answer_type": str, "multiple_choice_answer": str, "answers": list}


def _records(path: str | os.PathLike, data: Any, key: str, fields: dict[str, type]
             ) -> dict[int, dict]:
    """The ``key`` list of a file's ``data``, each record checked for ``fields``, by question id."""
    if not isinstance(data, dict) or not isinstance(data.get(key), list):
        raise ValueError(f"{path}: expected a JSON object with a {key!r} list")
    out: dict[int, dict] = {}
    for i, rec in enumerate(data[key]):
        qid = rec.get("question_id", f"#{i}") if isinstance(rec, dict) else f"#{i}"
        where = f"{path}: question_id {qid}" if isinstance(qid, int) else f"{path}: entry {i}"
        if not isinstance(rec, dict):
            raise ValueError(f"{where} should be an object")
        for name, kind in fields.items():
            if name not in rec:
                raise ValueError(f"{where} has no {name!r}")
            if not isinstance(rec[name], kind) or isinstance(rec[name], bool):
                raise ValueError(f"{where} field {name!r} should be {kind.__name__}, "
                                 f"got {type(rec[name]).__name__}")
        if rec["question_id"] in out:
            raise ValueError(f"{where} appears more than once")
        out[rec["question_id"]] = rec
    return out


def _answers(path: str | os.PathLike, ann: dict) -> tuple[str, ...]:
    """The human answers of an annotation: exactly ``HUMAN_ANSWERS`` (the VQA accuracy takes the
    mean over the 10 subsets of 9; with fewer, a perfect answer scores less than 100)."""
    qid = ann["question_id"]
    if len(ann["answers"]) != HUMAN_ANSWERS:
        raise ValueError(f"{path}: question_id {qid} has {len(ann['answers'])} answers; the VQA "
                         f"format has {HUMAN_ANSWERS} per question")
    for i, a in enumerate(ann["answers"]):
        if not isinstance(a, dict) or not isinstance(a.get("answer"), str):
            raise ValueError(f"{path}: question_id {qid} answer {i} should be an object with a "
                             "string 'answer'")
    return tuple(a["answer"] for a in ann["answers"])


def load_vqa(questions: str | os.PathLike, annotations: str | os.PathLike | None = None
             ) -> tuple[list[Example], str | None]:
    """Read and join a questions file and (for annotated splits) its annotations file.

    Returns the examples in question-file order and the questions' ``data_subtype``.
    """
    with gc_paused():  # millions of small objects, no cycles
        return _load_vqa(questions, annotations)


def _load_vqa(questions: str | os.PathLike, annotations: str | os.PathLike | None
              ) -> tuple[list[Example], str | None]:
    data = read_json(questions)
    qs = _records(questions, data, "questions", _QUESTION_FIELDS)
    anns = None if annotations is None else _records(
        annotations, read_json(annotations), "annotations", _ANNOTATION_FIELDS)
    return join_vqa(questions, qs, annotations, anns), data.get("data_subtype")


def vqa_records(path: str | os.PathLike, records: Any, kind: str) -> dict[int, dict]:
    """A list of VQA ``questions`` or ``annotations`` records (the format's fields checked), by
    question id; for formats that keep the VQA records in another wrapper (VQA-CP: a bare list)."""
    if not isinstance(records, list):
        raise ValueError(f"{path}: expected a JSON list of {kind}")
    return _records(path, {kind: records}, kind,
                    _QUESTION_FIELDS if kind == "questions" else _ANNOTATION_FIELDS)


def join_vqa(questions: str | os.PathLike, qs: dict[int, dict],
             annotations: str | os.PathLike | None, anns: dict[int, dict] | None
             ) -> list[Example]:
    """VQA question records joined with their annotation records (``None``: a test split), in
    question order; a question without annotation, or the reverse, is an error naming both."""
    for qid, q in qs.items():
        if not q["question"].strip():
            raise ValueError(f"{questions}: question_id {qid} has an empty question "
                             f"({q['question']!r}); a question needs at least one word")
    choices = {qid: _choices(questions, q) for qid, q in qs.items()}
    if anns is None:
        return [Example(qid, q["image_id"], q["question"], multiple_choices=choices[qid],
                        extra=_extra(q, _QUESTION_FIELDS)) for qid, q in qs.items()]
    orphans = sorted(anns.keys() - qs.keys())
    if orphans:
        raise ValueError(f"{annotations}: {len(orphans)} annotation(s) have no question in "
                         f"{questions}, e.g. question_id {orphans[:5]}")
    examples = []
    for qid, q in qs.items():
        a = anns.get(qid)
        if a is None:
            raise ValueError(f"{annotations}: no annotation for question_id {qid} "
                             f"(asked in {questions})")
        if a["image_id"] != q["image_id"]:
            raise ValueError(f"{annotations}: question_id {qid} has image_id {a['image_id']}, "
                             f"but {questions} says {q['image_id']}")
        examples.append(Example(
            qid, q["image_id"], q["question"], _answers(annotations, a), a["answer_type"],
            a["question_type"], a["multiple_choice_answer"], choices[qid],
            {**_extra(q, _QUESTION_FIELDS), **_extra(a, _ANNOTATION_FIELDS)},
            types={"answer_type": a["answer_type"]}))
    return examples


def _choices(path: str | os.PathLike, q: dict) -> tuple[str, ...]:
    """VQA v1 multiple choice: the candidate answers of a question (``()`` for open-ended)."""
    choices = q.get("multiple_choices", ())
    if not isinstance(choices, list | tuple) or not all(isinstance(c, str) for c in choices):
        raise ValueError(f"{path}: question_id {q['question_id']} field 'multiple_choices' should "
                         "be a list of strings")
    return tuple(choices)


def _extra(rec: dict, known: dict[str, type]) -> dict[str, Any]:
    return {k: v for k, v in rec.items() if k not in known and k != "multiple_choices"}


def detect(data: Any, annotations: str | None = None) -> bool:
    """A ``{"questions": [{"question_id", "image_id", ...}]}`` file."""
    qs = data.get("questions") if isinstance(data, dict) else None
    return isinstance(qs, list) and bool(qs) and isinstance(qs[0], dict) \
        and "question_id" in qs[0] and "image_id" in qs[0]


FORMAT = DataFormat("vqa", load_vqa, VQAScore, detect,
                    hooks=(MultipleChoice(), Families(), Grounding()))
