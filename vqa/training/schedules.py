"""Learning-rate schedules the papers' presets need beyond ``torch.optim.lr_scheduler``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR


class WarmupMultiStepLR(LambdaLR):
    """Epoch ``e`` (from 0) trains at ``lr * min(1, (e + 1) / (warmup + 1)) * gamma^k``, ``k`` the
    milestones passed. MCAN (Yu et al. 2019, Sec. 5.1): ``warmup=3`` (1/4, 2/4, 3/4 of the base
    rate), milestones 10 and 12, gamma 0.2. BAN (ban-vqa): the same warm-up from 0.5e-3 to 2e-3,
    then gamma 0.25 every 2 epochs from epoch 10. Stepped once an epoch.

    Args:
        optimizer: the optimiser (its ``lr`` is the base rate).
        warmup: epochs below the base rate.
        milestones: epochs at which the rate is multiplied by ``gamma``.
        gamma: the decay factor.
    """

    def __init__(self, optimizer: torch.optim.Optimizer, warmup: int = 3,
                 milestones: Sequence[int] = (10, 12), gamma: float = 0.2) -> None:
        self.warmup, self.milestones, self.gamma = warmup, sorted(milestones), gamma
        super().__init__(optimizer, self.factor)

    def factor(self, epoch: int) -> float:
        decays = sum(epoch >= m for m in self.milestones)
        return min(1.0, (epoch + 1) / (self.warmup + 1)) * self.gamma ** decays
