"""Small copies of each dataset's release, written in its official layout (file names, folders,
JSON structure and fields as each release documents them), with tiny images.

Each ``make_*`` writes one dataset under ``root`` and returns its data config: ``{"train": split,
"val": split}`` as ``data.train`` / ``data.val`` take them, plus the image folders to extract
features from (``"images"``: {cache name: folder}) and the extraction naming (``"ids"``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from PIL import Image

COLOURS = {"red": (220, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 220)}


def _colour(rng: random.Random) -> str:
    """Mostly red: one epoch learns the majority answer, so scores are not all zero."""
    return rng.choices(list(COLOURS), weights=(4, 1, 1))[0]


def _image(path: Path, colour: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), COLOURS[colour]).save(path)


def _write(path: Path, data: Any) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return str(path)


def _vqa_answers(answer: str, raw: bool = False) -> list[dict[str, Any]]:
    """10 VQA answer records: 7 give ``answer``, 3 say "maybe" something else."""
    out = []
    for i, a in enumerate([answer] * 7 + ["yes", "2", answer]):
        out.append({"answer": a, "answer_confidence": "yes", "answer_id": i + 1,
                    **({"raw_answer": a.capitalize()} if raw else {})})
    return out


def make_vqacp(root: Path, n: int = 16) -> dict[str, Any]:
    """VQA-CP v2: bare JSON lists; both splits draw on COCO train2014 and val2014 images."""
    rng = random.Random(0)
    coco = root / "coco"
    data: dict[str, Any] = {"images": {}, "ids": "number"}
    for split, start in (("train", 0), ("test", 1000)):
        questions, annotations = [], []
        for k in range(n if split == "train" else n // 2):
            coco_split = ("train2014", "val2014")[k % 2]
            image_id = start + k + (500000 if coco_split == "val2014" else 0)
            colour = _colour(rng)
            _image(coco / coco_split / f"COCO_{coco_split}_{image_id:012d}.jpg", colour)
            qid = image_id * 1000
            questions.append({"image_id": image_id, "question": "What color is the image?",
                              "question_id": qid, "coco_split": coco_split})
            annotations.append({"question_type": "what color is the", "multiple_choice_answer":
                                colour, "answers": _vqa_answers(colour), "image_id": image_id,
                                "answer_type": "other", "question_id": qid,
                                "coco_split": coco_split})
        name = "train" if split == "train" else "val"
        data[name] = {"format": "vqacp", "images": str(coco),
                      "questions": _write(root / f"vqacp_v2_{split}_questions.json", questions),
                      "annotations": _write(root / f"vqacp_v2_{split}_annotations.json",
                                            annotations)}
    data["images"] = {"train2014": coco / "train2014", "val2014": coco / "val2014"}
    return data


def make_okvqa(root: Path, n: int = 16) -> dict[str, Any]:
    """OK-VQA: the VQA format; 10 answers are 5 annotators' answers each given twice, with
    ``raw_answer``; ``question_type`` is a knowledge category code."""
    rng = random.Random(1)
    data: dict[str, Any] = {"images": {}, "ids": "number"}
    for split in ("train2014", "val2014"):
        questions, annotations = [], []
        for k in range(n if split == "train2014" else n // 2):
            image_id = 100 + k if split == "train2014" else 600 + k
            colour = _colour(rng)
            _image(root / "coco" / split / f"COCO_{split}_{image_id:012d}.jpg", colour)
            qid = image_id * 10 + 5
            five = [colour, colour, colour, "paint", colour]
            answers = [{"answer_id": i + 1, "raw_answer": a.capitalize(), "answer_confidence":
                        "yes", "answer": a} for i, a in enumerate(five + five)]
            questions.append({"image_id": image_id, "question": "What is this color called?",
                              "question_id": qid})
            annotations.append({"image_id": image_id, "answer_type": "other", "question_type":
                                rng.choice(["one", "eight", "other"]), "question_id": qid,
                                "answers": answers, "confidence": 3})
        info = {"year": 2019, "version": "1.0", "description": "OK-VQA"}
        q = _write(root / f"OpenEnded_mscoco_{split}_questions.json", {
            "license": {}, "data_subtype": split, "task_type": "Open-Ended", "questions": questions,
            "info": info, "data_type": "mscoco"})
        a = _write(root / f"mscoco_{split}_annotations.json", {
            "license": {}, "data_subtype": split, "annotations": annotations, "info": info,
            "data_type": "mscoco", "question_types": {"one": "Vehicles and Transportation"}})
        name = "train" if split == "train2014" else "val"
        data[name] = {"format": "okvqa", "questions": q, "annotations": a,
                      "images": str(root / "coco" / split)}
        data["images"][split] = root / "coco" / split
    return data


def make_vizwiz(root: Path, n: int = 16) -> dict[str, Any]:
    """VizWiz-VQA: Annotations/{train,val}.json lists keyed by image file name, 10 answers with
    confidence, answer types including ``unanswerable``, and ``answerable``."""
    rng = random.Random(2)
    data: dict[str, Any] = {"images": {}, "ids": "name"}
    for split in ("train", "val"):
        entries = []
        for k in range(n if split == "train" else n // 2):
            name = f"VizWiz_{split}_{k:08d}.jpg"
            colour = _colour(rng)
            _image(root / split / name, colour)
            blurry = k % 4 == 3
            answer = "unanswerable" if blurry else colour
            answers = [{"answer": answer, "answer_confidence": "yes"}] * 8 + [
                {"answer": "unsuitable", "answer_confidence": "maybe"}] * 2
            entries.append({"image": name, "question": "What color is this?", "answers": answers,
                            "answer_type": "unanswerable" if blurry else "other",
                            "answerable": 0 if blurry else 1})
        data[split] = {"format": "vizwiz", "images": str(root / split),
                       "questions": _write(root / "Annotations" / f"{split}.json", entries)}
        data["images"][split] = root / split
    return data


def make_gqa(root: Path, n: int = 16) -> dict[str, Any]:
    """GQA: questions/{train,val}_balanced_questions.json, objects keyed by question id (leading
    zeros kept), image ids with and without the ``n`` prefix, images under images/."""
    rng = random.Random(3)
    kinds = [("query", "attr", "What color is it?", None), ("verify", "attr", "Is it red?", "red"),
             ("choose", "attr", "Is it red or blue?", None), ("logical", "obj", "Is there a "
             "red or blue thing?", None), ("compare", "rel", "Are they the same color?", None)]
    for split in ("train", "val"):
        questions = {}
        for k in range(n if split == "train" else n // 2):
            image = f"n{1000 + k}" if (split == "val" and k % 2) else str(2354786 + k + (
                100 if split == "val" else 0))
            colour = _colour(rng)
            _image(root / "images" / f"{image}.jpg", colour)
            structural, semantic, text, asked = kinds[k % len(kinds)]
            answer = colour if structural == "query" else (
                "yes" if asked is None or asked == colour else "no")
            qid = f"{k:08d}" if split == "train" else f"2{k:07d}"
            questions[qid] = {
                "semantic": [{"operation": "select", "dependencies": [], "argument": "thing (1)"}],
                "entailed": [], "equivalent": [qid], "question": text, "imageId": image,
                "isBalanced": not (split == "val" and k == 6),  # eval.py skips unbalanced ones
                "groups": {"global": None, "local": "10q-thing"},
                "answer": answer, "semanticStr": "select: thing (1)", "annotations": {
                    "answer": {}, "question": {}, "fullAnswer": {}},
                "types": {"detailed": "chooseAttr", "semantic": semantic,
                          "structural": structural},
                "fullAnswer": f"The answer is {answer}."}
        data_split = {"format": "gqa", "images": str(root / "images"), "questions": _write(
            root / "questions" / f"{split}_balanced_questions.json", questions)}
        if split == "train":
            data: dict[str, Any] = {"train": data_split}
        else:
            data["val"] = data_split
    data.update({"images": {"all": root / "images"}, "ids": "name", "shared_cache": True})
    return data


CLEVR_PROGRAMS = {
    "count": ([{"inputs": [], "function": "scene", "value_inputs": []},
               {"inputs": [0], "function": "filter_color", "value_inputs": ["red"]},
               {"inputs": [1], "function": "count", "value_inputs": []}], "How many red things?"),
    "exist": ([{"inputs": [], "function": "scene", "value_inputs": []},
               {"inputs": [0], "function": "filter_color", "value_inputs": ["blue"]},
               {"inputs": [1], "function": "exist", "value_inputs": []}], "Is there a blue thing?"),
    "query_color": ([{"inputs": [], "function": "scene", "value_inputs": []},
                     {"inputs": [0], "function": "unique", "value_inputs": []},
                     {"inputs": [1], "function": "query_color", "value_inputs": []}],
                    "What color is the thing?"),
}


def make_clevr(root: Path, n: int = 16) -> dict[str, Any]:
    """CLEVR v1.0: CLEVR_v1.0/questions/CLEVR_{split}_questions.json with programs of
    ``{"inputs", "function", "value_inputs"}`` nodes, images under images/{split}/."""
    rng = random.Random(4)
    base = root / "CLEVR_v1.0"
    data: dict[str, Any] = {"images": {}, "ids": "name"}
    for split in ("train", "val"):
        questions = []
        for k in range(n if split == "train" else n // 2):
            image = f"CLEVR_{split}_{k // 2:06d}.png"
            colour = _colour(rng)
            _image(base / "images" / split / image, colour)
            function = list(CLEVR_PROGRAMS)[k % 3]
            program, text = CLEVR_PROGRAMS[function]
            answer = {"count": "1" if colour == "red" else "0", "exist": "yes" if colour == "blue"
                      else "no", "query_color": colour}[function]
            questions.append({"image_index": k // 2, "program": program, "question_index": k,
                              "image_filename": image, "question_family_index": k % 3,
                              "split": split, "answer": answer, "question": text})
        info = {"split": split, "license": "Creative Commons Attribution (CC BY 4.0)",
                "version": "1.0", "date": "2/14/2017"}
        data[split] = {"format": "clevr", "images": str(base / "images" / split), "questions":
                       _write(base / "questions" / f"CLEVR_{split}_questions.json",
                              {"info": info, "questions": questions})}
        data["images"][split] = base / "images" / split
    return data


MAKERS = {"vqacp": make_vqacp, "okvqa": make_okvqa, "vizwiz": make_vizwiz, "gqa": make_gqa,
          "clevr": make_clevr}
CONFIGS = {"vqacp": "configs/vqacp2/alternating_resnet152.yaml",
           "okvqa": "configs/okvqa/alternating_resnet152.yaml",
           "vizwiz": "configs/vizwiz/alternating_resnet152.yaml",
           "gqa": "configs/gqa/alternating_resnet152.yaml",
           "clevr": "configs/clevr/alternating_resnet152.yaml"}
