"""Dataset items, image-grouped batches, vocabularies and the input pipeline."""

import unicodedata
from pathlib import Path

import pytest
import torch
from conftest import shapes_split

from vqa.data import InputPipeline, VQADataModule, collate, tokenize
from vqa.data.samplers import ImageGroupedSampler, ShardSampler
from vqa.data.vocab import answer_vocabulary, word_vocabulary
from vqa.models import AlternatingCoAttention, HieCoAtt, SmallCNN


@pytest.fixture(scope="module")
def datamodule(shapes_dir: Path) -> VQADataModule:
    return VQADataModule(shapes_split(shapes_dir, "train"), shapes_split(shapes_dir, "val"),
                         image_size=64, max_question_length=16, batch_size=16,
                         group_by_image=True)


def test_tokenize() -> None:
    assert tokenize("What's on the table?") == ["what's", "on", "the", "table"]
    assert tokenize("Is the red circle left of the blue square?")[2:4] == ["red", "circle"]
    # Letters of any script stay in their word.
    assert tokenize("Is the cœur CAFÉ-coloured?") == ["is", "the", "cœur", "café", "-", "coloured"]
    assert tokenize("Какого цвета кот?") == ["какого", "цвета", "кот"]
    assert tokenize("यह क्या है?") == ["यह", "क्या", "है"]  # combining marks stay in their word
    assert tokenize(unicodedata.normalize("NFD", "Café?")) == ["café"]  # the NFC spelling


def test_items_and_soft_targets(datamodule: VQADataModule) -> None:
    ds = datamodule.dataset("train")
    item = ds[0]
    ex = ds.examples[0]
    assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.float32
    vocab = datamodule.pipeline.tokenizer.vocab
    words = [vocab.tokens[i] for i in item["question"][item["question_mask"]]]
    assert words == tokenize(ex.question)
    # At least 8 of the 10 shapes answers are right after normalisation: target 1.0 at the answer.
    assert item["target"][item["answer_index"]] == 1.0
    assert datamodule.pipeline.answers.tokens[item["answer_index"]] == ex.multiple_choice_answer


@pytest.mark.parametrize("split", ["train", "val"])
def test_collate_keeps_each_image_once(datamodule: VQADataModule, split: str) -> None:
    ds = datamodule.dataset(split)
    same_image = [i for i, ex in enumerate(ds.examples) if ex.image_id == ds.examples[0].image_id]
    items = [ds[i] for i in [*same_image, len(ds) - 1]]
    batch = collate(items)
    assert batch.image.shape[0] == 2 and batch.features is None
    assert batch.image_index.tolist() == [0] * len(same_image) + [1]
    for it, row in zip(items, batch.image_index, strict=True):
        torch.testing.assert_close(batch.image[row], it["image"])
    assert batch.question.shape[1] == int(batch.question_mask.sum(1).max())
    # The shapes grounding and per-family hooks' inputs, on the splits they score (evaluation) only.
    hook_inputs = {"boxes", "words", "token_words", "family"} if split == "val" else set()
    assert batch.extra.keys() == hook_inputs


def test_shared_images_give_the_same_outputs(datamodule: VQADataModule) -> None:
    torch.manual_seed(0)
    model = HieCoAtt(datamodule.question_vocab_size, datamodule.answer_vocab_size,
                     SmallCNN((8, 16, 32)), AlternatingCoAttention, dim=32, hidden=32,
                     answer_hidden=32, dropout=0.0).eval()
    batch = collate([datamodule.dataset("train")[i] for i in range(12)])
    with torch.no_grad():
        shared = model(**batch.inputs())
        each = model(batch.question, batch.question_mask, batch.image[batch.image_index])
    torch.testing.assert_close(shared["logits"], each["logits"])


def test_grouped_batches_cover_every_question_once(datamodule: VQADataModule) -> None:
    image_ids = [ex.image_id for ex in datamodule.dataset("train").examples]
    sampler = ImageGroupedSampler(image_ids, batch_size=16, seed=1)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    for epoch in (first, second):
        flat = [i for b in epoch for i in b]
        assert sorted(flat) == list(range(len(image_ids)))
        for b in epoch:  # whole images only
            ids = {image_ids[i] for i in b}
            assert sum(image_ids.count(iid) for iid in ids) == len(b)
        assert all(len(b) >= 16 for b in epoch[:-1])
    assert first != second
    assert list(ImageGroupedSampler(image_ids, 16, seed=1)) == first
    assert len(sampler) == len(second)


def test_grouped_batches_shard_by_rank(datamodule: VQADataModule) -> None:
    """Two processes take alternate batches of one plan, padded to equal counts; resuming skips
    the batches already trained."""
    image_ids = [ex.image_id for ex in datamodule.dataset("train").examples]
    plan = ImageGroupedSampler(image_ids, 16, seed=1).plan()
    assert len(plan) % 2 == 1  # the padding case
    shards = [ImageGroupedSampler(image_ids, 16, seed=1, num_replicas=2, rank=r) for r in (0, 1)]
    got = [list(s) for s in shards]
    assert len(got[0]) == len(got[1]) == len(shards[0]) == (len(plan) + 1) // 2
    assert got[0] == plan[0::2] and got[1] == [*plan[1::2], plan[0]]
    shards[1].resume(0, 2)
    assert list(shards[1]) == got[1][2:]
    assert list(shards[1]) == got[1]  # only the resumed pass starts late


def test_fewer_batches_than_processes_still_give_each_one_batch() -> None:
    """3 batches on 8 processes: every process steps once (none waits for the others)."""
    shards = [list(ImageGroupedSampler([1, 1, 2, 2, 3], 2, False, num_replicas=8, rank=r))
              for r in range(8)]
    assert all(len(s) == 1 for s in shards)
    assert {tuple(b) for s in shards for b in s} == {(0, 1), (2, 3), (4,)}


def test_evaluation_shards_have_no_padding() -> None:
    shards = [list(ShardSampler(11, num_replicas=3, rank=r)) for r in range(3)]
    assert sorted(i for s in shards for i in s) == list(range(11))
    assert [len(ShardSampler(11, 3, r)) for r in range(3)] == [4, 4, 3]
    with pytest.raises(ValueError, match="2 questions cannot be split over 3 processes"):
        ShardSampler(2, num_replicas=3, rank=0)


def test_pipeline_round_trip_and_bad_file(tmp_path: Path, datamodule: VQADataModule) -> None:
    pipeline = datamodule.pipeline
    pipeline.save(tmp_path / "pipeline.json")
    loaded = InputPipeline.load(tmp_path / "pipeline.json")
    assert loaded.to_dict() == pipeline.to_dict()
    assert loaded.tokenizer.vocab.get("never-seen-word") == 1  # <unk>
    assert loaded.image_size == (64, 64) and loaded.max_question_length == 16
    (tmp_path / "bad.json").write_text('{"answers": []}')
    with pytest.raises(ValueError, match=r"bad\.json: not an input pipeline"):
        InputPipeline.load(tmp_path / "bad.json")


def test_vocab_keeps_top_normalised_answers() -> None:
    assert word_vocabulary([["a", "b"], ["a"]], min_word_count=2).tokens == ["<pad>", "<unk>", "a"]
    answers = answer_vocabulary(["Two", "2", "yes", "Yes!", "no", "cat"], num_answers=3)
    assert answers.tokens == ["2", "yes", "cat"]
