"""``VQADataModule``: official-format splits -> vocabularies -> datasets -> loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from torch.utils.data import DataLoader

from vqa.data.answers import EvalVersion
from vqa.data.dataset import ImageGroupedBatchSampler, VQADataset, collate
from vqa.data.formats import COCO_TEMPLATE, image_paths, load_vqa
from vqa.data.vocab import VocabBundle, tokenize


@dataclass
class Split:
    """One split in the official format.

    Args:
        questions: questions JSON.
        annotations: annotations JSON (``None`` for test splits).
        images: folder of image files.
        image_template: file name per image, formatted with ``image_id`` and ``data_subtype``.
    """

    questions: str
    annotations: str | None = None
    images: str | None = None
    image_template: str = COCO_TEMPLATE


class VQADataModule(pl.LightningDataModule):
    """Serves official-format VQA splits as image batches.

    Vocabularies come from ``vocab`` (a ``vocab.json`` or a checkpoint) when given, otherwise they
    are built from the training split; ``fit`` saves them as ``vocab.json`` in the run's log folder.

    Args:
        train, val, test, predict: the splits (``predict`` defaults to ``val``).
        image_size: square side images are resized to.
        max_question_length: questions are cut to this many tokens.
        min_word_count: words seen fewer times in training become ``<unk>``.
        num_answers: size of the answer vocabulary (most common training answers).
        eval_version: official evaluation release the soft targets and metrics reproduce.
        vocab: path of saved vocabularies to use instead of building them.
        batch_size, num_workers: for the data loaders.
        cache_images: decode all images once and keep them in memory (small datasets).
        group_by_image: training batches hold all questions of their images, so each image is
            encoded once per batch (single process; about 5x less image-encoder work on shapes).
        seed: seed of the grouped batch order.
    """

    def __init__(self, train: Split | None = None, val: Split | None = None,
                 test: Split | None = None, predict: Split | None = None, image_size: int = 448,
                 max_question_length: int = 26, min_word_count: int = 1, num_answers: int = 1000,
                 eval_version: EvalVersion = "current", vocab: str | None = None,
                 batch_size: int = 64, num_workers: int = 0, cache_images: bool = False,
                 group_by_image: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test, "predict": predict or val}
        self.image_size, self.max_question_length = image_size, max_question_length
        self.min_word_count, self.num_answers = min_word_count, num_answers
        self.eval_version, self.vocab_path = eval_version, vocab
        self.batch_size, self.num_workers, self.cache_images = batch_size, num_workers, cache_images
        self.group_by_image, self.seed = group_by_image, seed
        self._vocab: VocabBundle | None = None
        self._datasets: dict[str, VQADataset] = {}

    @property
    def vocab(self) -> VocabBundle:
        if self._vocab is None:
            if self.vocab_path:
                self._vocab = VocabBundle.load(self.vocab_path)
            else:
                train = self._split("train")
                examples, _ = load_vqa(train.questions, train.annotations)
                self._vocab = VocabBundle.build(
                    (tokenize(ex.question) for ex in examples),
                    (ex.multiple_choice_answer for ex in examples), self.min_word_count,
                    self.num_answers)
        return self._vocab

    @property
    def question_vocab_size(self) -> int:
        return len(self.vocab.questions)

    @property
    def answer_vocab_size(self) -> int:
        return len(self.vocab.answers)

    def _split(self, name: str) -> Split:
        split = self.splits[name]
        if split is None:
            raise ValueError(f"no '{name}' split configured (data.{name})")
        return split

    def dataset(self, name: str) -> VQADataset:
        """The dataset of split ``name`` (train, val, test, predict), built once."""
        if name not in self._datasets:
            split = self._split(name)
            examples, subtype = load_vqa(split.questions, split.annotations)
            images = image_paths(examples, split.images or ".", split.image_template, subtype)
            self._datasets[name] = VQADataset(
                examples, self.vocab, images, self.image_size, self.max_question_length,
                self.eval_version, self.cache_images)
        return self._datasets[name]

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        if stage == "fit" and trainer is not None and trainer.is_global_zero and trainer.log_dir:
            self.vocab.save(Path(trainer.log_dir) / "vocab.json")

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        ds = self.dataset(name)
        common = {"num_workers": self.num_workers, "collate_fn": collate,
                  "persistent_workers": self.num_workers > 0}
        if shuffle and self.group_by_image:
            sampler = ImageGroupedBatchSampler([ex.image_id for ex in ds.examples],
                                               self.batch_size, seed=self.seed)
            return DataLoader(ds, batch_sampler=sampler, **common)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")
