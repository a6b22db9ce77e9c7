"""CLEVR v1.0 (Johnson et al. 2017): synthetic scenes and compositional questions.

``questions/CLEVR_{train,val,test}_questions.json`` is ``{"info": {...}, "questions": [{
"question_index", "image_index", "image_filename": "CLEVR_val_000000.png", "question", "answer",
"question_family_index", "split", "program": [{"function", "inputs", "value_inputs"}, ...]}]}``
(test questions lack ``answer`` and ``program``); images are ``images/{split}/{image_filename}``.
Question ids are ours: ``10**7 * split + question_index`` (train 0, val 1, test 2); results are
``[{"question_index", "answer"}]``.

Scoring is exact match, overall and per question type of the program's final function, both as
the function itself (``count``, ``query_color``, ...) and as the paper's five categories (Exist,
Count, Compare Integer, Query Attribute, Compare Attribute; Johnson et al. 2017, Fig. 6).
"""

from __future__ import annotations

from typing import Any

from vqa._io import read_json
from vqa.data.example import Example
from vqa.data.format import DataFormat, require_text, single_answer
from vqa.data.scoring import ExactMatch

SPLITS = {"train": 0, "val": 1, "test": 2}
CATEGORIES = {"exist": "exist", "count": "count", "equal_integer": "compare_integer",
              "less_than": "compare_integer", "greater_than": "compare_integer",
              **{f"query_{a}": "query_attribute" for a in ("size", "color", "material", "shape")},
              **{f"equal_{a}": "compare_attribute" for a in ("size", "color", "material", "shape")}}


def read(questions: str, annotations: str | None = None) -> tuple[list[Example], None]:
    """Read one CLEVR questions file (``annotations`` is unused)."""
    data = read_json(questions)
    if not isinstance(data, dict) or not isinstance(data.get("questions"), list):
        raise ValueError(f"{questions}: expected a JSON object with a 'questions' list (CLEVR)")
    examples, seen = [], set()
    for i, rec in enumerate(data["questions"]):
        where = f"{questions}: question {i}"
        if not isinstance(rec, dict):
            raise ValueError(f"{where} should be an object")
        index, split = rec.get("question_index"), rec.get("split")
        if not isinstance(index, int) or isinstance(index, bool) or not isinstance(split, str) \
                or split not in SPLITS:
            raise ValueError(f"{where} needs an integer 'question_index' and a 'split' in "
                             f"{list(SPLITS)}")
        where = f"{questions}: question_index {index}"
        if index in seen:
            raise ValueError(f"{where} appears more than once")
        seen.add(index)
        require_text(where, rec, ("image_filename", "question"))
        answers = single_answer(where, rec)
        function = _final_function(where, rec["program"]) if "program" in rec else None
        types = {"question_type": CATEGORIES[function], "function": function} if function else {}
        image = rec["image_filename"]
        examples.append(Example(
            SPLITS[split] * 10**7 + index, image.rsplit(".", 1)[0], rec["question"], answers,
            None, function, answers[0] if answers else None,
            extra={"question_index": index, "question_family_index":
                   rec.get("question_family_index")},
            image_file=image, types=types))
    return examples, None


def _final_function(where: str, program: Any) -> str:
    """The function of the program's last node (the one that gives the answer)."""
    if not isinstance(program, list) or not program or not isinstance(program[-1], dict):
        raise ValueError(f"{where} has a malformed 'program' (expected a non-empty list of "
                         "{'function', 'inputs', 'value_inputs'} nodes)")
    function = program[-1].get("function")
    if not isinstance(function, str) or function not in CATEGORIES:
        raise ValueError(f"{where}: the program ends in {function!r}; expected one of "
                         f"{sorted(CATEGORIES)}")
    return function


def _detect(data: Any, annotations: str | None = None) -> bool:
    qs = data.get("questions") if isinstance(data, dict) else None
    return isinstance(qs, list) and bool(qs) and isinstance(qs[0], dict) \
        and "image_filename" in qs[0] and "question_index" in qs[0]


def _scorer(version: str = "current") -> ExactMatch:
    return ExactMatch("CLEVR accuracy (exact match)")


FORMAT = DataFormat("clevr", read, _scorer, _detect, id_field="question_index",
                    result_id=lambda ex: ex.extra["question_index"], image_ids="name")
