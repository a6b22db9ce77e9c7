"""``WandbLogger``: Lightning's W&B logger without the start-up warnings a user cannot act on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger


class WandbLogger(LightningWandbLogger):
    """Lightning's ``WandbLogger``, with two differences at start-up:

    * it does not pass ``anonymous`` to ``wandb.init`` unless given (wandb 0.31 warns that the
      setting has no effect whenever the argument is present, even as ``None``);
    * it creates its ``save_dir`` just before the W&B run starts, so W&B finds the git repository
      the run folder is in and records the commit (it warned "git root ... does not exist" for a
      folder not made yet). The folder is made no earlier: a start that fails on bad data
      leaves no run folder behind.
    """

    def __init__(self, *args: Any, anonymous: bool | None = None, **kwargs: Any) -> None:
        super().__init__(*args, anonymous=anonymous, **kwargs)
        if anonymous is None:
            self._wandb_init.pop("anonymous", None)

    @property
    def experiment(self) -> Any:
        if self._experiment is None and self.save_dir:
            Path(self.save_dir).mkdir(parents=True, exist_ok=True)
        return super().experiment
