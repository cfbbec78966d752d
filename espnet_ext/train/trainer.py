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
* the resilience hook (always on):

  - **step checkpoints** every ``--save_every_steps`` optimizer updates and/or every
    ``--save_every_minutes`` minutes (default 5), of the state at an update boundary:
    model, optimizers, schedulers, grad scaler, the reporter (finished epochs and this
    epoch's statistics so far), the position in the epoch (micro-batches consumed) and
    every rank's RNG states, both before and after the next batch is fetched (the file is
    written right after that fetch, or at the end of the epoch). Written atomically by
    rank 0 (:mod:`espnet_ext.train.checkpoint`); the last ``--keep_step_checkpoints``
    are kept. A crash loses at most the work since the newest one.
  - **non-finite updates**: ESPnet skips an update whose gradient norm is NaN/inf (which a
    NaN/inf loss on any rank causes). Skipped updates are counted over the whole run (the
    count survives resumes) and training stops with an error once there are more than
    ``--max_nonfinite_steps``. The decision is all-reduced, so every rank stops together.
  - a **progress watchdog** (``--watchdog_minutes``) ends a rank that waits too long
    (e.g. for a dead peer) with a non-zero exit code and a message naming the rank.

**Resume** (``--resume true``, as the recipe always passes): before ESPnet's epoch loop,
rank 0 picks the newest valid state -- a step checkpoint if it is later than the epochs
finished in ESPnet's ``checkpoint.pth``, skipping torn or corrupt ones with a warning --
and every rank loads it. ESPnet then starts the loop at that checkpoint's epoch, and the
first ``train_one_epoch`` skips the micro-batches already consumed (the epoch's batch
order is a function of the seed and the epoch; see :func:`open_from`), restores the RNG
states around the first fetch as they were saved, and continues as if it had not been
interrupted: same data order, same dropout and masking draws, same parameters.

**bf16 on CPU** (``--use_amp true --ngpu 0``): ESPnet autocasts only on CUDA, so with no GPU
``use_amp`` would silently train in float32. Here the training forward then runs under
``torch.autocast("cpu", dtype=torch.bfloat16)`` (:class:`_CpuAutocast`); backward follows
the forward's dtypes, the optimizer and the parameters stay float32, validation stays
float32 as decoding does. It pays off on CPUs with native bf16 (AVX512-BF16, AMX).
"""

import argparse
import dataclasses
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import torch
from espnet2.train.trainer import Trainer as _StockTrainer
from espnet2.train.trainer import TrainerOptions
from espnet2.utils.build_dataclass import build_dataclass
from espnet2.utils.types import int_or_none, str2bool

from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train.watchdog import ProgressWatchdog


@dataclasses.dataclass
class ExtTrainerOptions(TrainerOptions):
    accum_no_sync: bool = False
    save_every_steps: Optional[int] = None
    save_every_minutes: Optional[float] = 5.0
    keep_step_checkpoints: int = 3
    max_nonfinite_steps: Optional[int] = 100
    watchdog_minutes: Optional[float] = 10.0


def check_options(options) -> None:
    """Reject bad resilience settings (also those from a YAML config, which argparse does
    not type-check) before training starts."""

    def bad(name: str, value: Any, rule: str) -> None:
        raise ValueError(f"--{name} {value!r}: {rule}")

    def number(name: str, value: Any, kind: type) -> bool:
        if value is None:
            return False
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            bad(name, value, f"must be {'a number' if kind is float else 'an integer'} or null")
        return True

    if number("save_every_steps", options.save_every_steps, int) and options.save_every_steps < 1:
        bad("save_every_steps", options.save_every_steps, "must be >= 1 (or null: off)")
    if number("save_every_minutes", options.save_every_minutes, float) and not options.save_every_minutes > 0:
        bad("save_every_minutes", options.save_every_minutes, "must be > 0 (or null: off)")
    if not number("keep_step_checkpoints", options.keep_step_checkpoints, int) or options.keep_step_checkpoints < 1:
        bad("keep_step_checkpoints", options.keep_step_checkpoints, "must be an integer >= 1")
    if number("max_nonfinite_steps", options.max_nonfinite_steps, int) and options.max_nonfinite_steps < 0:
        bad("max_nonfinite_steps", options.max_nonfinite_steps, "must be >= 0 (or null: no limit)")
    if number("watchdog_minutes", options.watchdog_minutes, float) and not options.watchdog_minutes > 0:
        bad("watchdog_minutes", options.watchdog_minutes, "must be > 0 (or null: off)")
    saving = options.save_every_steps is not None or options.save_every_minutes is not None
    if saving and getattr(options, "sharded_ddp", False):
        raise ValueError("step checkpoints do not support --sharded_ddp (sharded optimizer states)")


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
    def __init__(self, model: torch.nn.Module, accum_grad: int):
        self.model = model
        self.accum_grad = accum_grad

    def before_batch(self, iiter: int) -> None:
        # Sync only on the micro-batch after which ESPnet steps the optimizer.
        self.model.require_backward_grad_sync = iiter % self.accum_grad == 0

    def after_epoch(self, iiter: int) -> None:
        self.model.require_backward_grad_sync = True


def _hooked(
    open_iterator: Callable[[], Iterator],
    hooks: Sequence[IterationHook],
    start: int,
    on_start: Optional[Callable[[], None]],
    on_first: Optional[Callable[[], None]],
) -> Iterator[Tuple]:
    iterator = open_iterator()
    if on_start is not None:
        on_start()
    iiter = start
    for item in iterator:
        iiter += 1
        if iiter == start + 1 and on_first is not None:
            on_first()
        for h in hooks:
            h.before_batch(iiter)
        yield item
        for h in hooks:
            h.after_batch(iiter)
    for h in hooks:
        h.after_epoch(iiter)


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


class _HookedIterator:
    """Keeps ``len()`` of the wrapped iterator (ESPnet uses it for its log interval).

    Args:
        iterator: the epoch's iterable (ESPnet's DataLoader or similar).
        hooks: called around each hand-over.
        start: micro-batches of this epoch already consumed before (resume).
        on_start: called once the underlying iterator exists, before the first fetch.
        on_first: called after the first fetch, before the hooks see that batch.
    """

    def __init__(self, iterator: Iterable, hooks: Sequence[IterationHook], start: int = 0,
                 on_start: Optional[Callable[[], None]] = None,
                 on_first: Optional[Callable[[], None]] = None):
        self._iterator = iterator
        self._hooks = hooks
        self._start = start
        self._on_start = on_start
        self._on_first = on_first

    def __iter__(self):
        return _hooked(lambda: open_from(self._iterator, self._start), self._hooks, self._start,
                       self._on_start, self._on_first)

    def __len__(self):
        return max(len(self._iterator) - self._start, 0)


class _PetIterable:
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


class _CpuAutocast(torch.nn.Module):
    """Wraps the (possibly DDP) model for ESPnet's training loop: forward under CPU bf16
    autocast. Parameters, ``train()`` and ``module`` are the wrapped model's."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.module = model

    def forward(self, **batch):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return self.module(**batch)


class NonFiniteLimitError(RuntimeError):
    """Too many optimizer updates were skipped for a NaN/inf loss or gradient."""


class _RunContext:
    """One training run's resume state, checkpoint cadence, update counting and watchdog.

    Args:
        model: the unwrapped model (what ESPnet's own checkpoint stores).
        optimizers, schedulers: as given to ``Trainer.run``.
        options: ``ExtTrainerOptions``.
        distributed_option: ESPnet's ``DistributedOption``.
    """

    def __init__(self, model, optimizers, schedulers, options, distributed_option):
        self.model = model
        self.optimizers = list(optimizers)
        self.schedulers = list(schedulers)
        self.options = options
        self.output_dir = Path(options.output_dir)
        self.step_dir = self.output_dir / ckpt.STEP_DIR
        self.distributed = bool(distributed_option.distributed)
        self.rank = distributed_option.dist_rank if self.distributed else 0
        self.world_size = distributed_option.dist_world_size if self.distributed else 1
        self.label = f"rank {self.rank}/{self.world_size}" if self.distributed else "trainer"
        self.device = "cuda" if options.ngpu > 0 else "cpu"
        self.pending: Optional[Dict[str, Any]] = None
        self.finished_reporter: Optional[Dict[str, Any]] = None
        self.nonfinite_total = 0
        self.epoch_valid_updates = 0
        self.windows_since_save = 0
        self.last_save = time.monotonic()
        self.newest: Optional[str] = None
        self._stepped = False
        self._due: Optional[Tuple[int, int, Dict[str, Any]]] = None
        self._handles = [o.register_step_post_hook(self._on_step) for o in self.optimizers]
        self.watchdog = (
            ProgressWatchdog(options.watchdog_minutes * 60, self.label)
            if options.watchdog_minutes is not None else None
        )

    def _on_step(self, optimizer, args, kwargs) -> None:
        self._stepped = True

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
        if self.watchdog is not None:
            self.watchdog.stop()

    # -- collectives (no-ops on one process) ---------------------------------------------

    def _broadcast(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def _gather(self, obj: Any) -> Optional[List[Any]]:
        if not self.distributed:
            return [obj]
        out = [None] * self.world_size if self.rank == 0 else None
        torch.distributed.gather_object(obj, out, dst=0)
        return out

    def _max(self, *flags: int) -> List[int]:
        if not self.distributed:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t.tolist()

    # -- resume --------------------------------------------------------------------------

    def prepare(self, resume: bool) -> None:
        """Choose (rank 0) and load (every rank) the state to resume from."""
        decision: Dict[str, Any] = {"path": None, "error": None}
        if self.rank == 0:
            try:
                decision["path"] = self._choose(resume)
            except Exception as e:  # broadcast it: the other ranks must not wait forever
                decision["error"] = str(e) if isinstance(e, ckpt.CheckpointError) else f"{type(e).__name__}: {e}"
        decision = self._broadcast(decision)
        if decision["error"] is not None:
            raise ckpt.CheckpointError(f"choosing the state to resume from: {decision['error']}")
        if decision["path"] is None:
            return
        path = Path(decision["path"])
        state = ckpt.load_step_checkpoint(ckpt.StepCheckpoint.from_path(path))
        self.model.load_state_dict(state["model"])
        for optimizer, s in zip(self.optimizers, state["optimizers"], strict=True):
            optimizer.load_state_dict(s)
        for scheduler, s in zip(self.schedulers, state["schedulers"], strict=True):
            if scheduler is not None:
                scheduler.load_state_dict(s)
        if state["accum_grad"] != self.options.accum_grad:
            logging.warning(
                f"{path.name} was saved with accum_grad {state['accum_grad']}, now "
                f"{self.options.accum_grad}: update boundaries in the resumed epoch shift"
            )
        if state["world_size"] != self.world_size:
            logging.warning(
                f"{path.name} was saved by {state['world_size']} ranks, now {self.world_size}: "
                "per-rank RNG states cannot all be matched"
            )
        self.nonfinite_total = int(state["nonfinite_total"])
        self.finished_reporter = state["reporter"]
        self.pending = state
        self.newest = str(path)
        logging.info(
            f"resuming from step checkpoint {path} (epoch {state['epoch']}, "
            f"{state['position']} micro-batches done)"
        )

    def _choose(self, resume: bool) -> Optional[str]:
        for leftover in ckpt.remove_temporaries(self.step_dir):
            logging.warning(f"removed {leftover} (an interrupted checkpoint write)")
        if not resume:
            removed = ckpt.remove_newer_than(self.step_dir, None)
            if removed:
                logging.warning(
                    f"--resume false: removed {len(removed)} step checkpoints of an earlier run "
                    f"from {self.step_dir}"
                )
            return None
        choice = ckpt.choose_resume_point(self.output_dir)
        if choice.checkpoint is not None:
            keep_until = choice.checkpoint.key
        elif choice.epoch_checkpoint_epoch is not None:
            keep_until = (choice.epoch_checkpoint_epoch, sys.maxsize)
        else:
            keep_until = None
        for dropped in ckpt.remove_newer_than(self.step_dir, keep_until):
            logging.warning(f"removed unusable step checkpoint {dropped.path}")
        if choice.checkpoint is None:
            return None
        if choice.checkpoint.epoch > 1 and not (self.output_dir / "checkpoint.pth").exists():
            raise ckpt.CheckpointError(
                f"cannot resume from {choice.checkpoint.path} (epoch {choice.checkpoint.epoch}): "
                f"{self.output_dir / 'checkpoint.pth'} is missing, and ESPnet's epoch loop only "
                "resumes past epoch 1 when it exists"
            )
        return str(choice.checkpoint.path)

    def restore_reporter(self, reporter) -> bool:
        """Called from ``Trainer.resume``: load the pending checkpoint's reporter (the
        epochs finished before it). False if there is nothing pending."""
        if self.pending is None:
            return False
        reporter.load_state_dict(self.pending["reporter"])
        return True

    @staticmethod
    def _restore_scaler(scaler, saved) -> None:
        if scaler is not None and saved is not None:
            scaler.load_state_dict(saved)
        elif (scaler is None) != (saved is None):
            logging.warning("the grad scaler (use_amp) differs from the checkpoint's; not restored")

    def begin_epoch(self, epoch: int, sub_reporter, scaler) -> Tuple[int, Optional[Callable], Optional[Callable]]:
        """Apply the pending checkpoint to this epoch: returns (micro-batches to skip, and
        two functions restoring this rank's RNG states as they were before and after the
        next batch was fetched)."""
        self.epoch_valid_updates = 0
        self._stepped = False
        self._due = None
        if self.pending is None:
            return 0, None, None
        state, self.pending = self.pending, None
        if state["epoch"] != epoch:
            raise ckpt.CheckpointError(
                f"resumed into epoch {epoch}, but the step checkpoint is in epoch {state['epoch']}"
            )
        self._restore_scaler(scaler, state["scaler"])
        ckpt.load_sub_reporter_state(sub_reporter, state["sub_reporter"])
        self.epoch_valid_updates = int(state["epoch_valid_updates"])
        position = int(state["position"])
        if position % self.options.accum_grad:
            logging.warning(f"resume position {position} is not a multiple of accum_grad")
        rngs = state["rng"]
        if self.rank >= len(rngs):
            logging.warning(f"{self.label}: no saved RNG state for this rank; keeping the epoch seed")
            return position, None, None
        before, after = rngs[self.rank]["before_fetch"], rngs[self.rank]["after_fetch"]
        return (
            position,
            lambda: ckpt.restore_rng(before),
            (lambda: ckpt.restore_rng(after)) if after is not None else None,
        )

    # -- per-update bookkeeping -----------------------------------------------------------

    def on_update(self, epoch: int, position: int) -> None:
        """At each optimizer-update boundary (all ranks, same position), before the next
        batch is fetched: count a skipped update; decide whether to save here."""
        skipped = int(not self._stepped and not self.options.no_forward_run)
        self._stepped = False
        self.windows_since_save += 1
        opts = self.options
        due = opts.save_every_steps is not None and self.windows_since_save >= opts.save_every_steps
        if opts.save_every_minutes is not None and self.rank == 0:
            due = due or time.monotonic() - self.last_save >= 60 * opts.save_every_minutes
        skipped, due = self._max(skipped, int(due))
        if skipped:
            self.nonfinite_total += 1
            limit = opts.max_nonfinite_steps
            logging.warning(
                f"epoch {epoch}, micro-batch {position}: update skipped (NaN/inf loss or "
                f"gradient); {self.nonfinite_total} skipped in this run (limit {limit})"
            )
            if limit is not None and self.nonfinite_total > limit:
                raise NonFiniteLimitError(
                    f"{self.label}: training stopped: {self.nonfinite_total} optimizer updates "
                    f"were skipped for a NaN/inf loss or gradient, more than "
                    f"--max_nonfinite_steps {limit} (the last at epoch {epoch}, micro-batch "
                    f"{position}). Check the data and the learning rate; the newest step "
                    f"checkpoint is {self.newest or 'none yet'}."
                )
        else:
            self.epoch_valid_updates += 1
        if due:
            # The state to save is this one, but the file is written once the next batch
            # is fetched, with the RNG states from before and after that fetch: a resumed
            # run then matches whatever the iterator draws when it starts or loads.
            self._due = (epoch, position, ckpt.capture_rng())

    def save_if_due(self, sub_reporter, scaler, fetched: bool) -> None:
        """After the fetch that follows a due update boundary (``fetched``), or at the end
        of the epoch when there was none."""
        if self._due is None:
            return
        (epoch, position, before), self._due = self._due, None
        rng = {"before_fetch": before, "after_fetch": ckpt.capture_rng() if fetched else None}
        self.save(epoch, position, sub_reporter, scaler, rng)

    def _finished_reporter(self, epoch: int) -> Dict[str, Any]:
        """The main reporter's state at the start of ``epoch`` (its finished epochs)."""
        if epoch == 1:
            return {"epoch": 0, "stats": {}}
        if self.finished_reporter is None or self.finished_reporter["epoch"] != epoch - 1:
            epoch_ckpt = self.output_dir / "checkpoint.pth"
            try:
                self.finished_reporter = ckpt.epoch_checkpoint_reporter(epoch_ckpt)
            except Exception as e:
                logging.warning(f"cannot read the reporter from {epoch_ckpt}: {e}")
                self.finished_reporter = None
            if self.finished_reporter is None or self.finished_reporter["epoch"] != epoch - 1:
                logging.warning(
                    f"no record of epochs 1-{epoch - 1}: a resume from this epoch's step "
                    "checkpoints loses their statistics (not the model)"
                )
                self.finished_reporter = {"epoch": epoch - 1, "stats": {}}
        return self.finished_reporter

    def save(self, epoch: int, position: int, sub_reporter, scaler, rng: Dict[str, Any]) -> None:
        """Every rank: contribute RNG states; rank 0 writes; all agree on the outcome."""
        if self.watchdog is not None:
            self.watchdog.disarm()  # rank 0 writes; the others wait for it
        rngs = self._gather(rng)
        error = None
        if self.rank == 0:
            state = {
                "format": ckpt.FORMAT,
                "epoch": epoch,
                "position": position,
                "model": self.model.state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "schedulers": [s.state_dict() if s is not None else None for s in self.schedulers],
                "scaler": scaler.state_dict() if scaler is not None else None,
                "reporter": self._finished_reporter(epoch),
                "sub_reporter": ckpt.sub_reporter_state(sub_reporter),
                "rng": rngs,
                "nonfinite_total": self.nonfinite_total,
                "epoch_valid_updates": self.epoch_valid_updates,
                "accum_grad": self.options.accum_grad,
                "world_size": self.world_size,
            }
            tic = time.perf_counter()
            try:
                saved = ckpt.save_step_checkpoint(state, self.step_dir, epoch, position)
            except Exception as e:  # ENOSPC etc. (CheckpointWriteError) or a pickling error
                error = (f"{e}; the checkpoints written before are intact (newest step "
                         f"checkpoint: {self.newest or 'none yet'})")
                logging.error(error)
            else:
                size = saved.path.stat().st_size
                for old in ckpt.prune_step_checkpoints(self.step_dir, self.options.keep_step_checkpoints):
                    logging.debug(f"removed old step checkpoint {old.path.name}")
                logging.info(
                    f"step checkpoint {saved.path.name}: {size / 2**20:.1f} MiB in "
                    f"{time.perf_counter() - tic:.2f} s"
                )
                self.newest = str(saved.path)
        failed, = self._max(int(error is not None))
        if failed:
            raise ckpt.CheckpointWriteError(error or "rank 0 could not write a step checkpoint (see its log)")
        self.windows_since_save = 0
        self.last_save = time.monotonic()
        if self.watchdog is not None:
            self.watchdog.arm("training")


class _ResilienceHook(IterationHook):
    def __init__(self, context: _RunContext, epoch: int, accum_grad: int, sub_reporter, scaler):
        self.context = context
        self.epoch = epoch
        self.accum_grad = accum_grad
        self.sub_reporter = sub_reporter
        self.scaler = scaler

    def before_batch(self, iiter: int) -> None:
        if self.context.watchdog is not None:
            self.context.watchdog.pet()
        self.context.save_if_due(self.sub_reporter, self.scaler, fetched=True)

    def after_batch(self, iiter: int) -> None:
        if self.context.watchdog is not None:
            self.context.watchdog.pet()
        if iiter % self.accum_grad == 0:
            self.context.on_update(self.epoch, iiter)

    def after_epoch(self, iiter: int) -> None:
        self.context.save_if_due(self.sub_reporter, self.scaler, fetched=False)


def _positive_int_or_none(value: str) -> Optional[int]:
    number = int_or_none(value)
    if number is not None and number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or none, got {value}")
    return number


def _nonnegative_int_or_none(value: str) -> Optional[int]:
    number = int_or_none(value)
    if number is not None and number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or none, got {value}")
    return number


def _positive_float_or_none(value: str) -> Optional[float]:
    if value.strip().lower() in ("none", "null", "nil"):
        return None
    number = float(value)
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be > 0 or none, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


class Trainer(_StockTrainer):
    _context: Optional[_RunContext] = None

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> ExtTrainerOptions:
        options = build_dataclass(ExtTrainerOptions, args)
        check_options(options)
        return options

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
        group = parser.add_argument_group("espnet_ext crash safety")
        group.add_argument(
            "--save_every_steps",
            type=_positive_int_or_none,
            default=None,
            help="Write a step checkpoint every N optimizer updates (none: off)",
        )
        group.add_argument(
            "--save_every_minutes",
            type=_positive_float_or_none,
            default=5.0,
            help="Write a step checkpoint at the first update boundary M minutes after the "
            "previous one (none: off). Bounds the work a crash loses to about M minutes",
        )
        group.add_argument(
            "--keep_step_checkpoints",
            type=_positive_int,
            default=3,
            help="Step checkpoints kept in <output_dir>/step_checkpoints (newest first)",
        )
        group.add_argument(
            "--max_nonfinite_steps",
            type=_nonnegative_int_or_none,
            default=100,
            help="Stop with an error once more than this many optimizer updates in the run "
            "(counted across resumes) were skipped for a NaN/inf loss or gradient (none: no limit)",
        )
        group.add_argument(
            "--watchdog_minutes",
            type=_positive_float_or_none,
            default=10.0,
            help="Exit a rank (code 124, rank named in the log) when no micro-batch "
            "completes for this long during training or validation (none: off)",
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
    def run(cls, model, optimizers, schedulers, train_iter_factory, valid_iter_factory,
            plot_attention_iter_factory, trainer_options, distributed_option) -> None:
        context = _RunContext(model, optimizers, schedulers, trainer_options, distributed_option)
        if trainer_options.use_amp and trainer_options.ngpu == 0:
            logging.info("use_amp with --ngpu 0: the training forward runs under CPU bf16 autocast")
        try:
            context.prepare(bool(trainer_options.resume))
            cls._context = context
            super().run(
                model=model,
                optimizers=optimizers,
                schedulers=schedulers,
                train_iter_factory=train_iter_factory,
                valid_iter_factory=valid_iter_factory,
                plot_attention_iter_factory=plot_attention_iter_factory,
                trainer_options=trainer_options,
                distributed_option=distributed_option,
            )
        finally:
            cls._context = None
            context.close()

    @classmethod
    def resume(cls, checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True):
        """ESPnet calls this when ``checkpoint.pth`` exists. A newer step checkpoint (loaded
        by :meth:`run`) takes precedence: only its reporter is left to restore here (the grad
        scaler, the epoch's statistics and the RNG states follow in ``train_one_epoch``)."""
        context = cls._context
        if context is not None and context.restore_reporter(reporter):
            logging.info(f"{checkpoint} is older than the step checkpoint {context.newest}: not loaded")
            return
        _StockTrainer.resume(
            checkpoint=checkpoint, model=model, reporter=reporter, optimizers=optimizers,
            schedulers=schedulers, scaler=scaler, ngpu=ngpu, strict=strict,
        )

    @classmethod
    def train_one_epoch(cls, model, iterator, optimizers, schedulers, scaler, reporter,
                        summary_writer, options, distributed_option) -> bool:
        hooks = cls.build_hooks(model, options, distributed_option.distributed)
        if hooks:
            logging.debug(f"iteration hooks: {[type(h).__name__ for h in hooks]}")
        context = cls._context
        start, on_start, on_first, earlier_valid = 0, None, None, 0
        if context is not None:
            epoch = reporter.get_epoch()
            start, on_start, on_first = context.begin_epoch(epoch, reporter, scaler)
            earlier_valid = context.epoch_valid_updates
            hooks.append(_ResilienceHook(context, epoch, options.accum_grad, reporter, scaler))
            if context.watchdog is not None:
                context.watchdog.arm("training")
        if hooks:
            iterator = _HookedIterator(iterator, hooks, start=start, on_start=on_start, on_first=on_first)
        if options.use_amp and options.ngpu == 0:
            model = _CpuAutocast(model)
        try:
            all_steps_are_invalid = super().train_one_epoch(
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
        finally:
            if context is not None and context.watchdog is not None:
                context.watchdog.disarm()
        # Updates made before the interruption count for this epoch too.
        return all_steps_are_invalid and earlier_valid == 0

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        context = cls._context
        if context is None or context.watchdog is None:
            return super().validate_one_epoch(
                model=model, iterator=iterator, reporter=reporter, options=options,
                distributed_option=distributed_option,
            )
        context.watchdog.arm("validation")
        try:
            return super().validate_one_epoch(
                model=model, iterator=_PetIterable(iterator, context.watchdog), reporter=reporter,
                options=options, distributed_option=distributed_option,
            )
        finally:
            context.watchdog.disarm()
