"""``DataFormat``: how one dataset's release is read, scored and written back (results files).

Each module of ``vqa.data.datasets`` defines one ``FORMAT``; the helpers below are the checks its
reader shares with the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from vqa.data.example import Example

if TYPE_CHECKING:
    from vqa.data.answers import EvalVersion
    from vqa.data.hooks import Hook
    from vqa.data.scoring import Scorer

Reader = Callable[[str, "str | None"], "tuple[list[Example], str | None]"]


def question_id(ex: Example) -> Any:
    return ex.question_id


def every(ex: Example) -> bool:
    return True


@dataclass(frozen=True)
class DataFormat:
    """How one dataset's release is read and scored.

    Args:
        name: the value of ``format`` in a split's config.
        read: ``(questions, annotations or None) -> (examples, data subtype or None)``; problems
            are ``ValueError``s naming the file and the question.
        scorer: the benchmark's scorer for an evaluation release (``vqa.data.scoring``).
        detect: ``(parsed questions file or None for a folder, annotations path or None)`` ->
            whether the files are of this format (``vqa evaluate`` and ``vqa check-features``
            recognise files with it).
        id_field, answer_field: the keys of a results-file entry.
        result_id: the value of ``id_field`` for an example.
        image_ids: how ``vqa extract-features`` names cached images for this dataset: ``number``
            (the number ending the file name, COCO ids) or ``name`` (the file name's stem).
        hooks: what the benchmark asks beyond the open-ended answer (``vqa.data.hooks``:
            multiple choice, answerability, grounding), each used on the splits it applies to.
        refines: a format whose files this one's also match (OK-VQA: ``vqa``); it wins over it.
        scored: which annotated questions the benchmark's evaluation scores (GQA: the balanced).
    """

    name: str
    read: Reader
    scorer: Callable[[EvalVersion], Scorer]
    detect: Callable[[Any, str | None], bool]
    id_field: str = "question_id"
    answer_field: str = "answer"
    result_id: Callable[[Example], Any] = question_id
    image_ids: Literal["number", "name"] = "number"
    hooks: tuple[Hook, ...] = ()
    refines: str | None = None
    scored: Callable[[Example], bool] = every

    def result(self, ex: Example, answer: str) -> dict[str, Any]:
        """One entry of the results file this benchmark's evaluation reads."""
        return {self.id_field: self.result_id(ex), self.answer_field: answer}


def require_text(where: str, rec: dict[str, Any], names: tuple[str, ...]) -> None:
    """Loader check: each field of ``names`` is a non-empty string."""
    for name in names:
        if not isinstance(rec.get(name), str) or not rec[name].strip():
            raise ValueError(f"{where} has no {name!r} (expected a non-empty string)")


def single_answer(where: str, rec: dict[str, Any]) -> tuple[str, ...]:
    """Loader check: a record's one ``answer`` (exact-match datasets), ``()`` when the split has
    none (test files); anything but a string is an error."""
    answer = rec.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise ValueError(f"{where} has answer {answer!r}; expected a string")
    return () if answer is None else (answer,)


def first(data: Any) -> Any:
    """The first entry of a JSON list or of a dict's values (``None`` when empty or neither):
    what ``detect`` functions look at."""
    if isinstance(data, list):
        return data[0] if data else None
    if isinstance(data, dict):
        return next(iter(data.values()), None)
    return None
