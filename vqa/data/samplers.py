"""Samplers that shard by process themselves: image-grouped training batches and evaluation
shards without padding.

Both subclass ``DistributedSampler``, so Lightning sees a loader that is already distributed and
leaves it in place (it would otherwise wrap the sampler in one of its own, which cannot group
by image, and pads evaluation shards with repeated samples that metrics would count twice).
With ``num_replicas == 1`` they are ordinary samplers.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence

import torch
from torch.utils.data import DistributedSampler


class ImageGroupedSampler(DistributedSampler):
    """Yields batches (lists of question indices) of about ``batch_size`` questions made of whole
    images' question groups, in a fresh random image order each epoch, so image-side work runs
    once per image per batch. Use it as a loader's ``sampler`` with ``batch_size=None``.

    Every process draws the same epoch plan (seed + epoch) and takes every ``num_replicas``-th
    batch from ``rank`` on; the plan is padded by repeating it from its start to a multiple of
    ``num_replicas`` so that all processes step equally often (as ``DistributedSampler`` pads).

    Args:
        image_ids: image id of every question in the dataset (or any group key: each question's
            own index gives plain shuffled batches of ``batch_size`` questions).
        batch_size: questions per batch (a batch ends at the first image that reaches it).
        shuffle: shuffle images each epoch (``False``: dataset order).
        seed: base seed; epoch ``e`` uses ``seed + e`` (``set_epoch``).
        num_replicas, rank: processes and this process's rank.
    """

    def __init__(self, image_ids: Sequence[int], batch_size: int, shuffle: bool = True,
                 seed: int = 0, num_replicas: int = 1, rank: int = 0) -> None:
        super().__init__(image_ids, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed)
        groups: dict[int, list[int]] = {}
        for i, iid in enumerate(image_ids):
            groups.setdefault(iid, []).append(i)
        self.groups = list(groups.values())
        self.batch_size = batch_size
        self._resume_at: tuple[int, int] | None = None  # (epoch, batches already trained)
        self.taken = 0  # batches of this epoch trained so far (the data module counts them)

    def plan(self) -> list[list[int]]:
        """This epoch's batches for every process, before sharding."""
        order = list(range(len(self.groups)))
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(len(order), generator=g).tolist()
        batches, batch = [], []
        for k in order:
            batch += self.groups[k]
            if len(batch) >= self.batch_size:
                batches.append(batch)
                batch = []
        return batches + ([batch] if batch else [])

    def _shard(self) -> list[list[int]]:
        batches = self.plan()
        total = math.ceil(len(batches) / self.num_replicas) * self.num_replicas
        batches = (batches * math.ceil(total / max(len(batches), 1)))[:total]  # cyclic padding
        return batches[self.rank::self.num_replicas]

    def resume(self, epoch: int, batches_done: int) -> None:
        """Make the next pass ``epoch``'s, starting after its first ``batches_done`` batches
        (unless the trainer moves on to another epoch first: that one starts at its beginning)."""
        self.set_epoch(epoch)
        self._resume_at, self.taken = (epoch, batches_done), batches_done

    def position(self, batches: int | None = None) -> tuple[int, int]:
        """(epoch, batches trained of it) to resume from; a finished epoch (all its batches, or
        the ``batches`` the trainer takes of it) resumes at the next."""
        if self.taken >= min(len(self), batches if batches is not None else len(self)):
            return self.epoch + 1, 0
        return self.epoch, self.taken

    def __iter__(self) -> Iterator[list[int]]:
        resume, self._resume_at = self._resume_at, None
        start = resume[1] if resume is not None and resume[0] == self.epoch else 0
        self.taken = start
        return iter(self._shard()[start:])

    def __len__(self) -> int:
        return len(self._shard())


class ShardSampler(DistributedSampler):
    """Indices ``rank, rank + num_replicas, ...`` in order, without padding: every question is
    evaluated exactly once across processes (shards differ in length by at most one)."""

    def __init__(self, size: int, num_replicas: int = 1, rank: int = 0) -> None:
        if size < num_replicas:  # a process without batches would wait forever at epoch end
            raise ValueError(f"{size} questions cannot be split over {num_replicas} processes; "
                             "evaluate on fewer devices")
        super().__init__(range(size), num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(self.dataset[self.rank::self.num_replicas])

    def __len__(self) -> int:
        return len(self.dataset[self.rank::self.num_replicas])
