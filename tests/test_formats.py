"""Reading and validating the official question / annotation files."""

import json
from pathlib import Path

import pytest

from vqa.data.datasets.vqa import load_vqa
from vqa.data.example import image_paths


def write(path: Path, obj: object) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


def official(tmp_path: Path, n: int = 2) -> tuple[str, str, dict, dict]:
    qs = {"data_subtype": "val2014", "questions": [
        {"image_id": 42 + i, "question": f"What is {i}?", "question_id": 420 + i} for i in range(n)]}
    anns = {"annotations": [{
        "question_id": 420 + i, "image_id": 42 + i, "question_type": "what is",
        "answer_type": "other", "multiple_choice_answer": "cat",
        "answers": [{"answer": "cat", "answer_confidence": "yes", "answer_id": k + 1}
                    for k in range(10)]} for i in range(n)]}
    return write(tmp_path / "q.json", qs), write(tmp_path / "a.json", anns), qs, anns


def test_joins_questions_and_annotations(tmp_path: Path) -> None:
    q, a, _, _ = official(tmp_path)
    examples, subtype = load_vqa(q, a)
    assert subtype == "val2014"
    assert [e.question_id for e in examples] == [420, 421]
    assert examples[0].answers == ("cat",) * 10
    assert examples[0].answer_type == "other" and examples[0].multiple_choice_answer == "cat"


def test_test_split_without_annotations(tmp_path: Path) -> None:
    q, _, _, _ = official(tmp_path)
    examples, _ = load_vqa(q)
    assert examples[1].answers == () and examples[1].answer_type is None


def test_extra_fields_are_kept(tmp_path: Path) -> None:
    _, _, qs, anns = official(tmp_path)
    anns["annotations"][0]["grounding"] = {"boxes": [[0, 0, 1, 1]], "word_positions": [2]}
    examples, _ = load_vqa(write(tmp_path / "q.json", qs), write(tmp_path / "a.json", anns))
    assert examples[0].extra["grounding"]["word_positions"] == [2]


def test_question_without_annotation(tmp_path: Path) -> None:
    _, _, _, anns = official(tmp_path)
    del anns["annotations"][1]
    a = write(tmp_path / "a.json", anns)
    with pytest.raises(ValueError, match=r"a\.json: no annotation for question_id 421"):
        load_vqa(tmp_path / "q.json", a)


def test_annotation_without_question(tmp_path: Path) -> None:
    _, _, qs, _ = official(tmp_path)
    del qs["questions"][0]
    q = write(tmp_path / "q.json", qs)
    with pytest.raises(ValueError, match=r"annotation\(s\) have no question .*\[420\]"):
        load_vqa(q, tmp_path / "a.json")


def test_image_id_mismatch(tmp_path: Path) -> None:
    _, _, _, anns = official(tmp_path)
    anns["annotations"][0]["image_id"] = 7
    a = write(tmp_path / "a.json", anns)
    with pytest.raises(ValueError, match="question_id 420 has image_id 7"):
        load_vqa(tmp_path / "q.json", a)


def test_malformed_json_names_file_and_line(tmp_path: Path) -> None:
    p = tmp_path / "q.json"
    p.write_text('{"questions": [\n{"image_id": 1,\n}]}')
    with pytest.raises(ValueError, match=r"q\.json: not valid JSON \(line 3, column 1: trailing comma"):
        load_vqa(p)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda qs, a: qs["questions"][1].pop("question"), "question_id 421 has no 'question'"),
    (lambda qs, a: qs["questions"][0].update(image_id="42"),
     "question_id 420 field 'image_id' should be int, got str"),
    (lambda qs, a: qs["questions"].append(dict(qs["questions"][0])),
     "question_id 420 appears more than once"),
    (lambda qs, a: qs.pop("questions"), "expected a JSON object with a 'questions' list"),
    (lambda qs, a: a["annotations"][0].update(answers=[]),
     "question_id 420 has 0 answers; the VQA format has 10 per question"),
    (lambda qs, a: a["annotations"][0].update(answers=a["annotations"][0]["answers"][:3]),
     "a.json: question_id 420 has 3 answers"),
    (lambda qs, a: qs["questions"][0].update(question=""), r"q\.json: question_id 420 has an empty question"),
    (lambda qs, a: qs["questions"][1].update(question=" \t "), "question_id 421 has an empty question"),
    (lambda qs, a: a["annotations"][1]["answers"].__setitem__(3, {"answer": 5}),
     "question_id 421 answer 3 should be an object"),
    (lambda qs, a: a["annotations"][1].pop("answer_type"), "question_id 421 has no 'answer_type'"),
])
def test_malformed_entries(tmp_path: Path, mutate, message: str) -> None:
    _, _, qs, anns = official(tmp_path)
    mutate(qs, anns)
    q, a = write(tmp_path / "q.json", qs), write(tmp_path / "a.json", anns)
    with pytest.raises(ValueError, match=message):
        load_vqa(q, a)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"nope\.json"):
        load_vqa(tmp_path / "nope.json")


def test_coco_image_names_and_missing_image(tmp_path: Path) -> None:
    q, a, _, _ = official(tmp_path)
    examples, subtype = load_vqa(q, a)
    (tmp_path / "COCO_val2014_000000000042.jpg").touch()
    template = "COCO_{data_subtype}_{image_id:012d}.jpg"
    paths = image_paths(examples[:1], tmp_path, template, subtype)
    assert paths[42].name == "COCO_val2014_000000000042.jpg"
    with pytest.raises(FileNotFoundError,
                       match=r"COCO_val2014_000000000043\.jpg: image 43 not found .*question_id 421"):
        image_paths(examples, tmp_path, template, subtype)
