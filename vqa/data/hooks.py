"""Dataset hooks: what a benchmark asks of a model beyond the open-ended answer.

A ``DataFormat`` lists its hooks; each split keeps those that apply to it (``Hook.applies``).
A hook adds its inputs to every batch (``item`` -> ``Batch.extra``), may restrict the answer
(``answer_logits``), brings its own metric (``metric``, ``update``, ``compute``: logged under the
stage, ``val/...``), adds per-question predictions (``predict``) and fields of the results file
(``result``). The training module calls them without knowing which dataset it trains on.

* ``MultipleChoice`` (VQA v1 Multiple-Choice): the answer is the best of the question's candidates.
* ``Answerability`` (VizWiz): the average precision of "unanswerable", and ``answerable`` in the
  results.
* ``Grounding`` (the shapes dataset): whether attention lands on the objects the question names.

torch is imported where it is used: a dataset module that lists hooks still imports without it
(``vqa evaluate`` starts fast).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    import torch
    from torchmetrics import Metric

    from vqa.data.batch import Batch
    from vqa.data.dataset import VQADataset
    from vqa.data.example import Example
    from vqa.data.format import DataFormat
    from vqa.data.pipeline import InputPipeline


@dataclass(frozen=True)
class HookContext:
    """What hooks know of the model: its input pipeline (answers, region grid) and the names of
    its attention maps over regions and over words (the rows of ``image_attention`` and
    ``question_attention``)."""

    pipeline: InputPipeline
    region_maps: tuple[str, ...]
    word_maps: tuple[str, ...]


class Hook:
    """The interface; every method has a default that does nothing."""

    name: ClassVar[str] = ""

    def applies(self, dataset: VQADataset) -> bool:
        return True

    def item(self, dataset: VQADataset, i: int) -> dict[str, torch.Tensor]:
        """Inputs of question ``i``, stacked into ``Batch.extra``."""
        return {}

    def answer_logits(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """The logits (B, A) the answer is picked from."""
        return logits

    def metric(self, dataset: VQADataset, context: HookContext) -> Metric | None:
        return None

    def update(self, metric: Metric, batch: Batch, out: dict[str, torch.Tensor],
               probabilities: torch.Tensor, context: HookContext) -> None:
        """``out``: the model's outputs; ``probabilities`` (B, A) as the loss models them."""

    def compute(self, metric: Metric) -> dict[str, torch.Tensor]:
        """Logged values, by key under the stage."""
        return metric.compute()

    def predict(self, batch: Batch, answer: torch.Tensor, probabilities: torch.Tensor,
                context: HookContext) -> dict[str, torch.Tensor]:
        """Per-question predictions (B, ...) beside the answer index ``answer`` (B,)."""
        return {}

    def result(self, entry: dict[str, Any], example: Example, row: dict[str, Any],
               fmt: DataFormat) -> None:
        """Complete one results-file entry from this question's predictions ``row``."""


def predict(hooks: Sequence[Hook], scores: torch.Tensor, batch: Batch, probabilities: torch.Tensor,
            context: HookContext) -> dict[str, torch.Tensor]:
    """One row per question of a results file: ``answer`` (B,), the argmax of ``scores`` (B, A)
    (logits, or probabilities: an ensemble's mean) as the hooks restrict it, and what the hooks
    predict beside it. ``vqa predict`` and ``vqa ensemble`` both answer through this."""
    for hook in hooks:
        scores = hook.answer_logits(scores, batch)
    answer = scores.argmax(-1)  # (B,)
    out = {"answer": answer}
    for hook in hooks:
        out.update(hook.predict(batch, answer, probabilities, context))
    return out


class MultipleChoice(Hook):
    """VQA v1 Multiple-Choice: logits outside a question's candidates are ``-inf``, and the results
    file names the chosen candidate exactly as the questions file spells it (the official
    evaluation checks membership). Applies to splits whose questions carry ``multiple_choices``."""

    name = "choices"

    def applies(self, dataset: VQADataset) -> bool:
        return dataset.data.choices is not None

    def item(self, dataset: VQADataset, i: int) -> dict[str, torch.Tensor]:
        return {"choices": dataset.data.choices[i]}  # (K,) vocabulary indices, -1 outside it

    def answer_logits(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        import torch

        choices = batch.extra["choices"]  # (B, K)
        b, a = logits.shape
        # Candidates outside the vocabulary (-1) go to a spare column A, dropped after.
        spare = choices.where(choices >= 0, a)  # (B, K)
        allowed = logits.new_zeros(b, a + 1, dtype=torch.bool).scatter_(1, spare, True)[:, :a]
        return logits.masked_fill(~allowed, float("-inf"))

    def predict(self, batch: Batch, answer: torch.Tensor, probabilities: torch.Tensor,
                context: HookContext) -> dict[str, torch.Tensor]:
        import torch

        hit = batch.extra["choices"] == answer[:, None]  # (B, K)
        return {"choice": torch.where(hit.any(1), hit.int().argmax(1), 0)}  # none known: first

    def result(self, entry: dict[str, Any], example: Example, row: dict[str, Any],
               fmt: DataFormat) -> None:
        entry[fmt.answer_field] = example.multiple_choices[row["choice"]]


@dataclass(frozen=True)
class Answerability(Hook):
    """VizWiz answerability: the probability of ``answer`` (as the loss models it) says how likely
    the question is unanswerable. Logs ``unanswerable_ap``, the average precision of that
    probability against the labels (VizWiz's ``evaluate_unanswerability``), where the split is
    labelled; results carry ``answerable`` = 1 - that probability.

    Args:
        answer: the vocabulary answer that means "cannot be answered".
    """

    answer: str = "unanswerable"
    name: ClassVar[str] = "answerable"

    def item(self, dataset: VQADataset, i: int) -> dict[str, torch.Tensor]:
        import torch

        labels = dataset.data.answerable
        return {"answerable": labels[i] if labels is not None else torch.tensor(-1.0)}

    def _index(self, context: HookContext) -> int | None:
        return context.pipeline.answers.index.get(self.answer)

    def metric(self, dataset: VQADataset, context: HookContext) -> Metric | None:
        if dataset.data.answerable is None:
            return None
        if self._index(context) is None:
            warnings.warn(f"the answer vocabulary has no {self.answer!r}: answerability is not "
                          "scored (unanswerable_ap) nor written to results", stacklevel=2)
            return None
        from torchmetrics.classification import BinaryAveragePrecision

        return BinaryAveragePrecision()

    def update(self, metric: Metric, batch: Batch, out: dict[str, torch.Tensor],
               probabilities: torch.Tensor, context: HookContext) -> None:
        labels = batch.extra["answerable"]  # (B,) 1, 0, or -1 unknown
        labelled = labels >= 0
        if batch.scored is not None:
            labelled &= batch.scored
        unanswerable = probabilities[:, self._index(context)]  # (B,)
        metric.update(unanswerable[labelled], (labels[labelled] == 0).long())

    def compute(self, metric: Metric) -> dict[str, torch.Tensor]:
        return {"unanswerable_ap": 100 * metric.compute()}  # 0 (and a warning) without positives

    def predict(self, batch: Batch, answer: torch.Tensor, probabilities: torch.Tensor,
                context: HookContext) -> dict[str, torch.Tensor]:
        i = self._index(context)
        return {} if i is None else {"answerable": 1 - probabilities[:, i]}

    def result(self, entry: dict[str, Any], example: Example, row: dict[str, Any],
               fmt: DataFormat) -> None:
        if "answerable" in row:
            entry["answerable"] = float(row["answerable"])


_FAMILIES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # dataset -> its families


def families(dataset: VQADataset) -> tuple[str, ...]:
    """The question families (``question_type``) of a split's grounded questions, sorted (found
    once per dataset)."""
    if dataset not in _FAMILIES:
        _FAMILIES[dataset] = tuple(sorted({ex.question_type for ex in dataset.examples
                                           if "grounding" in ex.extra and ex.question_type}))
    return _FAMILIES[dataset]


def _grounded(dataset: VQADataset) -> bool:
    return dataset.images.key == "image" and any("grounding" in ex.extra for ex in dataset.examples)


class Families(Hook):
    """Accuracy per question family (``question_type``) on splits that know where every object
    is (the shapes dataset, whose families test different skills: ``relation``, ``count``, ...),
    logged as ``vqa_acc/family/{family}``; the ``family`` input also splits the grounding scores.
    The VQA benchmarks' own categories stay the answer types."""

    name = "families"

    def applies(self, dataset: VQADataset) -> bool:
        return _grounded(dataset)

    def item(self, dataset: VQADataset, i: int) -> dict[str, torch.Tensor]:
        """``family`` (), the question family's index in ``families(dataset)`` (-1: none)."""
        import torch

        names, kind = families(dataset), dataset.examples[i].question_type
        return {"family": torch.tensor(names.index(kind) if kind in names else -1)}

    def metric(self, dataset: VQADataset, context: HookContext) -> Metric | None:
        from vqa.data.accuracy import VQAAccuracy

        return VQAAccuracy(families(dataset))

    def update(self, metric: Metric, batch: Batch, out: dict[str, torch.Tensor],
               probabilities: torch.Tensor, context: HookContext) -> None:
        metric.update(probabilities, batch.target, batch.extra["family"][:, None], batch.scored)

    def compute(self, metric: Metric) -> dict[str, torch.Tensor]:
        return {f"vqa_acc/family/{k}": v for k, v in metric.compute().items() if k}


class Grounding(Hook):
    """The shapes dataset's ground truth (the boxes of the objects a question refers to and the
    positions of the words naming them): per attention map, pointing accuracy, attention mass in
    the boxes and word hit rate (``vqa.data.grounding``), logged as ``grounding/{map}/...`` and
    per question family as ``grounding/{map}/{family}/...``. Applies to splits read from image
    files whose annotations carry ``grounding``."""

    name = "grounding"

    def applies(self, dataset: VQADataset) -> bool:
        return _grounded(dataset)

    def item(self, dataset: VQADataset, i: int) -> dict[str, torch.Tensor]:
        """``boxes`` (H, W) bool, the pixels inside the referred boxes in the resized image, or,
        over candidate boxes, ``box_cover`` (K_max,) 1 for a candidate that is a referred object
        (IoU >= 0.5; padded to the split's most boxes); ``words`` (T,) bool, the referring
        tokens; ``token_words`` (T,) each token's word."""
        import numpy as np
        import torch

        from vqa.data.boxes import box_cover
        from vqa.data.grounding import box_pixels

        ex, data, images = dataset.examples[i], dataset.data, dataset.images
        g = ex.extra.get("grounding", {})
        referred = list(g.get("word_positions", []))
        words = torch.from_numpy(np.isin(data.words[i], referred) & (data.words[i] >= 0))
        out = {"words": words, "token_words": torch.from_numpy(data.words[i].astype(np.int64))}
        if images.boxes is not None:
            candidates = images.boxes[ex.image_id].boxes
            cover = np.zeros(images.max_boxes, np.float32)
            cover[:len(candidates)] = box_cover(candidates, np.asarray(g.get("boxes") or [],
                                                                       np.float32).reshape(-1, 4))
            return {**out, "box_cover": torch.from_numpy(cover)}
        height, width = images.pipeline.image_size
        boxes = (box_pixels(g["boxes"], images.original_size(ex.image_id), (height, width))
                 if g.get("boxes") else torch.zeros(height, width, dtype=torch.bool))
        return {**out, "boxes": boxes}

    def metric(self, dataset: VQADataset, context: HookContext) -> Metric | None:
        from vqa.data.grounding import GroundingScores

        return GroundingScores(context.region_maps, context.word_maps, families(dataset))

    def update(self, metric: Metric, batch: Batch, out: dict[str, torch.Tensor],
               probabilities: torch.Tensor, context: HookContext) -> None:
        from vqa.data.grounding import region_cover

        e, n = batch.extra, out["image_attention"].shape[-1]
        cover = (e["box_cover"][:, :n] if "box_cover" in e
                 else region_cover(e["boxes"], context.pipeline.region_grid(n)))  # (B, N)
        metric.update(out["image_attention"], out["question_attention"], cover, e["words"],
                      e["token_words"], e.get("family"))

    def compute(self, metric: Metric) -> dict[str, torch.Tensor]:
        return {f"grounding/{k}": v for k, v in metric.compute().items()}
