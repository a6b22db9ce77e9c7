"""GQA (Hudson & Manning 2019): compositional questions over Visual Genome scene graphs.

``{train,val,testdev}_balanced_questions.json`` is a JSON object keyed by question id (a digit
string, leading zeros kept) of ``{"imageId": "2354786" | "n161313", "question", "answer",
"fullAnswer", "types": {"structural", "semantic", "detailed"}, "isBalanced", "semantic", ...}``
(submission files lack the answers); images are ``images/{imageId}.jpg``. Results are
``[{"questionId": str, "prediction": str}]``, as GQA's ``eval.py`` reads them.

Scoring reproduces ``eval.py``'s accuracy: the prediction equals the answer as written, over the
balanced questions, overall and per structural type (verify, query, choose, logical, compare) and
semantic type (rel, attr, obj, cat, global). Its consistency, validity, plausibility, grounding and
distribution scores need scene graphs and choices files and are not computed.
"""

from __future__ import annotations

import re
from typing import Any

from vqa._io import read_json
from vqa.data.example import Example
from vqa.data.format import DataFormat, first, require_text, single_answer
from vqa.data.scoring import ExactMatch

_DIGITS = re.compile(r"[0-9]+")
STRUCTURAL = ("verify", "query", "choose", "logical", "compare")
SEMANTIC = ("rel", "attr", "obj", "cat", "global")


def read(questions: str, annotations: str | None = None) -> tuple[list[Example], None]:
    """Read one GQA questions file (``annotations`` is unused: answers are in the same file)."""
    data = read_json(questions)
    if not isinstance(data, dict):
        raise ValueError(f"{questions}: expected a JSON object of questions keyed by question "
                         "id (GQA)")
    examples, ids = [], {}
    for key, rec in data.items():
        where = f"{questions}: question {key}"
        if not _DIGITS.fullmatch(key):
            raise ValueError(f"{where}: a GQA question id is a string of digits")
        if int(key) in ids:
            raise ValueError(f"{where} has the same number as question {ids[int(key)]}")
        ids[int(key)] = key
        if not isinstance(rec, dict):
            raise ValueError(f"{where} should be an object")
        require_text(where, rec, ("imageId", "question"))
        if not isinstance(rec.get("isBalanced", True), bool):
            raise ValueError(f"{where} has isBalanced {rec['isBalanced']!r}; expected true or false")
        answers = single_answer(where, rec)
        types = _types(where, rec) if answers else {}
        examples.append(Example(
            int(key), rec["imageId"], rec["question"], answers, None, types.get("structural"),
            answers[0] if answers else None,
            extra={"questionId": key, "isBalanced": rec.get("isBalanced", True),
                   "fullAnswer": rec.get("fullAnswer")},
            image_file=f"{rec['imageId']}.jpg", types=types))
    return examples, None


def _types(where: str, rec: dict[str, Any]) -> dict[str, str]:
    types = rec.get("types")
    if not isinstance(types, dict):
        raise ValueError(f"{where} has no 'types' object (structural, semantic, detailed)")
    for name, known in (("structural", STRUCTURAL), ("semantic", SEMANTIC)):
        if types.get(name) not in known:
            raise ValueError(f"{where} has {name} type {types.get(name)!r}; expected one of "
                             f"{list(known)}")
    return {"structural": types["structural"], "semantic": types["semantic"]}


def _detect(data: Any, annotations: str | None = None) -> bool:
    entry = first(data)
    return isinstance(data, dict) and isinstance(entry, dict) and "imageId" in entry


def _scorer(version: str = "current") -> ExactMatch:
    return ExactMatch("GQA's eval.py accuracy (exact match over balanced questions)")


FORMAT = DataFormat("gqa", read, _scorer, _detect, id_field="questionId",
                    answer_field="prediction", result_id=lambda ex: ex.extra["questionId"],
                    image_ids="name", scored=lambda ex: ex.extra["isBalanced"])
