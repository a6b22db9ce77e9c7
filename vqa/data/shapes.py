"""The embedded shapes dataset: procedurally drawn scenes written in the official VQA v2 format.

Each 64 x 64 scene holds 2-5 objects, each a unique (colour, shape) pair, of two sizes, at free
positions that do not align with any feature grid. Eight question families need the image:
``color``, ``shape``, ``size``, ``position``, ``exist``, ``count``, ``compare`` and ``relation``;
answers are balanced within a family where the family allows. Every annotation has ten "human"
answers (surface variants that the official normalisation undoes, and now and then a wrong one,
never more than two) and a ``grounding`` field: the boxes ``[x0, y0, x1, y1]`` (pixels) of the
objects the question refers to and the positions, in ``tokenize(question)``, of the words that
refer to them. Because the generator knows where everything is, attention can be scored.

Each split also gets a boxes file (``vqa.data.boxes``): per image, candidate boxes for region
features, its objects' boxes and 2-5 boxes of empty background, shuffled. They are drawn from a
random stream of their own, so the questions and images of a seed are the same with or without
them.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw
from tqdm import tqdm

from vqa._io import atomic_save, write_json
from vqa.data.boxes import BOXES_FORMAT

QUESTIONS_FILE = "v2_OpenEnded_shapes_{split}_questions.json"
ANNOTATIONS_FILE = "v2_shapes_{split}_annotations.json"
BOXES_FILE = "shapes_{split}_boxes.json"
IMAGE_TEMPLATE = "shapes_{data_subtype}_{image_id:012d}.png"
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40), "green": (40, 200, 60), "blue": (50, 90, 240), "yellow": (240, 220, 40)}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
SIZES: dict[str, int] = {"small": 10, "large": 18}  # side of the bounding box in pixels
FAMILIES: tuple[str, ...] = ("color", "shape", "size", "position", "exist", "count", "compare",
                             "relation")
ANSWER_TYPE = {"exist": "yes/no", "compare": "yes/no", "relation": "yes/no", "count": "number"}
# Surface variants a careless annotator types; the official normalisation maps them back.
VARIANTS = {"yes": ("Yes", "yes."), "no": ("No", "no!"), "0": ("zero", "none"), "1": ("one",),
            "2": ("two",), "3": ("three",), "4": ("four",), "5": ("five",)}
BACKGROUND = (20, 20, 20)
MARGIN = 4  # pixels: position and relation questions are only asked when this clear


@dataclass(frozen=True)
class Obj:
    color: str
    shape: str
    size: str
    box: tuple[int, int, int, int]  # x0, y0, x1, y1

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2


# A question: text, answer, referred objects, positions of the referring words.
Question = tuple[str, str, list[Obj], list[int]]


def _scene(rng: random.Random, image_size: int) -> list[Obj]:
    """2-5 objects with unique (colour, shape), placed without overlap (1 px gap)."""
    while True:
        pairs = rng.sample([(c, s) for c in COLORS for s in SHAPES], rng.randint(2, 5))
        objs: list[Obj] = []
        for color, shape in pairs:
            size = rng.choice(list(SIZES))
            side = SIZES[size]
            for _ in range(100):
                x, y = rng.randint(0, image_size - side), rng.randint(0, image_size - side)
                box = (x, y, x + side, y + side)
                if all(box[0] > o.box[2] or o.box[0] > box[2] or box[1] > o.box[3]
                       or o.box[1] > box[3] for o in objs):
                    objs.append(Obj(color, shape, size, box))
                    break
        if len(objs) == len(pairs):
            return objs


def draw(objs: list[Obj], image_size: int) -> Image.Image:
    img = Image.new("RGB", (image_size, image_size), BACKGROUND)
    d = ImageDraw.Draw(img)
    for o in objs:
        x0, y0, x1, y1 = o.box
        fill = COLORS[o.color]
        if o.shape == "circle":
            d.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
        elif o.shape == "square":
            d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
        else:
            d.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)], fill=fill)
    return img


def candidate_boxes(rng: random.Random, objs: list[Obj], image_size: int) -> list[list[int]]:
    """The objects' boxes and 2-5 object-sized boxes of empty background (clear of every object
    by 1 px; they may overlap each other), shuffled."""
    boxes = [list(o.box) for o in objs]
    for _ in range(rng.randint(2, 5)):
        side = rng.choice(list(SIZES.values()))
        for _ in range(100):
            x, y = rng.randint(0, image_size - side), rng.randint(0, image_size - side)
            box = (x, y, x + side, y + side)
            if all(box[0] > o.box[2] or o.box[0] > box[2] or box[1] > o.box[3]
                   or o.box[1] > box[3] for o in objs):
                boxes.append(list(box))
                break
    rng.shuffle(boxes)
    return boxes


def _unique(objs: list[Obj], attr: str) -> list[Obj]:
    return [o for o in objs if sum(getattr(p, attr) == getattr(o, attr) for p in objs) == 1]


def _color(rng: random.Random, objs: list[Obj], size: int) -> Question | None:
    cands = _unique(objs, "shape")
    if not cands:
        return None
    o = rng.choice(cands)
    return f"What color is the {o.shape}?", o.color, [o], [4]


def _shape(rng: random.Random, objs: list[Obj], size: int) -> Question | None:
    cands = _unique(objs, "color")
    if not cands:
        return None
    o = rng.choice(cands)
    return f"What shape is the {o.color} object?", o.shape, [o], [4]


def _size(rng: random.Random, objs: list[Obj], size: int) -> Question:
    o = rng.choice(objs)
    return f"What size is the {o.color} {o.shape}?", o.size, [o], [4, 5]


def _position(rng: random.Random, objs: list[Obj], size: int) -> Question | None:
    axis = rng.randrange(2)
    cands = [o for o in objs if abs(o.centre[axis] - size / 2) >= MARGIN]  # clearly on one side
    if not cands:
        return None
    o = rng.choice(cands)
    x, y = o.centre
    if axis == 0:
        return (f"Is the {o.color} {o.shape} on the left or the right?",
                "left" if x < size / 2 else "right", [o], [2, 3])
    return (f"Is the {o.color} {o.shape} at the top or the bottom?",
            "top" if y < size / 2 else "bottom", [o], [2, 3])


def _exist(rng: random.Random, objs: list[Obj], size: int) -> Question:
    present = {(o.color, o.shape): o for o in objs}
    if rng.random() < 0.5:
        o = rng.choice(objs)
        return f"Is there a {o.color} {o.shape}?", "yes", [o], [3, 4]
    c, s = rng.choice([(c, s) for c in COLORS for s in SHAPES if (c, s) not in present])
    return f"Is there a {c} {s}?", "no", [], [3, 4]


def _count(rng: random.Random, objs: list[Obj], size: int) -> Question:
    if rng.random() < 0.5:
        c = rng.choice(list(COLORS))
        hits = [o for o in objs if o.color == c]
        return f"How many {c} objects are there?", str(len(hits)), hits, [2]
    s = rng.choice(SHAPES)
    hits = [o for o in objs if o.shape == s]
    return f"How many {s}s are there?", str(len(hits)), hits, [2]


def _pair(rng: random.Random, objs: list[Obj], want: bool, test: Callable[[Obj, Obj], bool | None]
          ) -> tuple[Obj, Obj] | None:
    """An ordered pair for which ``test`` is ``want`` (``None`` means too close to call)."""
    pairs = [(a, b) for a in objs for b in objs if a is not b and test(a, b) is want]
    return rng.choice(pairs) if pairs else None


def _compare(rng: random.Random, objs: list[Obj], size: int) -> Question | None:
    word, want = rng.choice(("bigger", "smaller")), rng.random() < 0.5
    rank = {"small": 0, "large": 1}
    sign = 1 if word == "bigger" else -1
    pair = _pair(rng, objs, want, lambda a, b: sign * (rank[a.size] - rank[b.size]) > 0)
    if pair is None:
        return None
    a, b = pair
    return (f"Is the {a.color} {a.shape} {word} than the {b.color} {b.shape}?",
            "yes" if want else "no", [a, b], [2, 3, 7, 8])


def _relation(rng: random.Random, objs: list[Obj], size: int) -> Question | None:
    word, want = rng.choice(("left of", "above")), rng.random() < 0.5
    axis = 0 if word == "left of" else 1

    def before(a: Obj, b: Obj) -> bool | None:
        gap = b.centre[axis] - a.centre[axis]
        return None if abs(gap) < MARGIN else gap > 0  # too close to call: not asked

    pair = _pair(rng, objs, want, before)
    if pair is None:
        return None
    a, b = pair
    return (f"Is the {a.color} {a.shape} {word} the {b.color} {b.shape}?",
            "yes" if want else "no", [a, b], [2, 3, 6, 7] if word == "above" else [2, 3, 7, 8])


GENERATORS: dict[str, Callable[[random.Random, list[Obj], int], Question | None]] = {
    "color": _color, "shape": _shape, "size": _size, "position": _position, "exist": _exist,
    "count": _count, "compare": _compare, "relation": _relation}


def _human_answers(rng: random.Random, answer: str, family: str, pool: list[str]
                   ) -> list[dict[str, Any]]:
    """Ten answers: at least eight correct (some as surface variants), at most two wrong."""
    answers = []
    for k in range(10):
        a = answer
        if k >= 8 and rng.random() < 0.3:
            a = rng.choice([p for p in pool if p != answer])
        elif answer in VARIANTS and rng.random() < 0.15:
            a = rng.choice(VARIANTS[answer])
        answers.append({"answer": a, "answer_confidence": rng.choice(["yes", "yes", "maybe"]),
                        "answer_id": k + 1})
    rng.shuffle(answers)
    for k, a in enumerate(answers):
        a["answer_id"] = k + 1
    return answers


POOLS = {"color": list(COLORS), "shape": list(SHAPES), "size": list(SIZES),
         "position": ["left", "right", "top", "bottom"], "count": [str(i) for i in range(6)],
         "exist": ["yes", "no"], "compare": ["yes", "no"], "relation": ["yes", "no"]}


def _split(root: Path, split: str, n: int, first_image_id: int, rng: random.Random,
           image_size: int, per_image: int, box_rng: random.Random) -> int:
    """Write one split; returns the next free image id."""
    questions, annotations, boxes = [], [], []
    image_id = first_image_id
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    with tqdm(total=n, desc=f"shapes {split}", unit="q") as bar:
        while len(questions) < n:
            objs = _scene(rng, image_size)
            families = rng.sample(FAMILIES, len(FAMILIES))
            made = 0
            for family in families:
                if made == per_image or len(questions) == n:
                    break
                q = GENERATORS[family](rng, objs, image_size)
                if q is None:
                    continue
                text, answer, refs, words = q
                qid = image_id * 10 + made
                questions.append({"image_id": image_id, "question": text, "question_id": qid})
                annotations.append({
                    "question_id": qid, "image_id": image_id, "question_type": family,
                    "answer_type": ANSWER_TYPE.get(family, "other"),
                    "multiple_choice_answer": answer,
                    "answers": _human_answers(rng, answer, family, POOLS[family]),
                    "grounding": {"boxes": [list(o.box) for o in refs], "word_positions": words},
                })
                made += 1
                bar.update()
            boxes.append({"image_id": image_id, "width": image_size, "height": image_size,
                          "boxes": candidate_boxes(box_rng, objs, image_size)})
            img = draw(objs, image_size)
            atomic_save(folder / IMAGE_TEMPLATE.format(data_subtype=split, image_id=image_id),
                        lambda p, img=img: img.save(p, format="PNG"))
            image_id += 1
    info = {"description": "vqa shapes dataset", "version": "1.0"}
    write_json(root / QUESTIONS_FILE.format(split=split), {
        "info": info, "task_type": "Open-Ended", "data_type": "shapes", "data_subtype": split,
        "license": {}, "questions": questions})
    write_json(root / ANNOTATIONS_FILE.format(split=split), {
        "info": info, "data_type": "shapes", "data_subtype": split, "license": {},
        "annotations": annotations})
    write_json(root / BOXES_FILE.format(split=split), {"format": BOXES_FORMAT, "images": boxes})
    return image_id


def make_shapes(out: str | os.PathLike, train: int = 20000, val: int = 2000, seed: int = 0,
                image_size: int = 64, questions_per_image: int = 5) -> Path:
    """Generate the train and val splits under ``out``; deterministic for a seed."""
    if not 1 <= questions_per_image <= len(FAMILIES):
        raise ValueError(f"questions_per_image must be in 1..{len(FAMILIES)}")
    if image_size < 2 * max(SIZES.values()):
        raise ValueError(f"image_size must be at least {2 * max(SIZES.values())}")
    root = Path(out)
    rng, box_rng = random.Random(seed), random.Random(f"{seed}-boxes")
    next_id = _split(root, "train", train, 1, rng, image_size, questions_per_image, box_rng)
    _split(root, "val", val, next_id, rng, image_size, questions_per_image, box_rng)
    return root
