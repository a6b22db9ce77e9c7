"""``VQACLI``: the LightningCLI behind ``vqa fit | validate | test | predict``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning import Trainer
from pytorch_lightning.cli import LightningCLI

from vqa.data.pipeline import InputPipeline, read_checkpoint
from vqa.training.checkpoint_io import AtomicCheckpointIO


class VQACLI(LightningCLI):
    """Links the sizes the data's input pipeline determines into the model, and evaluates a
    checkpoint with its own pipeline."""

    def add_arguments_to_parser(self, parser) -> None:
        for source, target in (("question_vocab_size", "vocab_size"),
                               ("answer_vocab_size", "num_answers"),
                               ("image_dim", "image_dim"), ("text_model", "text_model")):
            parser.link_arguments(f"data.{source}", f"model.model.init_args.{target}",
                                  apply_on="instantiate")
        parser.add_argument("--overwrite", action="store_true",
                            help="let `fit` replace the checkpoints of an earlier run in the same "
                                 "folder (without it, `fit` refuses)")

    def before_fit(self) -> None:
        """A new run never replaces an earlier run's checkpoints: resume it (``--ckpt_path``),
        write elsewhere, or say ``--overwrite``."""
        self._check_data()
        cfg = self.config[self.subcommand]
        if cfg.get("ckpt_path") or cfg.get("overwrite"):
            return
        for callback in self.trainer.checkpoint_callbacks:
            folder = getattr(callback, "dirpath", None)
            found = sorted(p.name for p in Path(folder).glob("*.ckpt")) if folder else []
            if found:
                raise ValueError(
                    f"{folder} already holds the checkpoints of an earlier run ({', '.join(found)}); "
                    f"`vqa fit` would replace them. Resume it with --ckpt_path last, point this run "
                    "elsewhere (--trainer.default_root_dir and the callbacks' paths), or pass "
                    "--overwrite")

    def _check_data(self) -> None:
        """Bad data fails here, before Lightning creates a log folder for the run."""
        check = getattr(self.datamodule, "check", None)
        if check is not None:
            check(self.subcommand)

    before_validate = before_test = before_predict = _check_data

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        """The configured trainer, writing checkpoints atomically unless a plugin says otherwise."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Lightning reads the checkpoint's hyperparameters here: a file that is not one of our
        checkpoints gets an error naming it first."""
        name = self.config.get("subcommand")
        ckpt = self.config[name].get("ckpt_path") if name else None
        named = ckpt in ("best", "last", "hpc") or str(ckpt).startswith("registry")
        if ckpt and not named:
            read_checkpoint(ckpt)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        # Evaluating or resuming a checkpoint: use its input pipeline instead of building one.
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if not ckpt or not os.path.isfile(ckpt):  # none, or "last" / "best"
            return
        if cfg.data.pipeline and InputPipeline.load(cfg.data.pipeline).to_dict() != \
                InputPipeline.load(ckpt).to_dict():
            raise ValueError(f"data.pipeline {cfg.data.pipeline} is not the input pipeline "
                             f"{ckpt} was trained with: leave it out to use the checkpoint's")
        cfg.data.pipeline = str(ckpt)
