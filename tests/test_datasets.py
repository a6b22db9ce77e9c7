"""VQA v1 multiple choice, COCO-QA, test splits, train+val splits and the preprocessing cache,
on fixtures written in each official format from the tiny shapes set."""

import json
import random
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
from conftest import shapes_split

import vqa.data.datamodule as datamodule_module
from vqa.data import Split, VQADataModule, load_cocoqa, load_vqa
from vqa.data.shapes import IMAGE_TEMPLATE
from vqa.evaluation import evaluate
from vqa.models import HieCoAtt, ParallelCoAttention, SmallCNN
from vqa.training import ResultsWriter, VQAModule


def write(path: Path, obj: object) -> str:
    path.write_text(json.dumps(obj))
    return str(path)


@pytest.fixture(scope="module")
def multiple_choice(shapes_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Split:
    """The shapes val split as a VQA v1 multiple-choice questions file: 6 candidates each,
    spelled as people write them ("Yes", "two.") so the answer must be written back verbatim."""
    out = tmp_path_factory.mktemp("mc")
    val = shapes_split(shapes_dir, "val")
    qs = json.loads(Path(val.questions).read_text())
    anns = {a["question_id"]: a for a in json.loads(Path(val.annotations).read_text())["annotations"]}
    pool = sorted({a["multiple_choice_answer"] for a in anns.values()})
    rng = random.Random(0)
    qs["task_type"] = "Multiple Choice"
    for q in qs["questions"]:
        right = anns[q["question_id"]]["multiple_choice_answer"]
        choices = [right, *rng.sample([p for p in pool if p != right], 4), "unicorn"]
        rng.shuffle(choices)
        q["multiple_choices"] = [c.capitalize() + "." if k % 2 else c for k, c in enumerate(choices)]
    return Split(write(out / "MultipleChoice_questions.json", qs), val.annotations, val.images,
                 IMAGE_TEMPLATE)


def tiny_module(dm: VQADataModule) -> VQAModule:
    torch.manual_seed(0)
    return VQAModule(HieCoAtt(dm.question_vocab_size, dm.answer_vocab_size, SmallCNN((8, 16)),
                              ParallelCoAttention, dim=16, hidden=16, answer_hidden=16))


def predict(dm: VQADataModule, path: Path) -> list[dict]:
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_checkpointing=False, callbacks=[ResultsWriter(str(path))])
    trainer.predict(tiny_module(dm), datamodule=dm, return_predictions=False)
    return json.loads(path.read_text())


def test_multiple_choice_predictions_are_candidates(
        multiple_choice: Split, shapes_dir: Path, tmp_path: Path) -> None:
    examples, _ = load_vqa(multiple_choice.questions, multiple_choice.annotations)
    assert len(examples[0].multiple_choices) == 6
    dm = VQADataModule(shapes_split(shapes_dir, "train"), multiple_choice, image_size=32,
                       batch_size=32)
    choices = dm.dataset("val")[0]["extra"]["choices"]
    assert choices.shape == (6,) and (choices == -1).sum() >= 1  # "unicorn"
    results = predict(dm, tmp_path / "mc_results.json")
    choices = {ex.question_id: ex.multiple_choices for ex in examples}
    assert len(results) == len(examples)
    assert all(r["answer"] in choices[r["question_id"]] for r in results)
    metrics = evaluate(multiple_choice.questions, multiple_choice.annotations,
                       tmp_path / "mc_results.json")
    assert 0 <= metrics["overall"] <= 100
    # An answer outside a question's candidates is rejected, as the official loadRes does.
    results[3]["answer"] = "unicorn horn"
    write(tmp_path / "bad.json", results)
    with pytest.raises(ValueError, match=f"question_id {results[3]['question_id']} .* not one of"):
        evaluate(multiple_choice.questions, multiple_choice.annotations, tmp_path / "bad.json")


def test_test_dev_submission_answers_every_question(shapes_dir: Path, tmp_path: Path) -> None:
    val = shapes_split(shapes_dir, "val")
    test_dev = Split(val.questions, None, val.images, IMAGE_TEMPLATE)  # questions only
    dm = VQADataModule(shapes_split(shapes_dir, "train"), predict=test_dev, image_size=32,
                       batch_size=32)
    item = dm.dataset("predict")[0]
    assert item["target"].sum() == 0 and item["answer_index"] == -100
    results = predict(dm, tmp_path / "test_dev_results.json")
    ids = [q["question_id"] for q in json.loads(Path(val.questions).read_text())["questions"]]
    assert sorted(r["question_id"] for r in results) == sorted(ids)
    assert all(isinstance(r["answer"], str) and r["answer"] for r in results)
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically, no temporary left behind


def cocoqa(root: Path, examples: list, *, types: list[str] | None = None) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    kinds = {"color": "2", "count": "1", "position": "3"}
    columns = {
        "questions.txt": [ex.question.lower().rstrip("?") for ex in examples],
        "answers.txt": [ex.multiple_choice_answer for ex in examples],
        "img_ids.txt": [str(ex.image_id) for ex in examples],
        "types.txt": types or [kinds.get(ex.question_type, "0") for ex in examples],
    }
    for name, lines in columns.items():
        (root / name).write_text("\n".join(lines) + "\n")
    return root


def test_cocoqa_format(shapes_dir: Path, tmp_path: Path) -> None:
    val = shapes_split(shapes_dir, "val")
    examples, _ = load_vqa(val.questions, val.annotations)
    folder = cocoqa(tmp_path / "test", examples)
    read = load_cocoqa(folder)
    assert [e.image_id for e in read] == [e.image_id for e in examples]
    assert read[0].answers == (examples[0].multiple_choice_answer,)
    assert {e.question_type for e in read} <= {"object", "number", "color", "location"}
    assert {e.answer_type for e in read} <= {"number", "other"}

    dm = VQADataModule(Split(str(folder), images=val.images, image_template=IMAGE_TEMPLATE,
                             format="cocoqa", data_subtype="val"), image_size=32)
    ds = dm.dataset("train")
    for i in range(10):  # exact match: one answer scores 1, every other answer 0
        item = ds[i]
        assert item["target"].sum() == 1.0 and item["target"][item["answer_index"]] == 1.0

    bad = cocoqa(tmp_path / "bad", examples[:5], types=["0", "1", "7", "0", "0"])
    with pytest.raises(ValueError, match=r"types\.txt: line 3: expected a type 0-3, got '7'"):
        load_cocoqa(bad)
    (bad / "answers.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="differ in length"):
        load_cocoqa(bad)
    (bad / "img_ids.txt").unlink()
    with pytest.raises(FileNotFoundError, match=r"img_ids\.txt"):
        load_cocoqa(bad)


def test_train_plus_val_split(shapes_dir: Path) -> None:
    train, val = shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val")
    dm = VQADataModule([train, val], val, image_size=32)
    assert len(dm.dataset("train")) == 400
    assert dm.dataset("train")[350]["image"].shape == (3, 32, 32)  # a val image, from val/
    with pytest.raises(ValueError, match="also appear in an earlier part"):
        VQADataModule([train, train], image_size=32).dataset("train")


def test_preprocessing_is_cached_and_reused(shapes_dir: Path, tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    train = shapes_split(shapes_dir, "train")
    first = VQADataModule(train, image_size=32, cache_dir=str(tmp_path))
    built = first.dataset("train")
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(files) == 2 and files[0].startswith("train-preprocessed-")

    def fail(*args, **kwargs):
        raise AssertionError("rebuilt instead of read from the cache")

    monkeypatch.setattr(datamodule_module, "preprocess", fail)
    monkeypatch.setattr(datamodule_module, "word_vocabulary", fail)
    again = VQADataModule(train, image_size=32, cache_dir=str(tmp_path)).dataset("train")
    assert torch.equal(again.data.questions, built.data.questions)
    for i in (0, 17, 299):
        assert torch.equal(again[i]["target"], built[i]["target"])
    monkeypatch.undo()
    # Other settings make another entry instead of reusing a stale one.
    VQADataModule(train, image_size=32, max_question_length=8, cache_dir=str(tmp_path)).dataset("train")
    assert len(list(tmp_path.glob("*.npz"))) == 3


def test_multiple_choice_keeps_answer_zero_beside_unknown_candidates() -> None:
    """Candidates outside the vocabulary (-1) never hide a real one: answer 0 (the most common,
    "yes" on VQA) stays allowed when it is a candidate beside an unknown one."""
    from vqa.data.batch import Batch
    from vqa.data.hooks import MultipleChoice

    logits = torch.tensor([[5.0, 1.0, 2.0, 3.0], [0.0, 1.0, 2.0, 3.0]])
    choices = torch.tensor([[0, 2, -1], [-1, 1, -1]])  # (B, K); row 0 offers answers 0 and 2
    batch = Batch(*(torch.zeros(2, 1) for _ in range(6)), extra={"choices": choices})
    for _ in range(20):  # scatter order must not matter
        restricted = MultipleChoice().answer_logits(logits, batch)
        assert restricted.argmax(1).tolist() == [0, 1]
        assert torch.isinf(restricted).tolist() == [[False, True, False, True],
                                                    [True, False, True, True]]
