"""``VQADataModule``: dataset files -> vocabularies -> preprocessed splits -> loaders."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader, DistributedSampler

from vqa.data.answers import EvalVersion
from vqa.data.dataset import CachedFeatures, ImageFiles, VQADataset, collate
from vqa.data.formats import COCO_TEMPLATE, Example, image_paths, load_cocoqa, load_vqa
from vqa.data.preprocess import Preprocessed, cached, file_key, preprocess
from vqa.data.samplers import ImageGroupedSampler, ShardSampler
from vqa.data.vocab import VocabBundle, tokenize
from vqa.features import FeatureCache


@dataclass
class Split:
    """One split of a dataset on disk.

    Args:
        questions: ``vqa``: the questions JSON; ``cocoqa``: the split folder (``train/``, ``test/``).
        annotations: annotations JSON (``vqa`` only; ``None`` for test splits).
        images: folder of image files.
        image_template: file name per image, formatted with ``image_id`` and ``data_subtype``.
        format: ``vqa`` (VQA v1 / v2, open-ended or multiple choice) or ``cocoqa``.
        data_subtype: overrides the questions file's (COCO-QA has none: ``train2014``, ``val2014``).
        features: a feature cache folder (``vqa extract-features``); when given, the model reads
            cached grid features instead of images.
    """

    questions: str
    annotations: str | None = None
    images: str | None = None
    image_template: str = COCO_TEMPLATE
    format: Literal["vqa", "cocoqa"] = "vqa"
    data_subtype: str | None = None
    features: str | None = None

    def load(self) -> tuple[list[Example], str | None]:
        """The split's examples and data subtype."""
        if self.format == "cocoqa":
            return load_cocoqa(self.questions), self.data_subtype
        examples, subtype = load_vqa(self.questions, self.annotations)
        return examples, self.data_subtype or subtype

    def key(self) -> list[Any]:
        """What the split's preprocessing depends on (see ``vqa.data.preprocess.cached``)."""
        return [self.format, file_key(self.questions),
                file_key(self.annotations) if self.annotations else None]


Splits = Split | list[Split]


class VQADataModule(pl.LightningDataModule):
    """Serves VQA v1 / v2 and COCO-QA splits as batches of images or cached features.

    Vocabularies come from ``vocab`` (a ``vocab.json`` or a checkpoint) when given, otherwise they
    are built from the training split; ``fit`` saves them as ``vocab.json`` in the run's log folder.
    Preprocessed splits (tokens, soft targets) and built vocabularies are cached in ``cache_dir``.

    Args:
        train, val, test, predict: the splits (``predict`` defaults to ``val``); a list is read as
            one split (e.g. train + val for test-dev submissions).
        image_size: square side images are resized to.
        max_question_length: questions are cut to this many tokens.
        min_word_count: words seen fewer times in training become ``<unk>``.
        num_answers: size of the answer vocabulary (most common training answers).
        eval_version: official evaluation release the soft targets and metrics reproduce.
        vocab: path of saved vocabularies to use instead of building them.
        cache_dir: folder for preprocessed splits and vocabularies (``None``: no caching).
        batch_size, num_workers: for the data loaders.
        cache_images: decode all images once and keep them in memory (small datasets).
        group_by_image: training batches hold all questions of their images, so image-side work
            runs once per image per batch (about 5x less image-encoder work on shapes).
        seed: seed of the training order (grouped, or sharded across processes).

    Under DDP every loader shards by process itself (``vqa.data.samplers``): training batches
    are padded to equal counts, evaluation shards are not, so metrics count each question once.
    A mid-epoch checkpoint of grouped training resumes at the next batch of the same epoch.
    """

    def __init__(self, train: Splits | None = None, val: Splits | None = None,
                 test: Splits | None = None, predict: Splits | None = None, image_size: int = 448,
                 max_question_length: int = 26, min_word_count: int = 1, num_answers: int = 1000,
                 eval_version: EvalVersion = "current", vocab: str | None = None,
                 cache_dir: str | None = None, batch_size: int = 64, num_workers: int = 0,
                 cache_images: bool = False, group_by_image: bool = False, seed: int = 0) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test, "predict": predict or val}
        self.image_size, self.max_question_length = image_size, max_question_length
        self.min_word_count, self.num_answers = min_word_count, num_answers
        self.eval_version, self.vocab_path, self.cache_dir = eval_version, vocab, cache_dir
        self.batch_size, self.num_workers, self.cache_images = batch_size, num_workers, cache_images
        self.group_by_image, self.seed = group_by_image, seed
        self._vocab: VocabBundle | None = None
        self._datasets: dict[str, VQADataset] = {}
        self._read_cache: dict[str, tuple[list[Example], list[tuple[str | None, int]]]] = {}
        self._resume: dict[str, int] | None = None  # from a checkpoint's ``state_dict``

    @property
    def vocab(self) -> VocabBundle:
        if self._vocab is None:
            if self.vocab_path:
                self._vocab = VocabBundle.load(self.vocab_path)
            else:
                parts = self._split("train")
                key = [[p.key() for p in parts], self.min_word_count, self.num_answers]
                self._vocab = cached(self.cache_dir, "vocab", key, lambda: self._build_vocab(parts))
        return self._vocab

    def _read(self, parts: list[Split]) -> tuple[list[Example], list[tuple[str | None, int]]]:
        """``_joined(parts)``, read once per data module (vocabularies and the training split
        need the same files)."""
        key = repr([p.key() for p in parts])
        if key not in self._read_cache:
            self._read_cache[key] = _joined(parts)
        return self._read_cache[key]

    def _build_vocab(self, parts: list[Split]) -> VocabBundle:
        examples, _ = self._read(parts)
        return VocabBundle.build((tokenize(ex.question) for ex in examples),
                                 (ex.multiple_choice_answer for ex in examples),
                                 self.min_word_count, self.num_answers)

    @property
    def question_vocab_size(self) -> int:
        return len(self.vocab.questions)

    @property
    def answer_vocab_size(self) -> int:
        return len(self.vocab.answers)

    def _split(self, name: str) -> list[Split]:
        split = self.splits[name]
        if split is None:
            raise ValueError(f"no '{name}' split configured (data.{name})")
        return list(split) if isinstance(split, list | tuple) else [split]

    def preprocessed(self, name: str) -> tuple[Preprocessed, list[tuple[str | None, int]]]:
        """Split ``name`` as arrays (read from ``cache_dir`` when an earlier run built it), and
        each part's data subtype and size."""
        parts, vocab = self._split(name), self.vocab
        key = [[p.key() for p in parts], vocab.to_dict(), self.max_question_length,
               self.eval_version]

        def build() -> tuple[Preprocessed, list[tuple[str | None, int]]]:
            examples, sizes = self._read(parts)
            return preprocess(examples, vocab, self.max_question_length, self.eval_version), sizes

        return cached(self.cache_dir, f"{name}-preprocessed", key, build)

    def dataset(self, name: str) -> VQADataset:
        """The dataset of split ``name`` (train, val, test, predict), built once."""
        if name not in self._datasets:
            data, sizes = self.preprocessed(name)
            self._datasets[name] = VQADataset(
                data, self._images(self._split(name), sizes, data.examples), len(self.vocab.answers))
        return self._datasets[name]

    def _images(self, parts: list[Split], sizes: list[tuple[str | None, int]],
                examples: list[Example]) -> ImageFiles | CachedFeatures:
        if all(p.features for p in parts):
            caches = [FeatureCache(p.features) for p in parts]
            sources = CachedFeatures(caches)
            missing = {ex.image_id for ex in examples} - set().union(*(c.row for c in caches))
            if missing:
                raise ValueError(f"feature caches {[p.features for p in parts]} lack "
                                 f"{len(missing)} image(s) of these questions, e.g. "
                                 f"{sorted(missing)[:5]}; run `vqa extract-features` on them")
            return sources
        if any(p.features for p in parts):
            raise ValueError("give 'features' for every part of a split or for none")
        paths: dict[int, Path] = {}
        start = 0
        for p, (subtype, n) in zip(parts, sizes, strict=True):
            paths.update(image_paths(examples[start:start + n], p.images or ".", p.image_template,
                                     subtype))
            start += n
        return ImageFiles(paths, self.image_size, self.cache_images)

    def setup(self, stage: str) -> None:
        trainer = self.trainer
        if stage == "fit" and trainer is not None:
            log_dir = trainer.log_dir  # a collective call under DDP: every process asks
            if log_dir and trainer.is_global_zero:
                self.vocab.save(Path(log_dir) / "vocab.json")

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this process's rank)."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        ds = self.dataset(name)
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        common = {"num_workers": self.num_workers, "collate_fn": collate, "pin_memory": on_gpu,
                  "persistent_workers": self.num_workers > 0}
        world, rank = self._processes()
        if shuffle and self.group_by_image:
            sampler = ImageGroupedSampler([ex.image_id for ex in ds.examples], self.batch_size,
                                          seed=self.seed, num_replicas=world, rank=rank)
            if self._resume is not None:
                sampler.resume(self._resume["epoch"], self._resume["batches_done"])
                self._resume = None
            return DataLoader(ds, sampler=sampler, batch_size=None, **common)  # yields batches
        if world == 1:
            return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle, **common)
        sampler = (DistributedSampler(ds, world, rank, shuffle=True, seed=self.seed) if shuffle
                   else ShardSampler(len(ds), world, rank))
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, **common)

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints while fitting: the training pass to resume (epoch, and batches of
        it each process has trained), so that grouped batches continue where they stopped."""
        trainer = self.trainer
        if trainer is None or not self.group_by_image or trainer.state.fn != TrainerFn.FITTING:
            return {}
        epochs = trainer.fit_loop.epoch_progress.current
        # ``processed``: batches whose optimiser step ran (``completed`` lags by one inside
        # ``on_train_batch_end``, where step-interval checkpoints are saved).
        epoch, done = epochs.processed, trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if done >= trainer.num_training_batches:  # this epoch's batches are all trained
            epoch, done = epoch + (epochs.processed < epochs.started), 0
        return {"epoch": epoch, "batches_done": done, "processes": trainer.world_size}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict) or None
        if self._resume and self._resume.get("processes", 1) != self._processes()[0]:
            rank_zero_warn(f"resuming on {self._processes()[0]} processes a run of "
                           f"{self._resume['processes']}: epoch {self._resume['epoch']} restarts "
                           "from its first batch")
            self._resume["batches_done"] = 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


def _joined(parts: list[Split]) -> tuple[list[Example], list[tuple[str | None, int]]]:
    """The examples of one or more splits, read as one (question ids must not repeat), and each
    part's data subtype and number of examples."""
    examples, subtypes, seen = [], [], set()
    for p in parts:
        part, subtype = p.load()
        repeated = seen.intersection(ex.question_id for ex in part)
        if repeated:
            raise ValueError(f"{p.questions}: question ids {sorted(repeated)[:5]} also appear in "
                             "an earlier part of the same split")
        seen.update(ex.question_id for ex in part)
        examples += part
        subtypes.append((subtype, len(part)))
    return examples, subtypes
