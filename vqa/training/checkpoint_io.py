"""``AtomicCheckpointIO``: checkpoints are written to a temporary file beside their target, synced,
then renamed over it, so a run killed while saving leaves the previous checkpoint whole.

(Lightning's own writer stages the file in the system temporary folder and moves it; where that
folder is another file system the move is a copy, which a kill can leave half-written.)
"""

from __future__ import annotations

from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

from vqa._io import atomic_open


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose ``save_checkpoint`` is atomic (``vqa._io.atomic_open``) for
    local paths; remote ones (``s3://``) go through Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):  # remote storage: Lightning's
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_open(path, "wb") as f:
            writer = _Writer(f)
            try:
                torch.save(checkpoint, writer)
            except RuntimeError:  # torch's zip writer hides the OS error ("unexpected pos")
                if writer.error is None:
                    raise
                raise writer.error from None


class _Writer:
    """A file's ``write``, keeping the ``OSError`` (no space left...) it raised."""

    def __init__(self, file: Any) -> None:
        self.file, self.error = file, None

    def write(self, data: Any) -> int:
        try:
            return self.file.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.file.flush()
