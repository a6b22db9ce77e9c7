"""Dataset formats: one module per dataset, each defining ``FORMAT``, a ``DataFormat``.

A format says how a release's files are read into ``Example``s, how its answers are scored
(``vqa.data.scoring``), how its results file is written and read, and how its images are named.
Every module of this package that defines ``FORMAT`` is found on first use: adding a dataset is
adding a module here (and a config), nothing else. A module elsewhere works too: a split's
``format`` may name it (``mylab.datasets.foo``).
"""

from __future__ import annotations

import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from vqa.data.answers import EvalVersion
    from vqa.data.formats import Example
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
        unanswerable: the answer that says the question cannot be answered, when the benchmark
            scores answerability (VizWiz): its probability gives the answerability prediction.
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
    unanswerable: str | None = None
    refines: str | None = None
    scored: Callable[[Example], bool] = every

    def result(self, ex: Example, answer: str) -> dict[str, Any]:
        """One entry of the results file this benchmark's evaluation reads."""
        return {self.id_field: self.result_id(ex), self.answer_field: answer}


@cache
def formats() -> dict[str, DataFormat]:
    """Every ``DataFormat`` of this package, by name."""
    out: dict[str, DataFormat] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        fmt = getattr(import_module(f"{__name__}.{info.name}"), "FORMAT", None)
        if isinstance(fmt, DataFormat):
            out[fmt.name] = fmt
    return out


def get_format(name: str) -> DataFormat:
    """The format called ``name``, or the ``FORMAT`` of the module ``name`` (a dataset kept
    outside this package: ``format: mylab.datasets.foo``); else an error listing the known ones."""
    known = formats()
    if name in known:
        return known[name]
    try:
        fmt = getattr(import_module(name), "FORMAT", None)
    except ModuleNotFoundError as e:  # the module itself is missing, not one it imports
        if e.name is None or not name.startswith(e.name):
            raise
        fmt = None
    if not isinstance(fmt, DataFormat):
        raise ValueError(f"unknown dataset format {name!r}; expected one of {sorted(known)}, or "
                         "an importable module that defines FORMAT = DataFormat(...)")
    return fmt


def detect_format(questions: str | Path, annotations: str | Path | None = None) -> DataFormat:
    """The format of a questions file (or COCO-QA folder), recognised from its content."""
    from vqa._io import read_json

    data = None if Path(questions).is_dir() else read_json(questions)
    found = [f for f in formats().values() if f.detect(data, annotations)]
    refined = {f.refines for f in found}
    found = [f for f in found if f.name not in refined]
    if len(found) != 1:
        what = "no known format" if not found else f"several formats ({[f.name for f in found]})"
        raise ValueError(f"{questions}: {what} matches this file; name it with --dataset "
                         f"(one of {sorted(formats())})")
    return found[0]


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
