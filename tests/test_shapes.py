"""The shapes generator writes valid, deterministic, grounded VQA v2-format data."""

import collections
import hashlib
import json
from pathlib import Path

from PIL import Image

from vqa.data.datasets.vqa import load_vqa
from vqa.data.shapes import (
    ANNOTATIONS_FILE,
    COLORS,
    FAMILIES,
    IMAGE_TEMPLATE,
    QUESTIONS_FILE,
    SHAPES,
    make_shapes,
)
from vqa.data.tokenizers import tokenize


def digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.name.encode() + p.read_bytes())
    return h.hexdigest()


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    a = make_shapes(tmp_path / "a", train=40, val=10, seed=7)
    b = make_shapes(tmp_path / "b", train=40, val=10, seed=7)
    c = make_shapes(tmp_path / "c", train=40, val=10, seed=8)
    assert digest(a) == digest(b) != digest(c)


def test_official_format_and_counts(shapes_dir: Path) -> None:
    for split, n in (("train", 300), ("val", 100)):
        examples, subtype = load_vqa(shapes_dir / QUESTIONS_FILE.format(split=split),
                                     shapes_dir / ANNOTATIONS_FILE.format(split=split))
        assert len(examples) == n and subtype == split
        for ex in examples:
            assert len(ex.answers) == 10
            assert ex.answer_type in ("yes/no", "number", "other")
            assert ex.question_type in FAMILIES
            img = shapes_dir / split / IMAGE_TEMPLATE.format(data_subtype=split, image_id=ex.image_id)
            assert img.is_file()
    train_ids = {e.image_id for e in load_vqa(shapes_dir / QUESTIONS_FILE.format(split="train"))[0]}
    val_ids = {e.image_id for e in load_vqa(shapes_dir / QUESTIONS_FILE.format(split="val"))[0]}
    assert not train_ids & val_ids


def test_grounding_points_at_the_named_objects(shapes_dir: Path) -> None:
    examples, _ = load_vqa(shapes_dir / QUESTIONS_FILE.format(split="train"),
                           shapes_dir / ANNOTATIONS_FILE.format(split="train"))
    attribute_words = {*COLORS, *SHAPES, *(s + "s" for s in SHAPES)}
    for ex in examples:
        g = ex.extra["grounding"]
        tokens = tokenize(ex.question)
        assert all(tokens[p] in attribute_words for p in g["word_positions"])
        for x0, y0, x1, y1 in g["boxes"]:
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
        if ex.question_type in ("relation", "compare"):
            assert len(g["boxes"]) == 2 and len(g["word_positions"]) == 4
        if ex.question_type == "count":
            assert len(g["boxes"]) == int(ex.multiple_choice_answer)


def test_referred_object_is_drawn_in_its_box(shapes_dir: Path) -> None:
    """The pixel at the centre of a referred box has the colour the question names."""
    anns = json.loads((shapes_dir / ANNOTATIONS_FILE.format(split="train")).read_text())
    qs = {q["question_id"]: q for q in json.loads(
        (shapes_dir / QUESTIONS_FILE.format(split="train")).read_text())["questions"]}
    checked = 0
    for a in anns["annotations"]:
        if a["question_type"] != "size":  # "What size is the <colour> <shape>?"
            continue
        color = tokenize(qs[a["question_id"]]["question"])[4]
        x0, y0, x1, y1 = a["grounding"]["boxes"][0]
        img = Image.open(shapes_dir / "train" / IMAGE_TEMPLATE.format(
            data_subtype="train", image_id=a["image_id"])).convert("RGB")
        pixel = img.getpixel((int((x0 + x1) / 2), int((y0 + y1) / 2 + 1)))
        assert sum(abs(p - c) for p, c in zip(pixel, COLORS[color], strict=True)) < 60
        checked += 1
    assert checked > 10


def test_answers_are_balanced(shapes_dir: Path) -> None:
    anns = json.loads((shapes_dir / ANNOTATIONS_FILE.format(split="train")).read_text())
    by_family = collections.defaultdict(collections.Counter)
    for a in anns["annotations"]:
        by_family[a["question_type"]][a["multiple_choice_answer"]] += 1
    assert set(by_family) == set(FAMILIES)
    for family in ("exist", "relation", "position", "size"):
        top, n = by_family[family].most_common(1)[0][1], sum(by_family[family].values())
        assert top / n < 0.7, (family, by_family[family])
