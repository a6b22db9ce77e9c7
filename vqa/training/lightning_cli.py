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
        """A new run never replaces an earlier run's checkpoints: resume it (``--ckpt_path`` to
        a checkpoint of its own folder), write elsewhere, or say ``--overwrite`` (which is not
        kept in the saved config, so rerunning that config asks again)."""
        cfg = self.config[self.subcommand]
        folders = [Path(c.dirpath) for c in self.trainer.checkpoint_callbacks
                   if getattr(c, "dirpath", None)]
        ckpt = Path(cfg["ckpt_path"]).resolve() if cfg.get("ckpt_path") else None
        resuming = ckpt is not None and any(ckpt.parent == f.resolve() for f in folders)
        if not (resuming or cfg.get("overwrite")):
            for folder in folders:
                found = sorted(p.name for p in folder.glob("*.ckpt"))
                if found:
                    raise ValueError(
                        f"{folder} already holds the checkpoints of an earlier run "
                        f"({', '.join(found)}); `vqa fit` would replace them. Resume it with "
                        "--ckpt_path last, point this run elsewhere (--trainer.default_root_dir "
                        "and the callbacks' paths), or pass --overwrite")
        cfg["overwrite"] = False
        self._check_data()

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
        """Lightning reads the checkpoint's hyperparameters here. ``--ckpt_path last`` becomes
        the newest ``last*.ckpt`` of the configured checkpoint folders (an error when there is
        none, instead of starting over), so that a resumed run uses its checkpoint's input
        pipeline like any other; a file that is not one of our checkpoints is refused by name."""
        name = self.config.get("subcommand")
        cfg = self.config[name] if name else None
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if ckpt == "last":
            cfg["ckpt_path"] = ckpt = str(_last_checkpoint(cfg))
        if ckpt and ckpt not in ("best", "hpc") and not str(ckpt).startswith("registry"):
            read_checkpoint(ckpt)
        super()._parse_ckpt_path()

    def before_instantiate_classes(self) -> None:
        """Evaluating or resuming a checkpoint: use its input pipeline instead of building one."""
        cfg = self.config.get(self.subcommand) if self.subcommand else self.config
        ckpt = cfg.get("ckpt_path") if cfg is not None else None
        if not ckpt or not os.path.isfile(ckpt):  # none, or "last" / "best"
            return
        if cfg.data.pipeline and InputPipeline.load(cfg.data.pipeline).to_dict() != \
                InputPipeline.load(ckpt).to_dict():
            raise ValueError(f"data.pipeline {cfg.data.pipeline} is not the input pipeline "
                             f"{ckpt} was trained with: leave it out to use the checkpoint's")
        cfg.data.pipeline = str(ckpt)


def _last_checkpoint(cfg: Any) -> Path:
    """The newest ``last*.ckpt`` in the checkpoint folders a config's callbacks name."""
    callbacks = cfg.get("trainer", {}).get("callbacks") or []
    folders = [Path(c["init_args"]["dirpath"]) for c in callbacks
               if str(c.get("class_path", "")).endswith("ModelCheckpoint")
               and c.get("init_args", {}).get("dirpath")]
    found = [p for f in folders for p in f.glob("last*.ckpt")]
    if not found:
        raise FileNotFoundError(f"--ckpt_path last: no last*.ckpt in "
                                f"{[str(f) for f in folders] or 'any configured checkpoint folder'}"
                                "; start a new run without --ckpt_path")
    return max(found, key=lambda p: p.stat().st_mtime)
