"""Crash safety for one training run: resume, step checkpoints, skipped updates, watchdog.

* **step checkpoints** every ``--save_every_steps`` optimizer updates and/or every
  ``--save_every_minutes`` minutes (default 5), of the state at an update boundary:
  model, optimizers, schedulers, grad scaler, the reporter (finished epochs and this
  epoch's statistics so far), the position in the epoch (micro-batches consumed) and
  every rank's RNG states, both before and after the next batch is fetched (the file is
  written right after that fetch, or at the end of the epoch). Rank 0 snapshots the
  state to host memory and a background thread writes it atomically
  (:mod:`espnet_ext.train.async_writer`, :mod:`espnet_ext.train.checkpoint`), so
  training blocks only for the snapshot; the last ``--keep_step_checkpoints`` are kept.
  The ranks' RNG states reach rank 0 by one ``all_gather`` of fixed-size byte tensors
  (no ``gather_object``). A write error surfaces on every rank at the next update
  boundary; :meth:`RunContext.flush` (called by :meth:`RunContext.close`) waits for the
  write in flight. A crash loses at most the work since the newest committed one.
* **non-finite updates**: ESPnet skips an update whose gradient norm is NaN/inf (which a
  NaN/inf loss on any rank causes). Skipped updates are counted over the last
  ``--nonfinite_window`` updates (a sliding window carried in the step checkpoints, so it
  survives resumes; :class:`NonFiniteWindow`) and training stops with an error once more
  than ``--max_nonfinite_steps`` of them were skipped. The decision is all-reduced, so
  every rank stops together.
* a **progress watchdog** (``--watchdog_minutes``) ends a rank that waits too long
  (e.g. for a dead peer) with a non-zero exit code and a message naming the rank. It
  stays armed while saving and resuming, with :data:`SAVE_WATCHDOG_FACTOR` times the
  limit (rank 0 may wait for a multi-GB write or CRC re-read the others cannot see),
  petted whenever the writer or the verification makes progress.

**Save now** (for signal handling): :meth:`RunContext.request_save` (signal-safe) makes
the next update boundary a save point on every rank (the flag is all-reduced with the
others); that save is then waited for (:meth:`RunContext.flush`) and
:attr:`RunContext.requested_save_done` names the committed file. :meth:`RunContext.save_now`
does the same at once, when the caller is already at an update boundary on every rank.

**Resume** (``--resume true``, as the recipe always passes): before ESPnet's epoch loop,
rank 0 picks the newest valid state -- a step checkpoint if it is later than the epochs
finished in ESPnet's ``checkpoint.pth``, skipping torn or corrupt ones with a warning --
and every rank loads it (:meth:`RunContext.prepare`). ESPnet then starts the loop at that
checkpoint's epoch, and the first ``train_one_epoch`` skips the micro-batches already
consumed (:func:`espnet_ext.train.hooks.open_from`), restores the RNG states around the
first fetch as they were saved (:meth:`RunContext.begin_epoch`), and continues as if it had
not been interrupted: same data order, same dropout and masking draws, same parameters.
"""

import contextlib
import gc
import io
import logging
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from espnet_ext.train import checkpoint as ckpt
from espnet_ext.train.async_writer import AsyncCheckpointWriter, release_file_pages
from espnet_ext.train.hooks import IterationHook
from espnet_ext.train.nonfinite import NonFiniteLimitError, NonFiniteWindow
from espnet_ext.train.restore import materialize_optimizer_state, owned, tensors
from espnet_ext.train.watchdog import ProgressWatchdog

SAVE_WATCHDOG_FACTOR = 3  # watchdog limit while saving / resuming, times --watchdog_minutes


class RunContext:
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
        self.nonfinite = NonFiniteWindow(getattr(options, "nonfinite_window", None))
        self.epoch_valid_updates = 0
        self.windows_since_save = 0
        self.last_save = time.monotonic()
        self.newest: Optional[str] = None
        self._stepped = False
        self._due: Optional[Tuple[int, int, Dict[str, Any]]] = None
        self._save_requested = False  # request_save(): set from a signal handler
        self._due_requested = False
        self.requested_save_done: Optional[str] = None  # the file a requested save committed
        self._handles = [o.register_step_post_hook(self._on_step) for o in self.optimizers]
        self.watchdog = (
            ProgressWatchdog(options.watchdog_minutes * 60, self.label)
            if options.watchdog_minutes is not None
            else None
        )
        self.save_timeout = (
            SAVE_WATCHDOG_FACTOR * options.watchdog_minutes * 60
            if options.watchdog_minutes is not None
            else None
        )
        self.writer = (
            AsyncCheckpointWriter(
                self.step_dir, options.keep_step_checkpoints, pin_memory=self.device == "cuda"
            )
            if self.rank == 0
            else None
        )
        self.save_timings: List[Dict[str, float]] = []  # rank 0: the training thread's cost per save

    def _on_step(self, optimizer, args, kwargs) -> None:
        self._stepped = True

    def close(self) -> None:
        """End of the run (also on an error): wait for the write in flight (raising its
        error), then release the hooks, the watchdog and the snapshot buffers."""
        try:
            self.flush()
        finally:
            for handle in self._handles:
                handle.remove()
            if self.watchdog is not None:
                self.watchdog.stop()
            if self.writer is not None:
                self.writer.snapshot.release()

    # -- watchdog ------------------------------------------------------------------------

    def _pet(self) -> None:
        if self.watchdog is not None:
            self.watchdog.pet()

    def _watched(self, phase: str):
        """Armed as ``phase`` with the save/resume limit for the block."""
        if self.watchdog is None:
            return contextlib.nullcontext()
        return self.watchdog.phase(phase, self.save_timeout)

    # -- stopping for requeue (espnet_ext.train.signals) ---------------------------------

    def mark_due(self, epoch: int, position: int) -> None:
        """Force a step checkpoint at this update boundary (all ranks, after
        :meth:`on_update`): written by the next :meth:`save_if_due`."""
        if self._due is None:
            self._due = (epoch, position, ckpt.capture_rng())

    def flush_checkpoints(self) -> None:
        """All ranks: return once every step checkpoint saved so far is durable on disk.
        Rank 0 waits for its background write (:meth:`flush`); the others wait for rank 0
        (one tiny all-reduce), so no rank exits, and no launcher reaps the job, before the
        file is committed."""
        self.flush()
        self._max(0)

    # -- collectives (no-ops on one process) ---------------------------------------------

    def _broadcast(self, obj: Any) -> Any:
        if not self.distributed:
            return obj
        box = [obj]
        torch.distributed.broadcast_object_list(box, src=0)
        return box[0]

    def _gather_rng(self, rng: Dict[str, Any]) -> Optional[List[Any]]:
        """Every rank's ``rng`` on rank 0 (None elsewhere), without ``gather_object``:
        each rank serializes its states (a few KiB) into a byte tensor on its device,
        one all-reduce agrees on the longest, one ``all_gather`` of padded tensors."""
        if not self.distributed:
            return [rng]
        buf = io.BytesIO()
        torch.save(rng, buf)
        payload = buf.getvalue()
        (longest,) = self._max(len(payload))
        mine = torch.zeros(8 + longest, dtype=torch.uint8)
        mine[:8] = torch.frombuffer(bytearray(len(payload).to_bytes(8, "little")), dtype=torch.uint8)
        mine[8 : 8 + len(payload)] = torch.frombuffer(bytearray(payload), dtype=torch.uint8)
        mine = mine.to(self.device)
        everyone = [torch.empty_like(mine) for _ in range(self.world_size)]
        torch.distributed.all_gather(everyone, mine)
        if self.rank != 0:
            return None
        out = []
        for row in torch.stack(everyone).cpu():
            data = row.numpy().tobytes()
            n = int.from_bytes(data[:8], "little")
            out.append(torch.load(io.BytesIO(data[8 : 8 + n]), map_location="cpu", weights_only=True))
        return out

    def _max(self, *flags: int) -> List[int]:
        if not self.distributed:
            return list(flags)
        t = torch.tensor(flags, dtype=torch.int64, device=self.device)
        torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
        return t.tolist()

    # -- resume --------------------------------------------------------------------------

    def prepare(self, resume: bool) -> None:
        """Choose (rank 0) and load (every rank) the state to resume from, watched."""
        with self._watched("resume"):
            self._prepare(resume)

    def _prepare(self, resume: bool) -> None:
        decision: Dict[str, Any] = {"path": None, "error": None}
        if self.rank == 0:
            try:
                decision["path"] = self._choose(resume)
            except Exception as e:  # broadcast it: the other ranks must not wait forever
                decision["error"] = (
                    str(e) if isinstance(e, ckpt.CheckpointError) else f"{type(e).__name__}: {e}"
                )
        decision = self._broadcast(decision)
        if decision["error"] is not None:
            raise ckpt.CheckpointError(f"choosing the state to resume from: {decision['error']}")
        if decision["path"] is None:
            return
        path = Path(decision["path"])
        state = self._restore(path)
        self._pet()
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
        self.nonfinite.load(state.get("nonfinite_window"), int(state.get("nonfinite_total", 0)))
        self.finished_reporter = state["reporter"]
        self.pending = state  # what begin_epoch needs; the model and optimizers are restored
        self.newest = str(path)
        logging.info(
            f"resuming from step checkpoint {path} (epoch {state['epoch']}, "
            f"{state['position']} micro-batches done)"
        )

    def _restore(self, path: Path) -> Dict[str, Any]:
        """Load the step checkpoint ``path`` memory-mapped into the model, optimizers and
        schedulers; return the rest of its state, copied out of the file. The mapped
        file's pages are released as soon as they are copied (model, then each optimizer
        tensor), and the mapping itself with the last reference: the resume's peak is
        the live state plus about the model's part of the file, not two copies."""
        state = ckpt.load_step_checkpoint(ckpt.StepCheckpoint.from_path(path), mmap=True)
        self._pet()
        self.model.load_state_dict(state["model"])
        release_file_pages(list(tensors(state["model"])), path)
        state["model"] = None
        self._pet()
        for optimizer, s in zip(self.optimizers, state["optimizers"], strict=True):
            materialize_optimizer_state(optimizer, s, path)
            optimizer.load_state_dict(s)
            self._pet()
        state["optimizers"] = None
        for scheduler, s in zip(self.schedulers, state["schedulers"], strict=True):
            if scheduler is not None:
                scheduler.load_state_dict(s)
        rest = owned({k: v for k, v in state.items() if k not in ("model", "optimizers", "schedulers")})
        del state
        gc.collect()  # the last slices of the mapped file go: it is unmapped
        return rest

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
        choice = ckpt.choose_resume_point(self.output_dir, progress=self._pet)
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

    def begin_epoch(
        self, epoch: int, sub_reporter, scaler
    ) -> Tuple[int, Optional[Callable], Optional[Callable]]:
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
        requested, self._save_requested = self._save_requested, False
        write_error = self._collect()  # rank 0: a background write that finished (or failed)
        skipped, due, requested, failed = self._max(
            skipped, int(due or requested), int(requested), int(write_error is not None)
        )
        if failed:
            raise ckpt.CheckpointWriteError(
                write_error or "rank 0 could not write a step checkpoint (see its log)"
            )
        self.nonfinite.add(bool(skipped))
        if skipped:
            limit = opts.max_nonfinite_steps
            recent, span = self.nonfinite.recent, self.nonfinite.describe()
            logging.warning(
                f"epoch {epoch}, micro-batch {position}: update skipped (NaN/inf loss or "
                f"gradient); {recent} skipped {span} (limit {limit}), {self.nonfinite.total} in this run"
            )
            if limit is not None and recent > limit:
                raise NonFiniteLimitError(
                    f"{self.label}: training stopped: {recent} optimizer updates {span} "
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
            self._due_requested = bool(requested)

    def save_if_due(self, sub_reporter, scaler, fetched: bool) -> None:
        """After the fetch that follows a due update boundary (``fetched``), or at the end
        of the epoch when there was none."""
        if self._due is None:
            return
        (epoch, position, before), self._due = self._due, None
        rng = {"before_fetch": before, "after_fetch": ckpt.capture_rng() if fetched else None}
        self.save(epoch, position, sub_reporter, scaler, rng)
        if self._due_requested:  # a save now (signal): committed before anyone exits
            self._due_requested = False
            self.flush()
            self.requested_save_done = str(ckpt.step_checkpoint_path(self.step_dir, epoch, position))

    def request_save(self) -> None:
        """Make the next update boundary a save point on every rank, then wait for that
        write (see :attr:`requested_save_done`). Safe to call from a signal handler."""
        self._save_requested = True

    def save_now(
        self, epoch: int, position: int, sub_reporter, scaler, rng: Optional[Dict[str, Any]] = None
    ) -> Optional[str]:
        """Save the current state (an update boundary, every rank calls it) and wait until
        it is committed; returns its path (rank 0). ``rng``: as :meth:`save`'s, by
        default the current states (no fetch pending)."""
        if rng is None:
            rng = {"before_fetch": ckpt.capture_rng(), "after_fetch": None}
        self.save(epoch, position, sub_reporter, scaler, rng)
        self.flush()
        return str(ckpt.step_checkpoint_path(self.step_dir, epoch, position)) if self.rank == 0 else None

    def flush(self) -> None:
        """Rank 0: wait for the background write in flight (watched, petted while it
        progresses); log it, raise :class:`CheckpointWriteError` if it failed. A no-op on
        the other ranks and when nothing is in flight. Call before any exit."""
        if self.writer is None:
            return
        with self._watched("checkpoint write"):
            error = self._collect(wait=True)
        if error is not None:
            raise ckpt.CheckpointWriteError(error)

    def _write_error(self, e: BaseException) -> str:
        error = (
            f"{e}; the checkpoints written before are intact (newest step "
            f"checkpoint: {self.newest or 'none yet'})"
        )
        logging.error(error)
        return error

    def _collect(self, wait: bool = False) -> Optional[str]:
        """Rank 0: take the result of a finished background write (waiting for it with
        ``wait``); log it, or return the error message if it failed."""
        if self.writer is None:
            return None
        try:
            result = self.writer.wait(pet=self._pet) if wait else self.writer.poll()
        except Exception as e:  # CheckpointWriteError (ENOSPC...), or a pickling error
            return self._write_error(e)
        self._log_written(result)
        return None

    def _log_written(self, result: Optional[Dict[str, Any]]) -> None:
        if result is None:
            return
        saved = result["checkpoint"]
        for old in result["removed"]:
            logging.debug(f"removed old step checkpoint {old.path.name}")
        logging.info(
            f"step checkpoint {saved.path.name}: {result['bytes'] / 2**20:.1f} MiB written in "
            f"{result['write_s']:.2f} s in the background"
        )
        self.newest = str(saved.path)

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
        """Every rank: contribute RNG states; rank 0 snapshots the state and hands it to
        the background writer (after waiting for a write still in flight, whose error is
        raised here); all agree on the outcome. Training blocks only for this."""
        with self._watched("checkpoint save"):
            rngs = self._gather_rng(rng)
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
                    "nonfinite_total": self.nonfinite.total,
                    "nonfinite_window": self.nonfinite.state(),
                    "epoch_valid_updates": self.epoch_valid_updates,
                    "accum_grad": self.options.accum_grad,
                    "world_size": self.world_size,
                }
                try:
                    timing = self.writer.submit(state, epoch, position, pet=self._pet)
                except Exception as e:  # the previous write failed, or the snapshot did
                    error = self._write_error(e)
                else:
                    self._log_written(timing.pop("previous"))
                    self.save_timings.append(timing)
                    logging.info(
                        f"step checkpoint e{epoch}/b{position}: training blocked {timing['blocked_s']:.2f} s "
                        f"(snapshot {timing['snapshot_s']:.2f} s, waited {timing['waited_s']:.2f} s); "
                        "writing in the background"
                    )
                del state
            (failed,) = self._max(int(error is not None))
        if failed:
            raise ckpt.CheckpointWriteError(error or "rank 0 could not write a step checkpoint (see its log)")
        self.windows_since_save = 0
        self.last_save = time.monotonic()


class ResilienceHook(IterationHook):
    """Feeds one epoch's hand-overs to the run's :class:`RunContext`: pets the watchdog,
    counts updates at accumulation boundaries and writes a due step checkpoint.

    Args:
        context: the run's state.
        epoch: the epoch being trained.
        accum_grad: micro-batches per optimizer update.
        sub_reporter: ESPnet's reporter for this epoch (its statistics are saved).
        scaler: the grad scaler (``use_amp``) or None.
    """

    def __init__(self, context: RunContext, epoch: int, accum_grad: int, sub_reporter, scaler):
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
