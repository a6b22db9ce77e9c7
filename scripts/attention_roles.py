"""Benchmark: which object does each co-attention level attend to, in questions about two objects?

On the shapes val split, for the families whose questions name two objects (relation, compare:
box 1 is the object named first, box 2 the one named second), per checkpoint and attention level:
the family's official VQA accuracy, where the image attention's most attended region falls (box 1
only, box 2 only, both where the boxes overlap on it, neither) and the mean attention mass inside
each box. Boxes go onto the region grid as the ``Grounding`` hook puts them
(``vqa.data.grounding.box_pixels``: the resized pixels a box touches; ``region_cover``: each
region's share of them); a region is in a box when its share is positive, as pointing accuracy counts it.

    python scripts/attention_roles.py CKPT [CKPT ...] [--data data/shapes] \
        [--families relation compare] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from vqa._io import read_json, write_json
from vqa.data.grounding import box_pixels, region_cover
from vqa.evaluation import question_scores
from vqa.inspector import Inspector

COLUMNS = ("box1", "box2", "both", "none", "mass1", "mass2")


@torch.no_grad()
def answer(inspector: Inspector, questions: list[dict], image_dir: Path, batch: int = 250
           ) -> tuple[list[str], torch.Tensor, dict[int, tuple[int, int]]]:
    """Every question's answer, image attention (Q, L, N), and each image's original (w, h)."""
    pipe = inspector.pipeline
    ids = sorted({q["image_id"] for q in questions})
    originals, raw = {}, []
    for i in ids:
        with Image.open(image_dir / f"shapes_val_{i:012d}.png") as img:
            originals[i] = img.size
            raw.append(pipe.image(img))  # (3, H, W) uint8
    images = torch.stack(raw)  # (I, 3, H, W)
    row = {i: k for k, i in enumerate(ids)}
    image_of = torch.tensor([row[q["image_id"]] for q in questions])  # (Q,)
    answers, attention = [], []
    for s in range(0, len(questions), batch):
        enc = pipe.encode([q["question"] for q in questions[s:s + batch]])
        used, index = torch.unique(image_of[s:s + batch], return_inverse=True)  # each image once
        out = inspector.module.model(question=torch.from_numpy(enc.ids),
                                     question_mask=torch.from_numpy(enc.mask),
                                     image=pipe.normalize(images[used]), image_index=index)
        answers += [pipe.answers.tokens[a] for a in out["logits"].argmax(-1).tolist()]
        attention.append(out["image_attention"].float())  # (B, L, N)
    return answers, torch.cat(attention), originals


def accuracies(questions: Path, annotations: Path, ids: list[int], answers: list[str]
               ) -> dict[int, float]:
    """Official VQA accuracy (0 to 1) of each answer, by question id."""
    with tempfile.TemporaryDirectory() as tmp:
        results = Path(tmp) / "results.json"
        write_json(results, [{"question_id": q, "answer": a} for q, a in zip(ids, answers, strict=True)])
        order, (scores,), _ = question_scores(questions, annotations, [results])
    return dict(zip(order, scores.tolist(), strict=True))


def roles(attention: torch.Tensor, cover: torch.Tensor) -> dict[str, torch.Tensor]:
    """``attention`` (Q, L, N), ``cover`` (Q, 2, N) of box 1 and box 2 -> per level (L,), in percent:
    where the argmax region falls (box1, box2, both, none) and the mean mass in each box."""
    top = attention.argmax(-1)  # (Q, L)
    hit = cover.gather(2, top[:, None].expand(-1, 2, -1)) > 0  # (Q, 2, L)
    in1, in2 = hit[:, 0], hit[:, 1]  # (Q, L)
    mass = torch.einsum("qln,qbn->qbl", attention, cover)  # (Q, L, N) x (Q, 2, N) -> (Q, 2, L)
    share = {"box1": in1 & ~in2, "box2": in2 & ~in1, "both": in1 & in2, "none": ~in1 & ~in2}
    out = {k: 100 * v.float().mean(0) for k, v in share.items()}
    return out | {"mass1": 100 * mass[:, 0].mean(0), "mass2": 100 * mass[:, 1].mean(0)}


def analyse(checkpoint: str, data: Path, families: list[str]) -> dict[str, Any]:
    """Overall accuracy and, per family, its accuracy and the per-level ``roles``."""
    qfile = data / "v2_OpenEnded_shapes_val_questions.json"
    afile = data / "v2_shapes_val_annotations.json"
    questions = read_json(qfile)["questions"]
    by_id = {a["question_id"]: a for a in read_json(afile)["annotations"]}
    notes = [by_id[q["question_id"]] for q in questions]  # question-file order
    inspector = Inspector.from_checkpoint(checkpoint)
    answers, attention, originals = answer(inspector, questions, data / "val")
    acc = accuracies(qfile, afile, [q["question_id"] for q in questions], answers)
    size, grid = inspector.pipeline.image_size, inspector.pipeline.region_grid(attention.shape[-1])
    result: dict[str, Any] = {"accuracy": 100 * sum(acc.values()) / len(acc), "families": {}}
    for family in families:
        rows = [i for i, n in enumerate(notes) if n["question_type"] == family]
        two = [i for i in rows if len(notes[i]["grounding"]["boxes"]) >= 2]
        if not two:
            raise ValueError(f"no {family} question names two objects")
        masks = torch.stack([box_pixels([b], originals[questions[i]["image_id"]], size)
                             for i in two for b in notes[i]["grounding"]["boxes"][:2]])
        cover = region_cover(masks, grid).unflatten(0, (len(two), 2))  # (2Q', H, W) -> (Q', 2, N)
        stats = roles(attention[two], cover)
        result["families"][family] = {
            "questions": len(rows), "two_boxes": len(two),
            "accuracy": 100 * sum(acc[questions[i]["question_id"]] for i in rows) / len(rows),
            "levels": {lv: {k: float(v[li]) for k, v in stats.items()}
                       for li, lv in enumerate(inspector.module.model.maps.regions)}}
    return result


def table(result: dict[str, Any]) -> str:
    """The per-family, per-level rows as a markdown table."""
    head = ["family", "n", "acc", "level", *COLUMNS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for family, f in result["families"].items():
        for level, s in f["levels"].items():
            cells = [family, str(f["two_boxes"]), f"{f['accuracy']:.1f}", level,
                     *(f"{s[c]:.1f}" for c in COLUMNS)]
            lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--data", type=Path, default=Path("data/shapes"))
    parser.add_argument("--families", nargs="+", default=["relation", "compare"])
    parser.add_argument("--out", type=Path, help="also write the numbers here as JSON")
    args = parser.parse_args()
    results = {}
    for checkpoint in args.checkpoints:
        results[checkpoint] = r = analyse(checkpoint, args.data, args.families)
        print(f"\n## {checkpoint}\n\noverall accuracy {r['accuracy']:.1f}; argmax region and "
              f"attention mass (%) per box: box 1 named first, box 2 second\n\n{table(r)}", flush=True)
    if args.out:
        write_json(args.out, results, indent=2)


if __name__ == "__main__":
    main()
