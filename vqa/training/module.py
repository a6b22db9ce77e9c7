"""``VQAModule``: loss, metrics, optimiser and logging around a plain model."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.cli import LRSchedulerCallable, OptimizerCallable
from pytorch_lightning.trainer.states import TrainerFn
from pytorch_lightning.utilities import rank_zero_info
from torch import nn
from torchmetrics.classification import BinaryAveragePrecision

from vqa.data.datamodule import STAGE_SPLITS
from vqa.data.pipeline import InputPipeline
from vqa.models.question import QuestionEncoder
from vqa.training.grounding import GroundingScores
from vqa.training.metrics import VQAAccuracy

INPUTS = ("question", "question_mask", "image", "features", "image_index", "question_features")


def restrict_to_choices(logits: torch.Tensor, choices: torch.Tensor) -> torch.Tensor:
    """Multiple choice: logits (B, A) with every answer outside a question's candidates
    ``choices`` (B, K, vocabulary indices, -1 for candidates outside the vocabulary) at -inf."""
    allowed = torch.zeros_like(logits, dtype=torch.bool)  # (B, A)
    allowed.scatter_(1, choices.clamp(min=0), choices >= 0)
    return logits.masked_fill(~allowed, float("-inf"))


def _adam(params: Any) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=1e-3)


class VQAModule(pl.LightningModule):
    """Trains any model with the ``HieCoAtt`` interface.

    Args:
        model: maps ``question``, ``question_mask`` and ``image`` or ``features`` to a dict with
            ``logits`` (B, A) and attention maps.
        loss: ``bce``: binary cross-entropy on the soft scores of all answers (summed over answers);
            ``softmax``: cross-entropy on ``multiple_choice_answer``, as in the paper.
        optimizer: optimiser factory (``class_path`` / ``init_args`` in YAML).
        scheduler: optional learning-rate scheduler factory, stepped every epoch; one that takes
            ``total_steps`` (``OneCycleLR``) gets the run's number of steps and steps per batch.
        compile: compile the model's forward with ``torch.compile`` (in place: checkpoints keep
            the same keys and load into an uncompiled model). Mixed precision is the trainer's
            ``precision`` (``bf16-mixed``, ``16-mixed``).
    """

    def __init__(self, model: nn.Module, loss: Literal["bce", "softmax"] = "bce",
                 optimizer: OptimizerCallable = _adam,
                 scheduler: LRSchedulerCallable | None = None, compile: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = model
        self.optimizer, self.scheduler = optimizer, scheduler  # hparams hold their configs
        self.pipeline: InputPipeline | None = None  # the data's, or a checkpoint's
        self.metrics = nn.ModuleDict({s: VQAAccuracy() for s in ("val", "test")})
        self.metric_names = {"val": "vqa_acc", "test": "vqa_acc"}  # the data's scorer's (setup)
        # VizWiz: average precision of "unanswerable" from that answer's probability.
        self.answerability = nn.ModuleDict()
        self.unanswerable: dict[str, int] = {}
        self.grounding = nn.ModuleDict({s: GroundingScores() for s in ("val", "test")})
        self._compiled = False

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    def forward(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return self.model(**{k: batch[k] for k in INPUTS if k in batch})

    def loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        if self.hparams.loss == "softmax":
            return F.cross_entropy(logits, batch["answer_index"], ignore_index=-100)
        bce = F.binary_cross_entropy_with_logits(logits, batch["target"], reduction="none")
        return bce.sum(1).mean()

    def _loss_weight(self, batch: dict[str, Any]) -> int:
        """Questions the loss averages over: those with a known answer for ``softmax``. Epoch
        means weighted by it are exact means over questions, whatever the batching."""
        if self.hparams.loss == "softmax":
            return max(int((batch["answer_index"] != -100).sum()), 1)
        return len(batch["question"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        loss = self.loss(self(batch)["logits"], batch)
        self._stop_if_not_finite(loss, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["question"]))
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch: dict[str, Any], batch_idx: int) -> None:
        """A NaN or infinite loss on any process stops every process before the optimiser step,
        so no checkpoint ever holds the weights it would produce."""
        bad = not bool(torch.isfinite(loss))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            where = (f"train/loss is {loss.item()} on this process" if bad
                     else "train/loss is not finite on another process")
            raise FloatingPointError(
                f"{where} at epoch {self.current_epoch}, batch {batch_idx} (global step "
                f"{self.global_step}; question ids {batch['question_id'][:8].tolist()}): "
                "training stopped before the optimiser step")

    def _answer_logits(self, out: dict[str, torch.Tensor], batch: dict[str, Any]) -> torch.Tensor:
        """Logits the answer is picked from: all answers, or a multiple-choice question's
        candidates."""
        if "choices" in batch:
            return restrict_to_choices(out["logits"], batch["choices"])
        return out["logits"]

    def _unanswerable_probability(self, logits: torch.Tensor, stage: str) -> torch.Tensor:
        """(B,) the probability of the answer "unanswerable" (VizWiz), as the loss models it."""
        i = self.unanswerable[stage]
        if self.hparams.loss == "softmax":
            return logits.float().softmax(-1)[:, i]
        return logits[:, i].float().sigmoid()

    def _eval_step(self, stage: str, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = self(batch)
        self.log(f"{stage}/loss", self.loss(out["logits"], batch), batch_size=self._loss_weight(batch),
                 sync_dist=True)
        answer_logits = self._answer_logits(out, batch)
        self.metrics[stage].update(answer_logits, batch["target"], batch["groups"],
                                   batch.get("scored"))
        if stage in self.answerability:
            labelled = batch["answerable"] >= 0  # (B,)
            if "scored" in batch:
                labelled &= batch["scored"]
            self.answerability[stage].update(
                self._unanswerable_probability(out["logits"], stage)[labelled],
                (batch["answerable"][labelled] == 0).long())  # positive class: unanswerable
        out["answer"] = answer_logits.argmax(-1)  # (B,)
        if "grounding_boxes" in batch:
            self.grounding[stage].update(out["image_attention"], out["question_attention"],
                                         batch["grounding_boxes"], batch["grounding_words"],
                                         self.attention_grid(out["image_attention"].shape[-1]),
                                         batch["question_words"])
        return out  # answers and attention maps for callbacks, without a second forward pass

    def attention_grid(self, regions: int) -> tuple[int, int]:
        """(rows, columns) of the region grid, from the input pipeline."""
        grid = self.pipeline.grid if self.pipeline is not None else None
        if grid is None or grid[0] * grid[1] != regions:
            raise ValueError(f"the input pipeline's region grid {grid} does not cover the "
                             f"model's {regions} regions")
        return tuple(grid)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step("val", batch)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step("test", batch)

    def _log_metric(self, stage: str) -> None:
        # The metrics' states are already summed over processes, so every process holds the same
        # value; "max" over equal values keeps it exact (and tells Lightning it is synced).
        synced = {"sync_dist": True, "reduce_fx": "max"}
        name = self.metric_names[stage]
        for key, value in self.metrics[stage].compute().items():
            self.log(f"{stage}/{name}" + (f"/{key}" if key else ""), value.float(),
                     prog_bar=not key, **synced)
        self.metrics[stage].reset()
        if stage in self.answerability:  # every process: compute() gathers the predictions
            ap = self.answerability[stage].compute()  # 0 (and a warning) when none is positive
            self.log(f"{stage}/unanswerable_ap", 100 * ap.float(), **synced)
            self.answerability[stage].reset()
        if self.grounding[stage].update_called:
            for key, value in self.grounding[stage].compute().items():
                self.log(f"{stage}/grounding/{key}", value.float(), **synced)
        self.grounding[stage].reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metric("val")

    def on_test_epoch_end(self) -> None:
        self._log_metric("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Answer indices per question id (``ResultsWriter`` turns them into strings); for
        multiple choice also ``choice``, the position of the answer among the candidates."""
        logits = self(batch)["logits"]
        answer = self._answer_logits({"logits": logits}, batch).argmax(-1)  # (B,)
        out = {"question_id": batch["question_id"], "answer": answer}
        if "predict" in self.unanswerable:  # VizWiz results carry answerability
            out["answerable"] = 1 - self._unanswerable_probability(logits, "predict")
        if "choices" in batch:
            hit = batch["choices"] == answer[:, None]  # (B, K)
            out["choice"] = torch.where(hit.any(1), hit.int().argmax(1), 0)  # none known: first
        return out

    def configure_optimizers(self) -> Any:
        optimizer = self.optimizer(self.parameters())
        if self.scheduler is None:
            return optimizer
        # Schedulers that take ``total_steps`` (OneCycleLR) get the run's length and step per batch.
        steps = self.trainer.estimated_stepping_batches  # inf: max_epochs -1 ("until stopped")
        if steps != float("inf"):
            try:
                return {"optimizer": optimizer, "lr_scheduler": {
                    "scheduler": self.scheduler(optimizer, total_steps=int(steps)), "interval": "step"}}
            except TypeError as e:
                if "total_steps" not in str(e):
                    raise
        try:
            return {"optimizer": optimizer, "lr_scheduler": self.scheduler(optimizer)}
        except (TypeError, ValueError) as e:
            if "total_steps" not in str(e):
                raise
            raise ValueError("the learning-rate scheduler needs the run's length (total_steps): "
                             "give trainer.max_epochs or trainer.max_steps, not -1") from e

    def setup(self, stage: str) -> None:
        """Take the data's input pipeline (with the image encoder's region grid), and have the data
        serve a frozen text encoder's features, computed once."""
        dm = getattr(self.trainer, "datamodule", None)
        if not hasattr(dm, "pipeline"):
            return
        pipeline, encoder = dm.pipeline, getattr(self.model, "image_encoder", None)
        if encoder is not None:
            pipeline = pipeline.with_grid(encoder.grid(pipeline.image_size))
        dm.pipeline = self.pipeline = pipeline
        self._scored_like(dm, stage)
        text = getattr(self.model, "question_encoder", None)
        if getattr(text, "frozen", False) and hasattr(dm, "use_question_features"):
            self._cache_question_features(dm, text, stage)

    def _scored_like(self, dm: Any, stage: str) -> None:
        """Metrics as the benchmark of each split of ``stage`` defines them (its metric name, the
        categories it reports, answerability where it scores it)."""
        for name in STAGE_SPLITS[stage]:
            if dm.splits.get(name) is None or not hasattr(dm, "metric"):
                continue
            spec = dm.metric(name)
            if name in self.metric_names:
                rank_zero_info(f"{name}/{spec.name} reproduces {spec.reproduces}")
                self.metrics[name] = VQAAccuracy(spec.groups)
                self.metric_names[name] = spec.name
                if spec.unanswerable is not None and spec.answerability_labels:
                    self.answerability[name] = BinaryAveragePrecision()
            if spec.unanswerable is not None:
                self.unanswerable[name] = spec.unanswerable

    def on_train_start(self) -> None:
        """``pipeline.json`` in the log folder, once training starts (a start that fails earlier,
        on bad data, leaves no log folder behind)."""
        log_dir = self.trainer.log_dir  # a collective call under DDP: every process asks
        if log_dir and self.trainer.is_global_zero and self.pipeline is not None:
            self.pipeline.save(Path(log_dir) / "pipeline.json")

    def _cache_question_features(self, dm: Any, text: QuestionEncoder, stage: str) -> None:
        """Frozen text features of this stage's splits: one process computes them (on the
        accelerator) into ``data.cache_dir`` while the others wait, then every process reads them.
        A failure there stops every process, not only the one that computed."""
        trainer, device = self.trainer, self.trainer.strategy.root_device
        dm.use_question_features(text.hidden, text.cache_key(), device)
        error: Exception | None = None
        if trainer.is_global_zero or dm.cache_dir is None:
            home = next(text.parameters()).device
            try:
                text.to(device)
                for name in STAGE_SPLITS[stage]:
                    if dm.splits.get(name) is not None:
                        dm.question_features(name)
            except Exception as e:  # re-raised below, once every process knows
                error = e
            finally:
                text.to(home)
        if trainer.strategy.reduce_boolean_decision(error is not None, all=False):
            raise error or RuntimeError("computing the question features failed on another process")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """The input pipeline, and the random number generators' states (a resumed run draws
        the same dropout masks as one that was never stopped)."""
        if self.pipeline is not None:
            checkpoint["vqa_pipeline"] = self.pipeline.to_dict()
        kind, keys, pos, has_gauss, gauss = np.random.get_state()  # plain types: weights_only
        checkpoint["vqa_rng"] = {"torch": torch.get_rng_state(),
                                 "numpy": (kind, torch.from_numpy(keys.astype(np.int64)), int(pos),
                                           int(has_gauss), float(gauss)),
                                 "python": random.getstate(),
                                 "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available()
                                 else []}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        if "vqa_pipeline" in checkpoint or "vqa_vocab" in checkpoint:
            self.pipeline = InputPipeline.from_checkpoint(checkpoint, "checkpoint")
        rng = checkpoint.get("vqa_rng")
        if rng and self._trainer is not None and self._trainer.state.fn == TrainerFn.FITTING:
            torch.set_rng_state(rng["torch"])
            kind, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])
            if rng["cuda"] and torch.cuda.device_count() == len(rng["cuda"]):
                torch.cuda.set_rng_state_all(rng["cuda"])
        _drop_unused_first_step_w_g(checkpoint, {name for name, _ in self.named_buffers()})


def _drop_unused_first_step_w_g(checkpoint: dict[str, Any], buffers: set[str]) -> None:
    """Older checkpoints hold a W_g for alternating's first step, whose guidance is g = 0: it never
    affected an output, so dropping it (weights and optimiser state) loads them exactly."""
    state = checkpoint.get("state_dict", {})
    stale = [k for k in state if k.endswith("summarise.w_g.weight")]
    if not stale:
        return
    params = [k for k in state if k not in buffers]  # the optimiser's parameter order
    drop = {params.index(k) for k in stale}
    for opt in checkpoint.get("optimizer_states", []):
        for group in opt["param_groups"]:
            group["params"] = [i for i in group["params"] if i not in drop]
        for i in drop:
            opt["state"].pop(i, None)
    for key in stale:
        del state[key]
