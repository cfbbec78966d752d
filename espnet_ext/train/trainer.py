"""ESPnet's Trainer, extended without copying it.

ESPnet's ``Trainer.train_one_epoch`` pulls a batch from the iterator, runs forward and
backward, and steps the optimizer when ``iiter % accum_grad == 0``. This subclass keeps that
loop and hooks in at the one place it hands over control, the iterator: a batch is handed
over only after the previous iteration (its backward and, at an accumulation boundary, its
optimizer step) has finished. Hooks (:class:`IterationHook`) see each hand-over:

* :class:`NoSyncHook` (``--accum_no_sync true``): DDP all-reduces gradients only on the last
  micro-batch of each accumulation window instead of on every one (what ``DDP.no_sync()``
  does, by setting ``require_backward_grad_sync`` before the forward). The summed gradient
  is the same: the local buffers keep accumulating and the final all-reduce sums them.
"""

import argparse
import dataclasses
import logging
from typing import Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from espnet2.train.trainer import Trainer as _StockTrainer
from espnet2.train.trainer import TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.types import int_or_none, str2bool


@dataclasses.dataclass
class ExtTrainerOptions(TrainerOptions):
    accum_no_sync: bool = False
    global_batch_utts: Optional[int] = None
    accept_global_batch: bool = False


class IterationHook:
    """Called around the hand-over of each micro-batch to ESPnet's training loop."""

    def before_batch(self, iiter: int) -> None:
        """Batch ``iiter`` (1-based) is about to be handed over; ``iiter - 1`` is finished."""

    def after_epoch(self, iiter: int) -> None:
        """The iterator is exhausted after ``iiter`` batches (all of them finished)."""


class NoSyncHook(IterationHook):
    def __init__(self, model: torch.nn.Module, accum_grad: int):
        self.model = model
        self.accum_grad = accum_grad

    def before_batch(self, iiter: int) -> None:
        # Sync only on the micro-batch after which ESPnet steps the optimizer.
        self.model.require_backward_grad_sync = iiter % self.accum_grad == 0

    def after_epoch(self, iiter: int) -> None:
        self.model.require_backward_grad_sync = True


def _hooked(iterator: Iterable, hooks: Sequence[IterationHook]) -> Iterator[Tuple]:
    iiter = 0
    for item in iterator:
        iiter += 1
        for h in hooks:
            h.before_batch(iiter)
        yield item
    for h in hooks:
        h.after_epoch(iiter)


class _HookedIterator:
    """Keeps ``len()`` of the wrapped iterator (ESPnet uses it for its log interval)."""

    def __init__(self, iterator: Iterable, hooks: Sequence[IterationHook]):
        self._iterator = iterator
        self._hooks = hooks

    def __iter__(self):
        return _hooked(self._iterator, self._hooks)

    def __len__(self):
        return len(self._iterator)


class Trainer(_StockTrainer):
    @classmethod
    def build_options(cls, args: argparse.Namespace) -> ExtTrainerOptions:
        return build_dataclass(ExtTrainerOptions, args)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        group = parser.add_argument_group("espnet_ext trainer")
        group.add_argument(
            "--accum_no_sync",
            type=str2bool,
            default=False,
            help="With DDP and accum_grad > 1, all-reduce gradients only on the last "
            "micro-batch of each accumulation window (same result, 1/accum_grad of the traffic)",
        )
        group.add_argument(
            "--global_batch_utts",
            type=int_or_none,
            default=None,
            help="The global batch (utterances per optimizer update, all ranks) this config "
            "intends; the launcher stops when ranks x batch x accum_grad would differ",
        )
        group.add_argument(
            "--accept_global_batch",
            type=str2bool,
            default=False,
            help="Launch even when the launch geometry changes --global_batch_utts",
        )

    @classmethod
    def build_hooks(cls, model: torch.nn.Module, options: ExtTrainerOptions, distributed: bool) -> List[IterationHook]:
        hooks: List[IterationHook] = []
        if options.accum_no_sync and distributed and options.accum_grad > 1:
            if not hasattr(model, "require_backward_grad_sync"):
                raise RuntimeError("--accum_no_sync needs a DistributedDataParallel model")
            hooks.append(NoSyncHook(model, options.accum_grad))
        return hooks

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        hooks = cls.build_hooks(model, options, distributed_option.distributed)
        if hooks:
            logging.debug(f"iteration hooks: {[type(h).__name__ for h in hooks]}")
            iterator = _HookedIterator(iterator, hooks)
        return super().train_one_epoch(
            model=model,
            iterator=iterator,
            optimizers=optimizers,
            schedulers=schedulers,
            scaler=scaler,
            reporter=reporter,
            summary_writer=summary_writer,
            options=options,
            distributed_option=distributed_option,
        )
