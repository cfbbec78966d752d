"""Linear warmup then cosine decay to a floor (ESPnet scheduler ``warmupcosinelr``).

Linear warmup: Goyal et al. 2017, "Accurate, Large Minibatch SGD", sec. 2.2.
Cosine decay to ``min_lr``: Loshchilov & Hutter 2017, "SGDR", eq. 5 (one cycle,
no restart).
"""

import math
from typing import List

import torch
from espnet2.schedulers.abs_scheduler import AbsBatchStepScheduler
from torch.optim.lr_scheduler import LRScheduler
from typeguard import typechecked


class WarmupCosineLR(LRScheduler, AbsBatchStepScheduler):
    """Step-wise learning rate, stepped once per optimizer update.

    With s the number of optimizer updates done, W = warmup_steps,
    S = total_steps and peak = each param group's initial ``lr``::

        lr(s) = peak * s / W                                         s <  W
        lr(s) = min_lr + (peak - min_lr) * (1 + cos(pi * (s - W) / (S - W))) / 2
                                                                     W <= s <= S
        lr(s) = min_lr                                               s >  S

    lr(0) = 0 (warmup starts from zero), lr(W) = peak, lr(S) = min_lr. ESPnet's
    trainer steps batch schedulers after each optimizer update, i.e. once per
    ``accum_grad`` mini-batches, so S counts updates, not mini-batches.
    """

    @typechecked
    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        warmup_steps: int = 10000,
        total_steps: int = 100000,
        min_lr: float = 1e-6,
        last_epoch: int = -1,
    ):
        if warmup_steps < 0:
            raise ValueError(f"warmupcosinelr: warmup_steps must be >= 0, got {warmup_steps}")
        if total_steps <= warmup_steps:
            raise ValueError(
                f"warmupcosinelr: total_steps ({total_steps}) must exceed warmup_steps ({warmup_steps})"
            )
        peaks = [group.get("initial_lr", group["lr"]) for group in optimizer.param_groups]
        if min_lr < 0 or any(min_lr > peak for peak in peaks):
            raise ValueError(f"warmupcosinelr: min_lr ({min_lr}) must be in [0, optimizer lr {peaks}]")
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps
        self.min_lr = float(min_lr)
        super().__init__(optimizer, last_epoch)

    def __repr__(self) -> str:
        return (
            f"{self.__class__.__name__}(warmup_steps={self.warmup_steps}, "
            f"total_steps={self.total_steps}, min_lr={self.min_lr})"
        )

    def _lr_at(self, peak: float, step: int) -> float:
        """lr(step) of a param group whose initial lr is ``peak`` (class docstring)."""
        if step < self.warmup_steps:
            return peak * step / self.warmup_steps
        if step >= self.total_steps:
            return self.min_lr
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        return self.min_lr + (peak - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))

    def get_lr(self) -> List[float]:
        return [self._lr_at(peak, self.last_epoch) for peak in self.base_lrs]

    # LRScheduler.step(epoch) jumps to a step through this hook: the same closed form.
    _get_closed_form_lr = get_lr

    def load_state_dict(self, state_dict) -> None:
        """Restore the step count and put its lr into the optimizer, so resume
        does not depend on loading the optimizer state first."""
        super().load_state_dict(state_dict)
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr
