"""``AttentionTable``: each validation epoch, a W&B table of what the model attends to.

For a fixed set of validation questions (the first ``num_examples`` that rank zero validates) a row
holds the image, each of the model's maps over regions overlaid on it, the question with every word
coloured by each map over words (subword tokens merged into words), the predicted answer, the
human answers and the VQA score. The maps are the model's (``model.maps``): a HieCoAtt level, a
SAN hop, a BAN glimpse; a map without a side shows none there. Attention comes from what
``validation_step`` returns: no second forward pass. Images and words come from the data module's ``view``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytorch_lightning as pl
from PIL import Image
from pytorch_lightning.loggers import WandbLogger

from vqa._io import atomic_save, write_json
from vqa.models.attention import MapNames
from vqa.viz import overlay, words_html

if TYPE_CHECKING:
    import torch


class AttentionTable(pl.Callback):
    """Logs ``val/attention`` (a ``wandb.Table``) to the run's ``WandbLogger``.

    Args:
        num_examples: validation questions in the table.
        export: also write the table into the run folder (``files/attention/epoch_*/``): a PNG per
            question (the image, then its overlay for each map over regions) and ``table.json``.
            W&B itself keeps a table's images in the run's table artifact.
    """

    def __init__(self, num_examples: int = 16, export: bool = True) -> None:
        self.num_examples, self.export = num_examples, export
        self.question_ids: list[int] | None = None
        self.rows: dict[int, dict[str, Any]] = {}

    def _active(self, trainer: pl.Trainer) -> bool:
        return (trainer.is_global_zero and not trainer.sanity_checking
                and any(isinstance(lg, WandbLogger) for lg in trainer.loggers))

    def on_validation_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.rows = {}

    def on_validation_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                                outputs: Any, batch: Any, batch_idx: int,
                                dataloader_idx: int = 0) -> None:
        if not self._active(trainer) or not isinstance(outputs, dict):
            return
        qids = batch.question_id.tolist()
        if self.question_ids is None or len(self.question_ids) < self.num_examples:
            chosen = self.question_ids or []
            self.question_ids = chosen + qids[: self.num_examples - len(chosen)]
        wanted = set(self.question_ids)
        for row, qid in enumerate(qids):
            if qid in wanted:
                pred = int(outputs["answer"][row])
                self.rows[qid] = {
                    "image_attention": outputs["image_attention"][row].float().cpu(),  # (M_v, N)
                    "question_attention": outputs["question_attention"][row].float().cpu(),  # (M_q, T)
                    "answer": pred, "score": float(batch.target[row, pred]),
                    "boxes": _boxes(batch, row),
                }

    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self._active(trainer) or not self.rows:
            return
        import wandb

        dm = trainer.datamodule
        answers = pl_module.pipeline.answers.tokens
        maps = pl_module.model.maps
        first = next(iter(self.rows.values()))
        grid = (pl_module.pipeline.region_grid(first["image_attention"].shape[-1])
                if first["boxes"] is None else None)
        columns = ["question_id", "image", *(f"{name} attention" for name in maps.regions),
                   "question", "prediction", "human answers", "vqa score"]
        data, export = [], []
        for qid in self.question_ids or []:
            if qid not in self.rows:
                continue
            r, view = self.rows[qid], dm.view("val", qid)
            ex, question, image = view.example, view.question, view.image
            layout = grid if r["boxes"] is None else r["boxes"]
            overlays = [overlay(image, a, layout) for a in r["image_attention"]] if (
                image is not None) else [None] * len(maps.regions)
            words = question.merge(r["question_attention"])  # (M_q, T) -> (M_q, W)
            html = "".join(words_html(question.words, words[i], name)
                           for i, name in enumerate(maps.words)) or words_html(
                question.words, np.zeros(len(question.words)), "no attention over words")
            prediction = answers[r["answer"]]
            media = [None if x is None else wandb.Image(x) for x in (image, *overlays)]
            data.append([qid, *media, wandb.Html(html), prediction, ", ".join(ex.answers),
                         r["score"]])
            export.append((qid, None if image is None else np.concatenate([image, *overlays], 1), {
                "question_id": qid, "question": ex.question, "words": question.words,
                "word_attention": words.tolist(), "prediction": prediction,
                "human_answers": list(ex.answers), "vqa_score": r["score"]}))
        for lg in trainer.loggers:
            if isinstance(lg, WandbLogger):
                lg.log_table("val/attention", columns=columns, data=data, step=trainer.global_step)
                if self.export:
                    _export(Path(lg.experiment.dir) / "attention" /
                            f"epoch_{trainer.current_epoch:03d}", export, maps)


def _boxes(batch: Any, row: int) -> torch.Tensor | None:
    """Question ``row``'s boxes (N, 4) over the image size (``None`` on a grid)."""
    if batch.boxes is None:
        return None
    image = int(batch.image_index[row]) if batch.image_index is not None else row
    return batch.boxes[image].float().cpu()


def _export(folder: Path, rows: list[tuple[int, np.ndarray | None, dict[str, Any]]],
            maps: MapNames) -> None:
    """The table as files in the run folder (uploaded with the run): per question a PNG of the
    image and its overlay for each map over regions side by side, and ``table.json`` with the
    rest (``word_attention`` rows are ``maps.words``)."""
    for qid, strip, _ in rows:
        if strip is None:  # cached features and no image folder: nothing to draw
            continue
        atomic_save(folder / f"{qid}.png", lambda tmp, strip=strip: Image.fromarray(strip).save(
            tmp, format="PNG"))
    write_json(folder / "table.json", {"maps": {"regions": list(maps.regions),
                                                "words": list(maps.words)},
                                       "rows": [r for _, _, r in rows]})
