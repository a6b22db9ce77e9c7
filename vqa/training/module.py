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

from vqa.data.accuracy import VQAAccuracy
from vqa.data.batch import Batch
from vqa.data.datamodule import STAGE_SPLITS
from vqa.data.hooks import Hook, HookContext, predict
from vqa.data.pipeline import InputPipeline

EVAL_STAGES = ("val", "test")


def rmsprop(params: Any) -> torch.optim.Optimizer:
    """The paper's optimiser (reference code): RMSprop, lr 4e-4, alpha 0.99, eps 1e-8."""
    return torch.optim.RMSprop(params, lr=4e-4, alpha=0.99, eps=1e-8)


class VQAModule(pl.LightningModule):
    """Trains any model with the ``VQAModel`` interface; what a dataset asks beyond the answer
    (multiple choice, answerability, grounding) comes from the data's hooks (``vqa.data.hooks``).

    Args:
        model: maps ``question``, ``question_mask`` and ``image`` or ``features`` to a dict with
            ``logits`` (B, A) and attention maps named by its ``maps`` (``vqa.models.VQAModel``).
        loss: ``softmax``: cross-entropy on the training answer (``multiple_choice_answer``), as
            in the paper; ``bce``: binary cross-entropy on the soft scores of all answers (summed
            over answers).
        optimizer: optimiser factory (``class_path`` / ``init_args`` in YAML); default the
            paper's RMSprop (lr 4e-4, alpha 0.99, eps 1e-8).
        scheduler: optional learning-rate scheduler factory, stepped every epoch; one that takes
            ``total_steps`` (``OneCycleLR``) gets the run's number of steps and steps per batch.
        compile: compile the model's forward with ``torch.compile`` (in place: checkpoints keep
            the same keys and load into an uncompiled model). Mixed precision is the trainer's
            ``precision`` (``bf16-mixed``, ``16-mixed``).
    """

    def __init__(self, model: nn.Module, loss: Literal["softmax", "bce"] = "softmax",
                 optimizer: OptimizerCallable = rmsprop,
                 scheduler: LRSchedulerCallable | None = None, compile: bool = False) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = model
        self.optimizer, self.scheduler = optimizer, scheduler  # hparams hold their configs
        self.pipeline: InputPipeline | None = None  # the data's, with the grid; or a checkpoint's
        self.metrics = nn.ModuleDict({s: VQAAccuracy() for s in EVAL_STAGES})
        self.metric_names = {s: "vqa_acc" for s in EVAL_STAGES}  # the data's scorer's (setup)
        self.hooks: dict[str, list[Hook]] = {}  # per split: the data's hooks
        self.hook_metrics = nn.ModuleDict({s: nn.ModuleDict() for s in EVAL_STAGES})
        self.predict_probabilities = False  # predict_step returns them too (ResultsWriter sets it)
        self._compiled = False

    def configure_model(self) -> None:
        if self.hparams.compile and not self._compiled:
            self.model.compile()
            self._compiled = True

    def forward(self, batch: Batch) -> dict[str, torch.Tensor]:
        return self.model(**batch.inputs())

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        if self.hparams.loss == "softmax":
            return F.cross_entropy(logits, batch.answer_index, ignore_index=-100)
        bce = F.binary_cross_entropy_with_logits(logits, batch.target, reduction="none")
        return bce.sum(1).mean()

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """(B, A) each answer's probability as the loss models it: softmax, or independent
        sigmoids for ``bce``."""
        logits = logits.float()
        return logits.softmax(-1) if self.hparams.loss == "softmax" else logits.sigmoid()

    def _loss_weight(self, batch: Batch) -> int:
        """Questions the loss averages over: those with a known answer for ``softmax``. Epoch
        means weighted by it are exact means over questions, whatever the batching."""
        if self.hparams.loss == "softmax":
            return max(int((batch.answer_index != -100).sum()), 1)
        return len(batch)

    def training_loss(self, out: dict[str, torch.Tensor], batch: Batch) -> torch.Tensor:
        """The answer's loss, plus, where the head gives each level's own answer
        (``level_logits``, B x L x A), their mean loss times the head's ``level_answers``."""
        loss = self.loss(out["logits"], batch)
        if "level_logits" in out:
            own = torch.stack([self.loss(x, batch) for x in out["level_logits"].unbind(1)])
            loss = loss + self.model.head.level_answers * own.mean()
        return loss

    def training_step(self, batch: Batch, batch_idx: int) -> torch.Tensor:
        loss = self.training_loss(self(batch), batch)
        self._stop_if_not_finite(loss, batch, batch_idx)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch))
        return loss

    def _stop_if_not_finite(self, loss: torch.Tensor, batch: Batch, batch_idx: int) -> None:
        """A NaN or infinite loss on any process stops every process before the optimiser step,
        so no checkpoint ever holds the weights it would produce."""
        bad = not bool(torch.isfinite(loss))
        if self.trainer.strategy.reduce_boolean_decision(bad, all=False):
            where = (f"train/loss is {loss.item()} on this process" if bad
                     else "train/loss is not finite on another process")
            raise FloatingPointError(
                f"{where} at epoch {self.current_epoch}, batch {batch_idx} (global step "
                f"{self.global_step}; question ids {batch.question_id[:8].tolist()}): "
                "training stopped before the optimiser step")

    def _context(self) -> HookContext:
        maps = self.model.maps
        return HookContext(self.pipeline, maps.regions, maps.words)

    def _answer_logits(self, logits: torch.Tensor, batch: Batch, split: str) -> torch.Tensor:
        """The logits the answer is picked from (a multiple-choice hook restricts them)."""
        for hook in self.hooks.get(split, ()):
            logits = hook.answer_logits(logits, batch)
        return logits

    def _eval_step(self, stage: str, batch: Batch) -> dict[str, torch.Tensor]:
        out = self(batch)
        self.log(f"{stage}/loss", self.loss(out["logits"], batch), batch_size=self._loss_weight(batch),
                 sync_dist=True)
        logits = self._answer_logits(out["logits"], batch, stage)
        self.metrics[stage].update(logits, batch.target, batch.groups, batch.scored)
        metrics = self.hook_metrics[stage]
        if len(metrics):
            probabilities, context = self.probabilities(out["logits"]), self._context()
            for hook in self.hooks[stage]:
                if hook.name in metrics:
                    hook.update(metrics[hook.name], batch, out, probabilities, context)
        out["answer"] = logits.argmax(-1)  # (B,)
        return out  # answers and attention maps for callbacks, without a second forward pass

    def validation_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step("val", batch)

    def test_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        return self._eval_step("test", batch)

    def _log_metrics(self, stage: str) -> None:
        # The metrics' states are already summed over processes, so every process holds the same
        # value; "max" over equal values keeps it exact (and tells Lightning it is synced).
        synced = {"sync_dist": True, "reduce_fx": "max"}
        name = self.metric_names[stage]
        for key, value in self.metrics[stage].compute().items():
            self.log(f"{stage}/{name}" + (f"/{key}" if key else ""), value.float(),
                     prog_bar=not key, **synced)
        self.metrics[stage].reset()
        hooks = {h.name: h for h in self.hooks.get(stage, ())}
        for name, metric in self.hook_metrics[stage].items():
            if metric.update_called:  # every process computes (some metrics gather)
                for key, value in hooks[name].compute(metric).items():
                    self.log(f"{stage}/{key}", value.float(), **synced)
                metric.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")

    def predict_step(self, batch: Batch, batch_idx: int) -> dict[str, torch.Tensor]:
        """Answer indices per question id (``ResultsWriter`` turns them into strings), what the
        data's hooks add (a multiple-choice candidate, answerability), and, when
        ``predict_probabilities`` is set (``ResultsWriter(probabilities=True)`` sets it), every
        answer's probability (B, A) as float16."""
        logits = self(batch)["logits"]
        probabilities = self.probabilities(logits)
        out = {"question_id": batch.question_id, **predict(
            self.hooks.get("predict", ()), logits, batch, probabilities, self._context())}
        if self.predict_probabilities:
            out["probabilities"] = probabilities.half()  # N x A kept until the epoch ends: halved
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
        """Take the data's input pipeline into a copy of our own, completed with the image
        encoder's region grid, and the metrics and hooks of the splits this stage reads (the
        data module is read, never written to)."""
        dm = getattr(self.trainer, "datamodule", None)
        if not hasattr(dm, "pipeline"):
            return
        pipeline, encoder = dm.pipeline, getattr(self.model, "image_encoder", None)
        if encoder is not None and hasattr(encoder, "grid"):  # a BoxEncoder's regions are boxes
            pipeline = pipeline.with_grid(encoder.grid(pipeline.image_size))
        self.pipeline = pipeline
        for name in STAGE_SPLITS[stage]:
            if dm.splits.get(name) is None or not hasattr(dm, "metric") or name == "train":
                continue
            self.hooks[name] = dm.hooks(name)
            if name not in EVAL_STAGES:
                continue
            spec = dm.metric(name)
            rank_zero_info(f"{name}/{spec.name} reproduces {spec.reproduces}")
            self.metrics[name] = VQAAccuracy(spec.groups)
            self.metric_names[name] = spec.name
            metrics = {h.name: h.metric(dm.dataset(name), self._context()) for h in self.hooks[name]}
            self.hook_metrics[name] = nn.ModuleDict({k: m for k, m in metrics.items() if m is not None})

    def on_train_start(self) -> None:
        """``pipeline.json`` in the log folder, once training starts (a start that fails earlier,
        on bad data, leaves no log folder behind)."""
        log_dir = self.trainer.log_dir  # a collective call under DDP: every process asks
        if log_dir and self.trainer.is_global_zero and self.pipeline is not None:
            self.pipeline.save(Path(log_dir) / "pipeline.json")

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
        _check_shapes(checkpoint.get("state_dict", {}), self.state_dict())


def _check_shapes(saved: dict[str, torch.Tensor], own: dict[str, torch.Tensor]) -> None:
    """A checkpoint whose weights have other shapes than this model is refused by name, never
    reshaped. The likely cause: a checkpoint whose config did not name the answer MLP's widths,
    trained when their default was 1024 for all three (before the reference code's 512, 512,
    1024); ``answer_hidden: 1024`` builds that model again."""
    wrong = [(k, tuple(v.shape), tuple(own[k].shape)) for k, v in saved.items()
             if k in own and tuple(v.shape) != tuple(own[k].shape)]
    if wrong:
        k, theirs, ours = wrong[0]
        head = " (trained with answer MLP widths other than these: give --model.model.init_args." \
               "answer_hidden, e.g. 1024 for checkpoints of the earlier default)" \
            if any(".head." in w[0] or w[0].startswith("head.") for w in wrong) else ""
        raise ValueError(f"checkpoint weights do not fit this model: {k} is {theirs} in the "
                         f"checkpoint and {ours} here ({len(wrong)} tensor(s) differ){head}")


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
