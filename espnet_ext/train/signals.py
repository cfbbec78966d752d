"""Pre-emption: stop at the next update boundary with a step checkpoint, exit for requeue.

SLURM warns a job before its time limit with a signal (``--signal=B:USR1@<s>``, forwarded
to the ranks by the job script) and sends SIGTERM at pre-emption or ``scancel``. On either,
every training process (every rank) does this:

1. the handler (:class:`StopRequest`) only records the signal: it is async-signal-safe and
   the training step in flight (forward, backward, optimizer step) goes on;
2. at the next optimizer-update boundary (:class:`StopHook`, after the step), the ranks
   agree with one tiny all-reduce (MAX of the signal number; one per update, none per
   micro-batch), so with DDP every rank stops after the same update even when the signal
   reached only some of them;
3. the step checkpoint of that boundary is written through the run's normal, atomic save
   path (:meth:`espnet_ext.train.resume.RunContext.save_if_due`, forced), and waited for
   (:meth:`~espnet_ext.train.resume.RunContext.flush_checkpoints`);
4. every rank logs ``stopping for requeue after update N of epoch E ...``, flushes its
   logs and exits with :data:`espnet_ext.distributed.exit_codes.REQUEUE` (75) by
   ``os._exit`` (nothing in ESPnet's loop can swallow it or hang in the teardown).

The resumed run (``--resume true``) continues from that checkpoint: no completed update is
lost, and the one in flight when the signal came was finished first. A signal that arrives
during validation takes effect at the start of the next epoch's training (ESPnet's
``checkpoint.pth`` already holds the finished epoch), or not at all after the last epoch.

DataLoader worker processes forked while the handler is installed ignore SIGUSR1 and
SIGTERM (``os.register_at_fork``, and again after torch's worker start installs its own
SIGTERM handler): SLURM signals every process of the job step, and a worker killed by it
would make the loader fail before the checkpoint. Workers still end with the trainer: the
loader shuts them down, and they get SIGKILL when it dies (``PR_SET_PDEATHSIG``).

:func:`die_with_parent` (Linux ``PR_SET_PDEATHSIG``) makes a rank under torchrun get SIGTERM
when its torchrun dies, even by SIGKILL, so no rank outlives its agent.

If the launcher sets ``ESPNET_EXT_REQUEUE_MARK`` (a file path), each rank that exits for
requeue appends a line to it: torchrun exits 1 after forwarding a signal, whatever its
workers returned, and the launcher uses the file to return 75 (see
:mod:`espnet_ext.distributed.runner`).
"""

import ctypes
import ctypes.util
import logging
import os
import signal
import sys
import threading
import time
from typing import Optional

from espnet_ext.distributed.exit_codes import REQUEUE
from espnet_ext.train.hooks import IterationHook

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
REQUEUE_MARK_ENV = "ESPNET_EXT_REQUEUE_MARK"
_PR_SET_PDEATHSIG = 1


class StopRequest:
    """Records SIGUSR1/SIGTERM; installed in the main thread for the duration of a run."""

    def __init__(self):
        self.signum = 0  # the first stop signal received, 0 if none
        self.received_at: Optional[float] = None  # time.monotonic() of it
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        if not self.signum:
            self.signum, self.received_at = signum, time.monotonic()

    def install(self) -> bool:
        global _ignore_in_forks
        if threading.current_thread() is not threading.main_thread():
            logging.warning("the trainer runs outside the main thread: SIGUSR1/SIGTERM are not handled")
            return False
        for s in STOP_SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        _register_fork_hook()
        _ignore_in_forks = True
        return True

    def uninstall(self) -> None:
        global _ignore_in_forks
        _ignore_in_forks = False
        for s, previous in self._previous.items():
            signal.signal(s, previous if previous is not None else signal.SIG_DFL)
        self._previous.clear()


_ignore_in_forks = False
_fork_hook_registered = False


def _ignore_in_child() -> None:
    if _ignore_in_forks:  # a DataLoader worker of a training run
        for s in STOP_SIGNALS:
            signal.signal(s, signal.SIG_IGN)


def _register_fork_hook() -> None:
    global _fork_hook_registered
    if not _fork_hook_registered:
        os.register_at_fork(after_in_child=_ignore_in_child)
        _patch_loader_workers()
        _fork_hook_registered = True


def _patch_loader_workers() -> None:
    """A DataLoader worker installs torch's own SIGTERM handler (it dies on a SIGTERM from
    anyone but its parent) at its start: ignore the stop signals after that, and die by
    SIGKILL with the trainer instead (``PR_SET_PDEATHSIG``). Forked workers only (the
    default on Linux): a spawned worker re-imports torch unpatched."""
    try:
        from torch.utils.data._utils import signal_handling
    except ImportError:
        return
    original = signal_handling._set_worker_signal_handlers
    if getattr(original, "_espnet_ext", False):
        return

    def set_worker_signal_handlers(*args, **kwargs):
        original(*args, **kwargs)
        if _ignore_in_forks:
            _ignore_in_child()
            die_with_parent(signal.SIGKILL)

    set_worker_signal_handlers._espnet_ext = True
    signal_handling._set_worker_signal_handlers = set_worker_signal_handlers


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def agree(context, request: StopRequest) -> int:
    """All ranks: the stop signal any of them received (0: none). One tiny all-reduce."""
    (signum,) = context._max(int(request.signum))
    return signum


def exit_for_requeue(context, request: StopRequest, signum: int, where: str) -> None:
    """Wait for the step checkpoint, say so, leave a mark for the launcher, exit 75."""
    context.flush_checkpoints()
    since = ""
    if request.received_at is not None:
        since = f", {time.monotonic() - request.received_at:.1f} s after the signal reached this process"
    logging.warning(
        f"{context.label}: stopping for requeue {where} (signal {signal_name(signum)}); "
        f"newest step checkpoint: {context.newest or 'none'}{since}; exit status {REQUEUE}"
    )
    mark = os.environ.get(REQUEUE_MARK_ENV)
    if mark:
        try:
            with open(mark, "a") as f:
                f.write(f"{context.label} {where}\n")
        except OSError as e:
            logging.warning(f"cannot write the requeue mark {mark}: {e}")
    logging.shutdown()  # flush and close the log handlers
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Not SystemExit: the interpreter's shutdown (garbage collection of the whole training
    # state, loader workers) took 10 s here, and nothing is left to clean up: the checkpoint
    # is durable, DataLoader workers die with this process, the kernel drops the lock.
    os._exit(REQUEUE)


class StopHook(IterationHook):
    """Stops one epoch's training at the first update boundary after a stop signal.

    Goes after the resilience hook (:class:`espnet_ext.train.resume.ResilienceHook`), whose
    ``before_batch``/``after_epoch`` write the checkpoint this hook forces.

    Args:
        request: the run's :class:`StopRequest`.
        context: the run's :class:`~espnet_ext.train.resume.RunContext`.
        epoch: the epoch being trained.
        accum_grad: micro-batches per optimizer update.
    """

    def __init__(self, request: StopRequest, context, epoch: int, accum_grad: int):
        self.request = request
        self.context = context
        self.epoch = epoch
        self.accum_grad = accum_grad
        self._stop = None  # (signal, position) once the ranks agreed to stop

    def after_batch(self, iiter: int) -> None:
        if iiter % self.accum_grad == 0 and self._stop is None:
            signum = agree(self.context, self.request)
            if signum:
                self._stop = (signum, iiter)
                self.context.mark_due(self.epoch, iiter)

    def _finish(self) -> None:
        signum, position = self._stop
        where = f"after update {position // self.accum_grad} of epoch {self.epoch} ({position} micro-batches)"
        exit_for_requeue(self.context, self.request, signum, where)

    def before_batch(self, iiter: int) -> None:
        if self._stop is not None:  # the checkpoint was written after this fetch
            self._finish()

    def after_epoch(self, iiter: int) -> None:
        if self._stop is not None:
            self._finish()


def stop_at_epoch_start(context, request: StopRequest, epoch: int) -> None:
    """A signal that came during validation or between epochs: stop before training
    ``epoch`` (ESPnet's checkpoint.pth holds the epochs before it)."""
    signum = agree(context, request)
    if signum:
        exit_for_requeue(context, request, signum, f"before epoch {epoch}")


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """Linux: get ``sig`` when the parent process dies (``PR_SET_PDEATHSIG``)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    except (OSError, AttributeError) as e:
        logging.warning(f"cannot set PR_SET_PDEATHSIG: {e}")
        return False
    if os.getppid() == 1:  # the parent died before the call
        os.kill(os.getpid(), sig)
    return True
