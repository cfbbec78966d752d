"""What the trainer wraps around ESPnet's training loop: iteration hooks, no-sync, seeking.

ESPnet's ``Trainer.train_one_epoch`` pulls a batch from the iterator, runs forward and
backward, and steps the optimizer when ``iiter % accum_grad == 0``. The trainer keeps that
loop and hooks in at the one place it hands over control, the iterator: a batch is handed
over only after the previous iteration (its backward and, at an accumulation boundary, its
optimizer step) has finished. :class:`HookedIterator` calls each :class:`IterationHook`
around every hand-over:

* :class:`NoSyncHook` (``--accum_no_sync true``): DDP all-reduces gradients only on the last
  micro-batch of each accumulation window instead of on every one (what ``DDP.no_sync()``
  does, by setting ``require_backward_grad_sync`` before the forward). The summed gradient
  is the same: the local buffers keep accumulating and the final all-reduce sums them.
* the resilience hook (:mod:`espnet_ext.train.resume`): step checkpoints, skipped-update
  counting and the progress watchdog.

**Seeking** (resume mid-epoch): :func:`open_from` starts the epoch's iterator after the
micro-batches already consumed; the epoch's batch order is a function of the seed and the
epoch, so the rest of the epoch is the same as without the interruption.

**bf16 on CPU** (``--use_amp true --ngpu 0``): ESPnet autocasts only on CUDA, so with no GPU
``use_amp`` would silently train in float32. :class:`CpuAutocast` runs the training forward
under ``torch.autocast("cpu", dtype=torch.bfloat16)``; backward follows the forward's dtypes,
the optimizer and the parameters stay float32, validation stays float32 as decoding does.
It pays off on CPUs with native bf16 (AVX512-BF16, AMX).
"""

import logging
import time
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import torch

from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train.watchdog import ProgressWatchdog


class IterationHook:
    """Called around the hand-over of each micro-batch to ESPnet's training loop."""

    def before_batch(self, iiter: int) -> None:
        """Batch ``iiter`` (1-based) is about to be handed over; ``iiter - 1`` is finished."""

    def after_batch(self, iiter: int) -> None:
        """Batch ``iiter`` is finished (with its optimizer step, if any); the next batch
        has not been fetched yet."""

    def after_epoch(self, iiter: int) -> None:
        """The iterator is exhausted after ``iiter`` batches (all of them finished)."""


class NoSyncHook(IterationHook):
    """Lets DDP all-reduce only on the micro-batch after which ESPnet steps the optimizer.

    Args:
        model: the ``DistributedDataParallel`` model.
        accum_grad: micro-batches per optimizer update.
    """

    def __init__(self, model: torch.nn.Module, accum_grad: int):
        self.model = model
        self.accum_grad = accum_grad

    def before_batch(self, iiter: int) -> None:
        self.model.require_backward_grad_sync = iiter % self.accum_grad == 0

    def after_epoch(self, iiter: int) -> None:
        self.model.require_backward_grad_sync = True


def build_hooks(
    model: torch.nn.Module, *, accum_no_sync: bool, accum_grad: int, distributed: bool
) -> List[IterationHook]:
    """The hooks the options ask for (the resilience hook is added by the trainer)."""
    hooks: List[IterationHook] = []
    if accum_no_sync and distributed and accum_grad > 1:
        if not hasattr(model, "require_backward_grad_sync"):
            raise RuntimeError("--accum_no_sync needs a DistributedDataParallel model")
        hooks.append(NoSyncHook(model, accum_grad))
    return hooks


class HookedIterator:
    """The epoch's iterable with hooks around each hand-over; keeps ``len()`` (ESPnet uses
    it for its log interval).

    Args:
        iterator: the epoch's iterable (ESPnet's DataLoader or similar).
        hooks: called around each hand-over.
        start: micro-batches of this epoch already consumed before (resume).
        on_start: called once the underlying iterator exists, before the first fetch.
        on_first: called after the first fetch, before the hooks see that batch.
    """

    def __init__(
        self,
        iterator: Iterable,
        hooks: Sequence[IterationHook],
        *,
        start: int = 0,
        on_start: Optional[Callable[[], None]] = None,
        on_first: Optional[Callable[[], None]] = None,
    ):
        self._iterator = iterator
        self._hooks = hooks
        self._start = start
        self._on_start = on_start
        self._on_first = on_first

    def __iter__(self):
        iterator = open_from(self._iterator, self._start)
        if self._on_start is not None:
            self._on_start()
        iiter = self._start
        for item in iterator:
            iiter += 1
            if iiter == self._start + 1 and self._on_first is not None:
                self._on_first()
            for h in self._hooks:
                h.before_batch(iiter)
            yield item
            for h in self._hooks:
                h.after_batch(iiter)
        for h in self._hooks:
            h.after_epoch(iiter)

    def __len__(self):
        return max(len(self._iterator) - self._start, 0)


def open_from(iterable: Iterable, start: int) -> Iterator:
    """An iterator over ``iterable`` that starts after its first ``start`` items.

    In order of preference: the iterable's own ``set_start_batch(start)`` (an iterator
    that can seek); a ``DataLoader`` over a list of batches, rebuilt without the first
    ``start`` (nothing is loaded); otherwise the first ``start`` items are read and
    dropped. The data order is the same in every case; with ``num_workers > 0`` a random
    transform inside the workers is reproduced only by the last way.
    """
    if start == 0:
        return iter(iterable)
    if hasattr(iterable, "set_start_batch"):
        iterable.set_start_batch(start)
        return iter(iterable)
    if type(iterable) is torch.utils.data.DataLoader and isinstance(iterable.batch_sampler, Sequence):
        return iter(_dataloader_from(iterable, start))
    tic = time.perf_counter()
    iterator = iter(iterable)
    for done in range(start):
        try:
            next(iterator)
        except StopIteration:
            raise ckpt.CheckpointError(
                f"the checkpoint is {start} micro-batches into the epoch, but the epoch has "
                f"only {done}: the training data or batching changed since it was saved"
            ) from None
    logging.info(f"read and dropped {start} micro-batches in {time.perf_counter() - tic:.1f} s")
    return iterator


def _dataloader_from(loader: torch.utils.data.DataLoader, start: int) -> torch.utils.data.DataLoader:
    """The same DataLoader without its first ``start`` batches (no data is read)."""
    batches = list(loader.batch_sampler)
    if start > len(batches):
        raise ckpt.CheckpointError(
            f"the checkpoint is {start} micro-batches into the epoch, but the epoch has only "
            f"{len(batches)}: the training data or batching changed since it was saved"
        )
    kwargs = dict(
        dataset=loader.dataset,
        batch_sampler=batches[start:],
        num_workers=loader.num_workers,
        collate_fn=loader.collate_fn,
        pin_memory=loader.pin_memory,
        timeout=loader.timeout,
        worker_init_fn=loader.worker_init_fn,
        multiprocessing_context=loader.multiprocessing_context,
        generator=loader.generator,
        persistent_workers=loader.persistent_workers,
        pin_memory_device=loader.pin_memory_device,
    )
    if loader.num_workers > 0:
        kwargs["prefetch_factor"] = loader.prefetch_factor
    if hasattr(loader, "in_order"):
        kwargs["in_order"] = loader.in_order
    return torch.utils.data.DataLoader(**kwargs)


class PetIterable:
    """Pets the watchdog at every item (validation)."""

    def __init__(self, iterable: Iterable, watchdog: ProgressWatchdog):
        self._iterable = iterable
        self._watchdog = watchdog

    def __iter__(self):
        for item in self._iterable:
            self._watchdog.pet()
            yield item
        self._watchdog.pet()

    def __len__(self):
        return len(self._iterable)


class CpuAutocast(torch.nn.Module):
    """Wraps the (possibly DDP) model for ESPnet's training loop: forward under CPU bf16
    autocast. Parameters, ``train()`` and ``module`` are the wrapped model's."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.module = model

    def forward(self, **batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(**batch)
