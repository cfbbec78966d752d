"""A progress watchdog that turns a hung rank into a prompt, named, non-zero exit.

Under DDP every micro-batch ends in collectives. When a peer rank dies, the survivors
wait in one of them: gloo usually notices the closed connection, but a hung (not dead)
peer, a lost node or NCCL can leave them waiting until the process-group timeout (10 to
30 minutes) or longer. The trainer pets this watchdog at every micro-batch hand-over; if
nothing happens for ``timeout`` seconds while it is armed, it logs which rank stalled and
where, dumps every thread's stack, and ends the process with :data:`EXIT_CODE`. The
launcher (torchrun, or ESPnet's own spawn) then tears the job down.

Saving and resuming stay watched: :meth:`ProgressWatchdog.phase` arms a named phase
with its own limit (e.g. a longer one while waiting for a multi-GB checkpoint write,
whose ``fsync`` makes no visible progress) and restores the previous phase afterwards;
long loops inside it (CRC re-reads, the background writer's chunks) :meth:`pet` it, so a
long legitimate write is not killed but a stuck one still is.
"""

import contextlib
import faulthandler
import logging
import os
import sys
import threading
import time
from typing import Iterator, Optional, Tuple

EXIT_CODE = 124  # as timeout(1)


class ProgressWatchdog:
    """Exit the process after ``timeout`` seconds without :meth:`pet` while armed.

    Args:
        timeout: seconds of silence tolerated while armed.
        label: names the process in the message, e.g. ``"rank 1/2"``.
        poll: seconds between checks (default ``min(timeout / 10, 10)``).
    """

    def __init__(self, timeout: float, label: str, poll: Optional[float] = None):
        if timeout <= 0:
            raise ValueError(f"watchdog timeout must be > 0, got {timeout}")
        self.timeout = timeout
        self.label = label
        self._poll = poll if poll is not None else min(timeout / 10, 10.0)
        self._lock = threading.Lock()
        self._last = time.monotonic()
        self._phase = None  # None: disarmed
        self._limit = timeout  # the armed phase's limit
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="espnet_ext-watchdog", daemon=True)
        self._thread.start()

    def arm(self, phase: str, timeout: Optional[float] = None) -> None:
        """Start watching; ``phase`` says what is expected to progress, ``timeout``
        (default: the constructor's) how long it may be silent."""
        with self._lock:
            self._phase = phase
            self._limit = self.timeout if timeout is None else timeout
            self._last = time.monotonic()

    @property
    def state(self) -> Tuple[Optional[str], float]:
        """The armed phase (None: disarmed) and its limit."""
        with self._lock:
            return self._phase, self._limit

    @contextlib.contextmanager
    def phase(self, phase: str, timeout: Optional[float] = None) -> Iterator["ProgressWatchdog"]:
        """Armed as ``phase`` inside the block; the previous phase (or disarmed) after it,
        with a fresh start of its silence count."""
        previous, limit = self.state
        self.arm(phase, timeout)
        try:
            yield self
        finally:
            if previous is None:
                self.disarm()
            else:
                self.arm(previous, limit)

    def pet(self) -> None:
        self._last = time.monotonic()

    def disarm(self) -> None:
        with self._lock:
            self._phase = None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self._poll + 1)

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            with self._lock:
                phase, limit = self._phase, self._limit
                silent = time.monotonic() - self._last
            if phase is not None and silent > limit:
                self._fire(phase, silent, limit)

    def _fire(self, phase: str, silent: float, limit: Optional[float] = None) -> None:
        limit = self.timeout if limit is None else limit
        message = (
            f"{self.label}: no progress in {phase} for {silent:.0f} s (watchdog limit "
            f"{limit:.0f} s): a peer rank or the storage has probably died or hung. Exiting with "
            f"code {EXIT_CODE}; stacks follow."
        )
        try:
            logging.critical(message)
            print(message, file=sys.stderr, flush=True)
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            sys.stderr.flush()
        finally:
            os._exit(EXIT_CODE)
