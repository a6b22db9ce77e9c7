"""``VQADataModule``: dataset files -> vocabularies -> preprocessed splits -> loaders."""

from __future__ import annotations

import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch.utils.data import DataLoader

from vqa.data.answers import EvalVersion
from vqa.data.batch import Batch, collate
from vqa.data.boxes import read_boxes
from vqa.data.dataset import CachedFeatures, ImageFiles, VQADataset
from vqa.data.example import Example, image_paths
from vqa.data.features import ORIENTATION, FeatureCache, naming_hint
from vqa.data.format import DataFormat
from vqa.data.hooks import Hook
from vqa.data.pipeline import InputPipeline, Question
from vqa.data.preprocess import Preprocessed, cached, preprocess
from vqa.data.regions import RegionCache, open_cache
from vqa.data.samplers import ImageGroupedSampler, ShardSampler
from vqa.data.split import Split
from vqa.data.tokenizers import PretrainedTokenizer, WordTokenizer, tokenize
from vqa.data.vocab import Vocabulary, answer_vocabulary, word_vocabulary

DEFAULT_IMAGE_SIZE, DEFAULT_MAX_QUESTION_LENGTH = 448, 26
# The splits each Lightning stage reads.
STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                "predict": ("predict",)}


Splits = Split | list[Split]


@dataclass(frozen=True)
class MetricSpec:
    """What a split is scored with: the metric's name (``vqa_acc``, ``acc``), the categories it is
    reported per, and which evaluation code it reproduces."""

    name: str
    groups: list[str]
    reproduces: str


@dataclass
class ExampleView:
    """What a callback shows of one question: the example, the question as the model read it
    (tokens, words) and the image as the model saw it ((H, W, 3) uint8; ``None`` when the split
    serves cached features and names no image folder holding the file)."""

    example: Example
    question: Question
    image: np.ndarray | None


class VQADataModule(pl.LightningDataModule):
    """Serves the splits of any dataset format (``vqa.data.datasets``) as batches of images or
    cached features, with soft targets and metric categories as the dataset's benchmark scores.

    The input pipeline (``vqa.data.pipeline.InputPipeline``: tokenizer, maximum question length,
    image size, answer vocabulary, region grid) comes from ``pipeline`` (a ``pipeline.json`` or a
    checkpoint) when given, otherwise it is built from these settings and the training split
    (``VQAModule`` completes its own copy with the image encoder's grid and saves that in the
    run's log folder and in checkpoints). Preprocessed splits (tokens, soft targets) and built
    vocabularies are cached in ``cache_dir``. What a benchmark asks beyond the answer comes with
    each split's dataset hooks (``hooks``).

    Args:
        train, val, test, predict: the splits (``predict`` defaults to ``val``); a list is read as
            one split (e.g. train + val for test-dev submissions).
        tokenizer: ``words`` (the paper's: regex words and a vocabulary of the training split), or
            a pretrained tokenizer: a hub name, a local folder, or ``package:folder`` (a folder in an
            installed Python package). A pretrained text encoder loads the same name.
        image_size: side (or ``[height, width]``) images are resized to (default 448).
        max_question_length: questions are cut to this many tokens (default 26).
        min_word_count: words seen fewer times in training become ``<unk>`` (``words`` only).
        num_answers: size of the answer vocabulary (most common training answers).
        eval_version: official evaluation release the soft targets and metrics reproduce.
        pipeline: a ``pipeline.json`` or checkpoint whose input pipeline to use (``vqa validate``
            and friends set it to ``--ckpt_path``); ``tokenizer``, ``image_size`` and
            ``max_question_length``, when given too, must agree with it.
        cache_dir: folder for preprocessed splits and vocabularies (``None``: no caching on
            disk).
        batch_size, num_workers: for the data loaders (batch 300: the paper's).
        cache_images: decode all images once and keep them in memory (small datasets).
        group_by_image: training batches hold all questions of their images, so image-side work
            runs once per image per batch (about 5x less image-encoder work on shapes).
        seed: seed of the training order (grouped, or sharded across processes).

    Under DDP every loader shards by process itself (``vqa.data.samplers``): training batches
    are padded to equal counts, evaluation shards are not, so metrics count each question once.
    A mid-epoch checkpoint resumes at the next batch of the same epoch, in the same order.
    """

    def __init__(self, train: Splits | None = None, val: Splits | None = None,
                 test: Splits | None = None, predict: Splits | None = None,
                 tokenizer: str | None = None, image_size: int | tuple[int, int] | None = None,
                 max_question_length: int | None = None, min_word_count: int = 1,
                 num_answers: int = 1000, eval_version: EvalVersion = "current",
                 pipeline: str | None = None, cache_dir: str | None = None, batch_size: int = 300,
                 num_workers: int = 0, cache_images: bool = False, group_by_image: bool = False,
                 seed: int = 0) -> None:
        super().__init__()
        self.splits = {"train": train, "val": val, "test": test, "predict": predict or val}
        self.tokenizer, self.max_question_length = tokenizer, max_question_length
        self.image_size = ((image_size, image_size) if isinstance(image_size, int) else
                           tuple(image_size) if image_size is not None else None)
        self.min_word_count, self.num_answers = min_word_count, num_answers
        self.eval_version, self.pipeline_path, self.cache_dir = eval_version, pipeline, cache_dir
        self.batch_size, self.num_workers, self.cache_images = batch_size, num_workers, cache_images
        self.group_by_image, self.seed = group_by_image, seed
        self._pipeline: InputPipeline | None = None
        self._datasets: dict[str, VQADataset] = {}
        self._read_cache: dict[str, tuple[list[Example], list[tuple[str | None, int]]]] = {}
        self._resume: dict[str, int] | None = None  # from a checkpoint's ``state_dict``
        self._sampler: ImageGroupedSampler | None = None  # the training order, for resuming
        self._rows: dict[str, dict[int, int]] = {}  # question id -> row, per split (``view``)
        self._preprocessed: dict[str, tuple[str, Any]] = {}  # split -> (key, preprocessed)

    @property
    def pipeline(self) -> InputPipeline:
        """The input pipeline, built (or loaded) once."""
        if self._pipeline is None:
            self._pipeline = self._load_pipeline() if self.pipeline_path else self._build_pipeline()
        return self._pipeline

    def _load_pipeline(self) -> InputPipeline:
        p = InputPipeline.load(self.pipeline_path)
        source = p.tokenizer.source or "words"
        for name, given, own in (("tokenizer", self.tokenizer, source),
                                 ("image_size", self.image_size, tuple(p.image_size)),
                                 ("max_question_length", self.max_question_length,
                                  p.max_question_length)):
            if given is not None and given != own:
                raise ValueError(f"data.{name} is {given!r} but {self.pipeline_path} was trained "
                                 f"with {own!r}: leave it out to use the checkpoint's")
        return p

    def _build_pipeline(self) -> InputPipeline:
        parts = self._split("train")
        source = self.tokenizer or "words"
        key = [[p.key() for p in parts], source == "words" and self.min_word_count,
               self.num_answers]
        words, answers = cached(self.cache_dir, "vocab", key, lambda: self._vocabularies(
            parts, source == "words"), type=tuple[Vocabulary | None, Vocabulary])
        tok = WordTokenizer(words) if source == "words" else PretrainedTokenizer(source)
        size, grid, dim = self.image_size, None, None
        cache = next((open_cache(f) for p in parts for f in p.feature_caches), None)
        if isinstance(cache, RegionCache):  # no grid: boxes
            dim = cache.dim
        elif cache is not None:  # the grid, feature size and (for display) image size it was made at
            grid, dim = tuple(cache.meta["grid"]), cache.shape[1]
            extracted = cache.meta["settings"].get("image_size")
            size = size or ((extracted, extracted) if isinstance(extracted, int) else None)
        return InputPipeline(tok, answers, self.max_question_length or DEFAULT_MAX_QUESTION_LENGTH,
                             size or (DEFAULT_IMAGE_SIZE,) * 2, grid=grid, image_dim=dim)

    def _vocabularies(self, parts: list[Split], words: bool) -> tuple[Vocabulary | None, Vocabulary]:
        examples, _ = self._read(parts)
        vocab = word_vocabulary((tokenize(ex.question) for ex in examples),
                                self.min_word_count) if words else None
        return vocab, answer_vocabulary((ex.multiple_choice_answer for ex in examples),
                                        self.num_answers, self._scorer(parts).normalize)

    def data_format(self, name: str) -> DataFormat:
        """The dataset format of split ``name`` (all its parts share one)."""
        return _format(self._split(name))

    def _scorer(self, parts: list[Split]) -> Any:
        return _format(parts).scorer(self.eval_version)

    def metric(self, name: str) -> MetricSpec:
        """How split ``name`` is scored (``VQAModule`` builds its metrics from this)."""
        scorer, (data, _) = self.data_format(name).scorer(self.eval_version), self.preprocessed(name)
        return MetricSpec(scorer.metric, data.group_names, scorer.reproduces)

    @property
    def monitor(self) -> str | None:
        """The validation metric the best checkpoint is chosen by (``val/vqa_acc``, ``val/acc``),
        ``None`` without a validation split (the last epoch is kept)."""
        if self.splits["val"] is None:
            return None
        return f"val/{self.data_format('val').scorer(self.eval_version).metric}"

    def label(self, name: str) -> str:
        """A short name for split ``name``'s files: its data subtype (``val2014``,
        ``test-dev2015``) or its questions file's stem, parts joined by ``+``."""
        _, sizes = self.preprocessed(name)
        return "+".join(subtype or Path(part.questions).stem
                        for part, (subtype, _) in zip(self._split(name), sizes, strict=True))

    def hooks(self, name: str) -> list[Hook]:
        """The dataset hooks that apply to split ``name`` (``vqa.data.hooks``)."""
        return self.dataset(name).hooks

    def _read(self, parts: list[Split]) -> tuple[list[Example], list[tuple[str | None, int]]]:
        """``_joined(parts)``, read once per data module (vocabularies and the training split
        need the same files)."""
        key = repr([p.key() for p in parts])
        if key not in self._read_cache:
            self._read_cache[key] = _joined(parts)
        return self._read_cache[key]

    @property
    def question_vocab_size(self) -> int:
        return len(self.pipeline.tokenizer)

    @property
    def answer_vocab_size(self) -> int:
        return len(self.pipeline.answers)

    @property
    def image_dim(self) -> int | None:
        """Region feature size of the feature caches (``None``: images, the encoder's)."""
        return self.pipeline.image_dim

    @property
    def text_model(self) -> str | None:
        """The pretrained tokenizer's source, which a pretrained text encoder loads too."""
        return self.pipeline.tokenizer.source

    def _split(self, name: str) -> list[Split]:
        split = self.splits[name]
        if split is None:
            raise ValueError(f"no '{name}' split configured (data.{name})")
        return list(split) if isinstance(split, list | tuple) else [split]

    def preprocessed(self, name: str) -> tuple[Preprocessed, list[tuple[str | None, int]]]:
        """Split ``name`` as arrays (read from ``cache_dir`` when an earlier run built it), and
        each part's data subtype and size; kept in memory once read."""
        parts, pipeline = self._split(name), self.pipeline
        key = [[p.key() for p in parts], pipeline.key(), self.eval_version]
        hit = self._preprocessed.get(name)
        if hit is None or hit[0] != repr(key):

            def build() -> tuple[Preprocessed, list[tuple[str | None, int]]]:
                examples, sizes = self._read(parts)
                return preprocess(examples, pipeline, self._scorer(parts),
                                  _format(parts).scored), sizes

            hit = self._preprocessed[name] = (
                repr(key), cached(self.cache_dir, f"{name}-preprocessed", key, build,
                                  type=tuple[Preprocessed, list[tuple[str | None, int]]]))
        return hit[1]

    def dataset(self, name: str) -> VQADataset:
        """The dataset of split ``name`` (train, val, test, predict), built once."""
        if name not in self._datasets:
            data, sizes = self.preprocessed(name)
            # Hooks score evaluation splits only: training items would carry unread inputs.
            hooks = self.data_format(name).hooks if name != "train" else ()
            self._datasets[name] = VQADataset(
                data, self._images(self._split(name), sizes, data.examples),
                len(self.pipeline.answers), hooks)
        return self._datasets[name]

    def _images(self, parts: list[Split], sizes: list[tuple[str | None, int]],
                examples: list[Example], decode: bool = True) -> ImageFiles | CachedFeatures:
        """The split's image source (``decode=False``: check it without decoding images)."""
        if all(p.features for p in parts):
            if any(p.boxes for p in parts):
                raise ValueError("'boxes' are candidate boxes of image splits; cached features "
                                 "carry their own (vqa convert-features, extract-features --boxes)")
            caches = [open_cache(f) for p in parts for f in p.feature_caches]
            if len({type(c) for c in caches}) > 1:
                raise ValueError(f"feature caches {[str(c.folder) for c in caches]} mix grid and "
                                 "region caches; a split reads one kind")
            for cache in caches:
                self._check_cache(cache)
            sources = CachedFeatures(caches)
            cached = set().union(*(c.row for c in caches))
            missing = {ex.image_id for ex in examples} - cached
            if missing:
                fmt = _format(parts)
                raise ValueError(f"feature caches {[str(c.folder) for c in caches]} lack "
                                 f"{len(missing)} image(s) of these questions, e.g. "
                                 f"{sorted(missing, key=str)[:5]}; run `vqa extract-features` "
                                 f"on them{naming_hint(cached, fmt.image_ids, fmt.name)}")
            return sources
        if any(p.features for p in parts):
            raise ValueError("give 'features' for every part of a split or for none")
        paths: dict[int, Path] = {}
        start = 0
        for p, (subtype, n) in zip(parts, sizes, strict=True):
            paths.update(image_paths(examples[start:start + n], p.images or ".", p.image_template,
                                     subtype))
            start += n
        return ImageFiles(paths, self.pipeline, self.cache_images and decode,
                          _candidate_boxes(parts, paths))

    def check(self, stage: str) -> None:
        """Read every split ``stage`` needs and find its images or cached features (without
        decoding them), so that bad data fails before a run folder or log is created."""
        for name in STAGE_SPLITS[stage]:
            if self.splits[name] is not None:
                data, sizes = self.preprocessed(name)
                self._images(self._split(name), sizes, data.examples, decode=False)

    def _check_cache(self, cache: FeatureCache | RegionCache) -> None:
        """A feature cache must hold the grid (or boxes) and feature size the pipeline (the model)
        expects, in a whole array; one extracted before images were read upright is pointed out."""
        p = self.pipeline
        if isinstance(cache, RegionCache):
            if p.grid is not None or p.image_dim not in (None, cache.dim):
                raise ValueError(f"region cache {cache.folder} holds boxes of {cache.dim}-d "
                                 f"features; the input pipeline expects a {p.grid} grid of "
                                 f"{p.image_dim}-d features")
            cache.arrays  # noqa: B018 (opening the maps finds a truncated file)
            return
        own = (tuple(cache.meta["grid"]), cache.shape[1])
        if (p.grid is not None and tuple(p.grid) != own[0]) or p.image_dim not in (None, own[1]):
            raise ValueError(f"feature cache {cache.folder} holds a {own[0]} grid of {own[1]}-d "
                             f"features; the input pipeline expects {p.grid} x {p.image_dim}")
        cache.array  # noqa: B018 (opening the map finds a truncated file)
        if cache.meta["settings"].get("orientation") != ORIENTATION:
            rank_zero_warn(f"feature cache {cache.folder} was extracted before images were read "
                           "upright: photos with an EXIF orientation were encoded as stored, "
                           "turned; extract it again to fix them")

    def view(self, name: str, question_id: int) -> ExampleView:
        """Question ``question_id`` of split ``name`` as the model reads it, with its image as
        the model saw it (callbacks display these)."""
        ds = self.dataset(name)
        if name not in self._rows:
            self._rows[name] = {ex.question_id: i for i, ex in enumerate(ds.examples)}
        if question_id not in self._rows[name]:
            raise KeyError(f"question_id {question_id} is not in the {name} split")
        i = self._rows[name][question_id]
        ex = ds.examples[i]
        if isinstance(ds.images, ImageFiles):
            image = ds.images.raw(ex.image_id)
        else:
            path = self._image_file(name, i)
            image = self.pipeline.image(path) if path is not None else None
        return ExampleView(ex, self.pipeline.question(ex.question),
                           None if image is None else image.permute(1, 2, 0).numpy())

    def _image_file(self, name: str, index: int) -> Path | None:
        """The image file of question ``index`` of a cached-features split, when the split names
        a folder that holds it."""
        data, sizes = self.preprocessed(name)
        start = 0
        for part, (subtype, n) in zip(self._split(name), sizes, strict=True):
            if start <= index < start + n and part.images:
                try:
                    return image_paths([data.examples[index]], part.images, part.image_template,
                                       subtype)[data.examples[index].image_id]
                except FileNotFoundError:
                    return None
            start += n
        return None

    def _processes(self) -> tuple[int, int]:
        """(number of processes, this process's rank)."""
        trainer = self.trainer
        return (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)

    def _loader(self, name: str, shuffle: bool = False) -> DataLoader:
        ds = self.dataset(name)
        trainer = self.trainer
        on_gpu = trainer is not None and trainer.strategy.root_device.type == "cuda"
        # Its own generator: creating a loader's iterator then draws no number from the global
        # generator, so a resumed run's dropout masks follow the checkpoint's saved state.
        common = {"num_workers": self.num_workers, "collate_fn": collate, "pin_memory": on_gpu,
                  "persistent_workers": self.num_workers > 0, "worker_init_fn": _ignore_stop_signals,
                  "generator": torch.Generator().manual_seed(self.seed)}
        world, rank = self._processes()
        if shuffle:
            # Whole images per batch, or (one "group" per question) plain shuffled batches: either
            # way the order follows seed + epoch and resumes mid-epoch.
            keys = [ex.image_id for ex in ds.examples] if self.group_by_image else range(len(ds))
            sampler = self._sampler = ImageGroupedSampler(keys, self.batch_size, seed=self.seed,
                                                          num_replicas=world, rank=rank)
            if self._resume is not None:
                self._check_resume(self._resume, len(ds))
                sampler.resume(self._resume["epoch"], self._resume["batches_done"])
                self._resume = None
            return DataLoader(ds, sampler=sampler, batch_size=None, **common)  # yields batches
        if world == 1:
            return DataLoader(ds, batch_size=self.batch_size, **common)
        return DataLoader(ds, batch_size=self.batch_size, sampler=ShardSampler(len(ds), world, rank),
                          **common)

    def on_before_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        """Counts the training batches taken this epoch (the training loop takes each just
        before its step; batches the loader's workers prefetch do not count)."""
        if self._sampler is not None and self.trainer is not None and self.trainer.training:
            self._sampler.taken += 1
        return batch

    def state_dict(self) -> dict[str, Any]:
        """Saved in checkpoints: the training pass to resume (epoch, and batches of it this
        process has trained), so that training batches continue where they stopped, and the
        settings that define those batches."""
        if self._sampler is None:
            return {}
        trainer = self.trainer
        epoch, done = self._sampler.position(trainer.num_training_batches if trainer else None)
        return {"epoch": epoch, "batches_done": done, "processes": self._processes()[0],
                **self._order(len(self._sampler.dataset))}

    def _order(self, questions: int) -> dict[str, Any]:
        """The settings that decide which questions an epoch's first batches hold."""
        return {"questions": questions, "batch_size": self.batch_size, "seed": self.seed,
                "group_by_image": self.group_by_image}

    def _check_resume(self, state: dict[str, Any], questions: int) -> None:
        """A run resumed mid-epoch must batch the epoch as it did: with other settings, the
        batches it skips are not the ones it trained, so it is refused (an epoch's end resumes
        with any)."""
        if not state.get("batches_done"):
            return
        now = self._order(questions)
        changed = [f"{'data.' if k != 'questions' else 'training '}{k} {state[k]!r} -> {v!r}"
                   for k, v in now.items() if k in state and state[k] != v]
        if changed:
            raise ValueError(
                f"cannot resume mid-epoch ({state['batches_done']} batches into epoch "
                f"{state['epoch']}) with other data settings: {'; '.join(changed)}; the skipped "
                "batches would not be the trained ones. Resume with the checkpoint's settings, "
                "or from a checkpoint saved at an epoch's end")

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resume = dict(state_dict) or None
        if self._resume and self._resume.get("processes", 1) != self._processes()[0]:
            rank_zero_warn(f"resuming on {self._processes()[0]} processes a run of "
                           f"{self._resume['processes']}: epoch {self._resume['epoch']} restarts "
                           "from its first batch")
            self._resume["batches_done"] = 0

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader | list:
        """The validation split's loader; none (so no validation) without a ``val`` split."""
        return self._loader("val") if self.splits["val"] is not None else []

    def test_dataloader(self) -> DataLoader:
        return self._loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict")


def _ignore_stop_signals(worker: int) -> None:
    """Loader workers leave SIGTERM and SIGINT (sent to the whole process group by schedulers
    and Ctrl-C) to the main process, which saves a checkpoint and then ends them."""
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, signal.SIG_IGN)


def _candidate_boxes(parts: list[Split], images: dict[int | str, Path]) -> dict | None:
    """The split's candidate boxes per image (its parts' boxes files), ``None`` without; an
    image of the questions that no boxes file lists is an error."""
    if not any(p.boxes for p in parts):
        return None
    if not all(p.boxes for p in parts):
        raise ValueError("give 'boxes' for every part of a split or for none")
    boxes = {}
    for p in parts:
        boxes.update(read_boxes(p.boxes))
    missing = sorted(set(images) - set(boxes), key=str)
    if missing:
        raise ValueError(f"boxes files {[p.boxes for p in parts]} list no boxes for "
                         f"{len(missing)} image(s) of the questions, e.g. {missing[:5]}")
    return boxes


def _format(parts: list[Split]) -> DataFormat:
    """The one dataset format of a split's parts."""
    names = {p.format for p in parts}
    if len(names) != 1:
        raise ValueError(f"the parts of a split must share one format, got {sorted(names)} "
                         f"({[p.questions for p in parts]})")
    return parts[0].data_format()


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
