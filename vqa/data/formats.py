"""Reading the official dataset files, validated, as ``Example`` lists.

VQA v1 / v2 (``load_vqa``): questions ``{"data_subtype": "val2014", "task_type": "Open-Ended",
"questions": [{"image_id", "question", "question_id"}]}`` (VQA v1 multiple choice adds
``"multiple_choices": [18 answers]`` per question); annotations ``{"annotations": [{"question_id",
"image_id", "question_type", "answer_type", "multiple_choice_answer", "answers": [10 x {"answer",
"answer_confidence", "answer_id"}]}]}``. Fields beyond these (e.g. the shapes dataset's
``grounding``) are kept in ``Example.extra``.

COCO-QA (``load_cocoqa``, Ren et al. 2015): a split folder (``train/``, ``test/``) of line-aligned
text files ``questions.txt``, ``answers.txt`` (one word), ``img_ids.txt`` (COCO ids) and
``types.txt`` (0 object, 1 number, 2 color, 3 location).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vqa._io import file_key, gc_paused, read_json

ANSWER_TYPES: tuple[str, ...] = ("yes/no", "number", "other")
HUMAN_ANSWERS = 10
COCO_TEMPLATE = "COCO_{data_subtype}_{image_id:012d}.jpg"
_QUESTION_FIELDS = {"image_id": int, "question": str, "question_id": int}
_ANNOTATION_FIELDS = {"question_id": int, "image_id": int, "question_type": str,
                      "answer_type": str, "multiple_choice_answer": str, "answers": list}


@dataclass(frozen=True)
class Example:
    """One question, joined with its annotation when the split has one.

    ``image_id`` identifies the image: a COCO id, or (datasets that name images by file) the file
    name's stem. ``image_file`` is the image's path under the split's ``images`` folder when the
    dataset names it (otherwise the split's ``image_template`` gives it). ``types`` holds the
    categories the benchmark reports accuracy per (``{"answer_type": "yes/no"}``, GQA's
    ``{"structural": ..., "semantic": ...}``). ``answerable`` is VizWiz's answerability label.
    """

    question_id: int
    image_id: int | str
    question: str
    answers: tuple[str, ...] = ()
    answer_type: str | None = None
    question_type: str | None = None
    multiple_choice_answer: str | None = None
    multiple_choices: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)
    image_file: str | None = None
    types: dict[str, str] = field(default_factory=dict)
    answerable: bool | None = None


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


COCOQA_FILES = ("questions.txt", "answers.txt", "img_ids.txt", "types.txt")
COCOQA_TYPES = ("object", "number", "color", "location")


def load_cocoqa(folder: str | os.PathLike) -> list[Example]:
    """Read one COCO-QA split folder. Question ids are line numbers (COCO-QA has none); each
    question has its one answer, scored by exact match; the answer type is ``number`` for
    number questions and ``other`` otherwise."""
    folder = Path(folder)
    columns = []
    for name in COCOQA_FILES:
        path = folder / name
        if not path.is_file():
            raise FileNotFoundError(f"{path}: COCO-QA file not found (a split folder holds "
                                    f"{', '.join(COCOQA_FILES)})")
        columns.append(path.read_text(encoding="utf-8").splitlines())
    if len({len(c) for c in columns}) != 1:
        sizes = ", ".join(f"{n}: {len(c)}" for n, c in zip(COCOQA_FILES, columns, strict=True))
        raise ValueError(f"{folder}: COCO-QA files differ in length ({sizes} lines)")
    examples = []
    for i, (question, answer, image_id, kind) in enumerate(zip(*columns, strict=True)):
        line = f"line {i + 1}"
        if not image_id.strip().isdigit():
            raise ValueError(f"{folder / 'img_ids.txt'}: {line}: expected a COCO image id, "
                             f"got {image_id!r}")
        if kind.strip() not in ("0", "1", "2", "3"):
            raise ValueError(f"{folder / 'types.txt'}: {line}: expected a type 0-3, got {kind!r}")
        if not answer.strip():
            raise ValueError(f"{folder / 'answers.txt'}: {line}: empty answer")
        if not question.strip():
            raise ValueError(f"{folder / 'questions.txt'}: {line}: empty question")
        qtype = COCOQA_TYPES[int(kind)]
        atype = "number" if qtype == "number" else "other"
        examples.append(Example(i, int(image_id), question.strip(), (answer.strip(),), atype,
                                qtype, answer.strip(), types={"question_type": qtype}))
    return examples


def image_path(ex: Example, images: str | os.PathLike, template: str = COCO_TEMPLATE,
               data_subtype: str | None = None) -> Path:
    """The image file of an example: its ``image_file``, or ``template`` formatted with its
    ``image_id`` and ``data_subtype``, under ``images``."""
    return Path(images) / (ex.image_file or template.format(image_id=ex.image_id,
                                                            data_subtype=data_subtype))


def image_paths(examples: list[Example], images: str | os.PathLike,
                template: str = COCO_TEMPLATE, data_subtype: str | None = None
                ) -> dict[int | str, Path]:
    """Image file per image id (the example's ``image_file``, or ``template`` formatted with
    ``image_id`` and ``data_subtype``); a missing file is an error naming the file and a question
    that needs it."""
    out: dict[int | str, Path] = {}
    for ex in examples:
        if ex.image_id in out:
            continue
        path = image_path(ex, images, template, data_subtype)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: image {ex.image_id} not found (needed by question_id "
                                    f"{ex.question_id}); check the images folder and template")
        out[ex.image_id] = path
    return out


@dataclass
class Split:
    """One split of a dataset on disk.

    Args:
        questions: the questions file (VQA: questions JSON; GQA: ``*_balanced_questions.json``;
            VizWiz: ``train.json`` ...; COCO-QA: the split folder).
        annotations: the annotations file of formats that keep them apart (VQA, VQA-CP, OK-VQA;
            ``None`` for test splits).
        images: folder of image files.
        image_template: file name per image, formatted with ``image_id`` and ``data_subtype``
            (formats that name their image files ignore it).
        format: the dataset format (``vqa.data.datasets``): ``vqa`` (VQA v1 / v2, open-ended or
            multiple choice), ``cocoqa``, ``vqacp``, ``vizwiz``, ``gqa``, ``clevr``, ``okvqa``.
        data_subtype: overrides the questions file's (COCO-QA has none: ``train2014``, ``val2014``).
        features: feature cache folder(s) (``vqa extract-features``); when given, the model reads
            cached grid features instead of images (an image is read from the first cache
            holding it).
    """

    questions: str
    annotations: str | None = None
    images: str | None = None
    image_template: str = COCO_TEMPLATE
    format: str = "vqa"
    data_subtype: str | None = None
    features: str | list[str] | None = None

    def __post_init__(self) -> None:
        self.data_format()  # an unknown format fails here, naming the known ones

    def data_format(self) -> Any:
        """The split's ``vqa.data.datasets.DataFormat``."""
        from vqa.data.datasets import get_format

        return get_format(self.format)

    @property
    def feature_caches(self) -> list[str]:
        """The feature cache folders (none: the split reads images)."""
        return [self.features] if isinstance(self.features, str) else list(self.features or [])

    def load(self) -> tuple[list[Example], str | None]:
        """The split's examples and data subtype."""
        examples, subtype = self.data_format().read(self.questions, self.annotations)
        return examples, self.data_subtype or subtype

    def key(self) -> list[Any]:
        """What the split's preprocessing depends on (see ``vqa.data.preprocess.cached``)."""
        return [self.format, file_key(self.questions),
                file_key(self.annotations) if self.annotations else None]
