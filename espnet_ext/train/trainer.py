"""ESPnet's Trainer, extended without copying it.

ESPnet's epoch loop and training step stay ESPnet's; this subclass wraps them:

* the options (:mod:`espnet_ext.train.options`): ESPnet's plus no-sync accumulation and
  crash safety, validated once before training;
* the iterator (:mod:`espnet_ext.train.hooks`): iteration hooks around every micro-batch
  hand-over (no-sync accumulation on DDP), a mid-epoch start on resume, and the training
  forward under CPU bf16 autocast with ``--use_amp true --ngpu 0``;
* the run (:mod:`espnet_ext.train.resume`): resume from the newest valid step checkpoint,
  step checkpoints, a limit on skipped (NaN/inf) updates and a progress watchdog;
* mixed precision (:mod:`espnet_ext.train.amp`): bf16 autocast without a loss scaler,
  fp16 with one only when asked for; each rank logs its choice once;
* random numbers per rank (:mod:`espnet_ext.train.seeding`): reseeded at the start of each
  epoch, after ESPnet's ``seed + epoch``;
* fewer collectives (:mod:`espnet_ext.train.stats`): ESPnet's loop runs with
  ``distributed=False`` around a model wrapper that all-reduces the loss weight per
  micro-batch and the statistics once per update; DDP still reduces the gradients;
* pre-emption (:mod:`espnet_ext.train.signals`): on SIGUSR1/SIGTERM, a step checkpoint at the
  next update boundary and exit status 75 (requeue); under torchrun a rank dies with its agent;
* one trainer per experiment (:mod:`espnet_ext.train.lock`): rank 0 locks the output
  directory before touching its checkpoints; a second trainer stops at once, naming the holder.
"""

import argparse
import copy
import logging
import os
from typing import List, Optional

import torch
from espnet2.train.trainer import Trainer as _StockTrainer
from espnet2.utils.build_dataclass import build_dataclass

from espnet_ext.train import amp, signals
from espnet_ext.train.compile import maybe_compile
from espnet_ext.train.hooks import CpuAutocast, HookedIterator, IterationHook, PetIterable, build_hooks
from espnet_ext.train.lock import OutputDirInUse, OutputDirLock
from espnet_ext.train.options import ExtTrainerOptions, add_trainer_arguments, check_options
from espnet_ext.train.resume import ResilienceHook, RunContext
from espnet_ext.train.seeding import reseed_for_rank
from espnet_ext.train.stats import StatsTap, equal_epoch_lengths


class StatsFlushHook(IterationHook):
    """Reduces the statistics still kept by the :class:`StatsTap` before a step checkpoint
    is written (it must hold global values) and at the end of the epoch."""

    def __init__(self, tap: StatsTap, context: Optional[RunContext]):
        self.tap = tap
        self.context = context

    def before_batch(self, iiter: int) -> None:
        if self.context is not None and self.context._due is not None:
            self.tap.flush()

    def after_epoch(self, iiter: int) -> None:
        self.tap.flush()


class Trainer(_StockTrainer):
    _context: Optional[RunContext] = None  # the current run's, while ``run`` runs
    _stop: Optional[signals.StopRequest] = None  # the current run's stop signal, while ``run`` runs

    @classmethod
    def build_options(cls, args: argparse.Namespace) -> ExtTrainerOptions:
        options = build_dataclass(ExtTrainerOptions, args)
        check_options(options)
        return options

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser):
        add_trainer_arguments(parser)

    @classmethod
    def build_hooks(
        cls, model: torch.nn.Module, options: ExtTrainerOptions, distributed: bool
    ) -> List[IterationHook]:
        return build_hooks(
            model, accum_no_sync=options.accum_no_sync, accum_grad=options.accum_grad, distributed=distributed
        )

    @classmethod
    def run(
        cls,
        model,
        optimizers,
        schedulers,
        train_iter_factory,
        valid_iter_factory,
        plot_attention_iter_factory,
        trainer_options,
        distributed_option,
    ) -> None:
        stop = signals.StopRequest()
        stop.install()  # first: a signal from now on stops at the next update boundary
        if "TORCHELASTIC_RUN_ID" in os.environ:
            signals.die_with_parent()  # no rank outlives its torchrun
        plan = amp.plan_for(trainer_options)  # a bad --amp_dtype for this device fails here
        where = (
            f"rank {distributed_option.dist_rank}/{distributed_option.dist_world_size}"
            if distributed_option.distributed
            else "trainer"
        )
        amp.log_every_rank(f"{where}: trains with {plan.describe()}")
        context = RunContext(model, optimizers, schedulers, trainer_options, distributed_option)
        lock = OutputDirLock(trainer_options.output_dir)
        try:
            cls._lock_output_dir(lock, context)
            context.prepare(bool(trainer_options.resume))  # loads a step checkpoint, if newer
            # On the base class: subclasses built on it (the SSL task's probing trainer) and
            # test hooks read the same run state.
            Trainer._context, Trainer._stop = context, stop
            # In place, before ESPnet wraps the model in DDP: parameters and state-dict keys stay
            maybe_compile(model, trainer_options.torch_compile, trainer_options.torch_compile_backend)
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
            Trainer._context, Trainer._stop = None, None
            context.close()
            lock.release()
            stop.uninstall()

    @staticmethod
    def _lock_output_dir(lock: OutputDirLock, context: RunContext) -> None:
        """Rank 0 takes the lock; every rank stops with its message if it is held."""
        error = None
        if context.rank == 0:
            try:
                lock.acquire()
            except OutputDirInUse as e:
                error = str(e)
        error = context._broadcast(error)
        if error is not None:
            logging.error(error)
            raise SystemExit(f"error: {error}")

    @classmethod
    def resume(
        cls, checkpoint, model, reporter, optimizers, schedulers, scaler, ngpu: int = 0, strict: bool = True
    ):
        """ESPnet calls this when ``checkpoint.pth`` exists. A newer step checkpoint (loaded
        by :meth:`run`) takes precedence: only its reporter is left to restore here (the grad
        scaler, the epoch's statistics and the RNG states follow in ``train_one_epoch``)."""
        context = cls._context
        if context is not None and context.restore_reporter(reporter):
            logging.info(f"{checkpoint} is older than the step checkpoint {context.newest}: not loaded")
            return
        _StockTrainer.resume(
            checkpoint=checkpoint,
            model=model,
            reporter=reporter,
            optimizers=optimizers,
            schedulers=schedulers,
            scaler=scaler,
            ngpu=ngpu,
            strict=strict,
        )

    @classmethod
    def train_one_epoch(
        cls,
        model,
        iterator,
        optimizers,
        schedulers,
        scaler,
        reporter,
        summary_writer,
        options,
        distributed_option,
    ) -> bool:
        distributed = distributed_option.distributed
        epoch = reporter.get_epoch()
        # ESPnet's run loop has just seeded every rank with seed + epoch.
        if distributed and options.seed_per_rank and distributed_option.dist_rank > 0:
            reseed_for_rank(options.seed, epoch, distributed_option.dist_rank)
        plan = amp.plan_for(options)
        scaler = amp.epoch_scaler(plan, scaler)  # bf16: a disabled scaler (autocast stays on)
        hooks = cls.build_hooks(model, options, distributed)
        context = cls._context  # None when called outside ``run`` (bench/ddp_accum.py)
        start, on_start, on_first, earlier_valid = 0, None, None, 0
        if context is not None:
            start, on_start, on_first = context.begin_epoch(epoch, reporter, scaler)
            earlier_valid = context.epoch_valid_updates
            if cls._stop is not None:
                signals.stop_at_epoch_start(context, cls._stop, epoch)
        espnet_distributed, tap = distributed_option, None
        if cls._reduce_stats_locally(options, distributed, iterator):
            n_iters = max(len(iterator) - start, 0)
            every = (
                options.accum_grad if options.stats_reduce == "update" else _log_interval(options, n_iters)
            )
            tap = StatsTap(
                None,
                reporter,
                world_size=distributed_option.dist_world_size,
                reduce_every=every,
                n_iters=n_iters,
            )
            hooks.append(StatsFlushHook(tap, context))
            espnet_distributed = copy.copy(distributed_option)
            espnet_distributed.distributed = False  # no stop flag, no statistics collectives
        if context is not None:
            hooks.append(ResilienceHook(context, epoch, options.accum_grad, reporter, scaler))
            if cls._stop is not None:  # after the resilience hook: it writes the forced checkpoint
                hooks.append(signals.StopHook(cls._stop, context, epoch, options.accum_grad))
            if context.watchdog is not None:
                context.watchdog.arm("training")
        if hooks:
            logging.debug(f"iteration hooks: {[type(h).__name__ for h in hooks]}")
            iterator = HookedIterator(iterator, hooks, start=start, on_start=on_start, on_first=on_first)
        if plan.dtype is not None and options.ngpu == 0:
            model = CpuAutocast(model)
        if tap is not None:
            tap.module = model
            model = tap
        try:
            with amp.espnet_autocast_dtype(plan):
                all_steps_are_invalid = super().train_one_epoch(
                    model=model,
                    iterator=iterator,
                    optimizers=optimizers,
                    schedulers=schedulers,
                    scaler=scaler,
                    reporter=reporter,
                    summary_writer=summary_writer,
                    options=options,
                    distributed_option=espnet_distributed,
                )
        finally:
            if context is not None and context.watchdog is not None:
                context.watchdog.disarm()
        # Updates made before the interruption count for this epoch too.
        return all_steps_are_invalid and earlier_valid == 0

    @staticmethod
    def _reduce_stats_locally(options, distributed: bool, iterator) -> bool:
        """Whether this epoch runs ESPnet's loop without its per-micro-batch collectives
        (every rank decides the same; the length check is one all-reduce per epoch)."""
        if not distributed or options.stats_reduce == "micro_batch" or options.no_forward_run:
            return False
        if options.ngpu > 1:  # one process driving several GPUs (DataParallel): ESPnet's path
            return False
        if not equal_epoch_lengths(iterator, "cuda" if options.ngpu > 0 else "cpu"):
            logging.warning(
                "the ranks' epochs differ in length (or have none): ESPnet's "
                "per-micro-batch stop flag and statistics this epoch"
            )
            return False
        return True

    @classmethod
    def validate_one_epoch(cls, model, iterator, reporter, options, distributed_option) -> None:
        context = cls._context
        watchdog = context.watchdog if context is not None else None
        if watchdog is None:
            return super().validate_one_epoch(
                model=model,
                iterator=iterator,
                reporter=reporter,
                options=options,
                distributed_option=distributed_option,
            )
        watchdog.arm("validation")
        try:
            return super().validate_one_epoch(
                model=model,
                iterator=PetIterable(iterator, watchdog),
                reporter=reporter,
                options=options,
                distributed_option=distributed_option,
            )
        finally:
            watchdog.disarm()


def _log_interval(options, n_iters: int) -> int:
    """ESPnet's log interval for an epoch of ``n_iters`` micro-batches."""
    if options.log_interval is not None:
        return options.log_interval
    return max(n_iters // 20, 10)
