"""Step checkpoints written in the background: a host snapshot, then one writer thread.

Writing a 0.6B model's training state (~7 GB: fp32 weights and both AdamW moments) takes
tens of seconds with the CRC and ``fsync``; done synchronously, every rank waits for it.
Here the training thread only **snapshots** the state into host memory and hands it over;
a single writer thread serializes it through :func:`espnet_ext.train.checkpoint.save_step_checkpoint`
(temporary file, running CRC-32, ``fsync``, atomic rename, manifest last -- the same
file format and the same crash safety as before) and then prunes old checkpoints.

* **Snapshot** (:class:`HostSnapshot`): every tensor of the state (model, optimizers,
  schedulers, scaler, reporter, RNG, position) is copied into a host buffer; other leaves
  are deep-copied. :func:`copy_strategy` decides per tensor: a CUDA tensor is copied with
  ``non_blocking=True`` into a *pinned* buffer and the snapshot ends with one
  ``torch.cuda.synchronize()``; a CPU tensor is copied (a plain ``copy_``, since the
  optimizer updates it in place right after). Buffers are kept and reused by the next
  snapshot when the tensor's name, shape and dtype match, so a run allocates them once.
  Cost: host memory for one more copy of the state, ~7 GB at 0.6B (A100 nodes have
  1-2 TB of host RAM; pinned host memory of that size is fine there).
* **One write in flight**: the buffers are reused, so a snapshot may not start while a
  write still reads them. If a save is due while the previous write is still running,
  the training thread **waits** for it (counted in :attr:`AsyncCheckpointWriter.waits`,
  timed and logged with a hint to save less often). Waiting rather than skipping keeps
  the checkpoint positions a function of the options only (a resumed run and the tests
  see the same ones) and never drops a save.
* **Errors** of the writer (ENOSPC, pickling) are kept and raised in the training thread
  by the next :meth:`~AsyncCheckpointWriter.poll`, :meth:`~AsyncCheckpointWriter.submit`
  or :meth:`~AsyncCheckpointWriter.wait`: never lost. Training code calls
  :meth:`~AsyncCheckpointWriter.wait` at the end and before any exit.
* **Watchdog**: the writer records the time of its last progress (each chunk written);
  :meth:`~AsyncCheckpointWriter.wait` pets the watchdog only when the writer made
  progress, so a stuck write (a hung filesystem) still ends the process while a long one
  that keeps writing is not killed.
"""

import collections
import copy
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch

from espnet_ext.train import checkpoint as ckpt

PINNED_ASYNC = "pinned_async"  # CUDA -> pinned host buffer, non_blocking, one sync at the end
COPY = "copy"  # CPU (or CUDA without pinning): a synchronous copy into the host buffer


def copy_strategy(device_type: str, pin_memory: bool) -> str:
    """How a tensor on ``device_type`` is snapshotted: :data:`PINNED_ASYNC` for CUDA
    tensors when pinned host memory is available, else :data:`COPY`. Pure, so the GPU
    decision is testable on a CPU-only machine."""
    return PINNED_ASYNC if device_type == "cuda" and pin_memory else COPY


class HostSnapshot:
    """Copies a nested state (dicts, lists, tuples, tensors, plain values) to host memory,
    reusing the buffers of the previous snapshot.

    Args:
        pin_memory: use pinned buffers for CUDA tensors (default: when CUDA is available).
    """

    def __init__(self, pin_memory: Optional[bool] = None):
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self._buffers: Dict[str, torch.Tensor] = {}
        self.bytes = 0  # of the last snapshot's tensors
        self.allocated = 0  # bytes of buffers allocated by the last snapshot (0: all reused)

    def take(self, state: Any) -> Any:
        """A host copy of ``state``; valid until the next :meth:`take`."""
        self.bytes = self.allocated = 0
        seen: Dict[int, torch.Tensor] = {}  # the same tensor twice (tied weights): one copy
        used: Dict[str, torch.Tensor] = {}
        pending_cuda = [False]
        out = self._copy(state, "", seen, used, pending_cuda)
        if pending_cuda[0]:
            torch.cuda.synchronize()  # the one sync for all non_blocking copies
        self._buffers = used  # buffers of tensors that are gone are released
        return out

    def release(self) -> None:
        self._buffers = {}

    def _buffer(self, name: str, src: torch.Tensor, strategy: str) -> torch.Tensor:
        buf = self._buffers.get(name)
        if (
            buf is None
            or buf.shape != src.shape
            or buf.dtype != src.dtype
            or (strategy == PINNED_ASYNC and not buf.is_pinned())
        ):
            buf = torch.empty(src.shape, dtype=src.dtype, device="cpu", pin_memory=strategy == PINNED_ASYNC)
            self.allocated += buf.numel() * buf.element_size()
        return buf

    def _copy(self, obj: Any, name: str, seen, used, pending_cuda) -> Any:
        if isinstance(obj, torch.Tensor):
            if id(obj) in seen:
                return seen[id(obj)]
            strategy = copy_strategy(obj.device.type, self.pin_memory)
            src = obj.detach()
            buf = self._buffer(name, src, strategy)
            buf.copy_(src, non_blocking=strategy == PINNED_ASYNC)
            pending_cuda[0] |= obj.device.type == "cuda"
            used[name] = buf
            seen[id(obj)] = buf
            self.bytes += buf.numel() * buf.element_size()
            return buf
        if isinstance(obj, dict):
            out = collections.OrderedDict() if isinstance(obj, collections.OrderedDict) else {}
            for k, v in obj.items():
                out[k] = self._copy(v, f"{name}/{k}", seen, used, pending_cuda)
            if hasattr(obj, "_metadata"):  # a module state_dict's versions
                out._metadata = copy.deepcopy(obj._metadata)
            return out
        if isinstance(obj, (list, tuple)):
            items = [self._copy(v, f"{name}/{i}", seen, used, pending_cuda) for i, v in enumerate(obj)]
            return items if isinstance(obj, list) else tuple(items)
        return copy.deepcopy(obj)


class _Progress:
    """The writer's last sign of life: bytes written so far and when."""

    def __init__(self):
        self.bytes = 0
        self.at = time.monotonic()

    def __call__(self, nbytes: int) -> None:
        self.bytes = nbytes
        self.at = time.monotonic()


class AsyncCheckpointWriter:
    """One background thread that writes step checkpoints, one at a time.

    Args:
        directory: the step checkpoint directory.
        keep: committed checkpoints kept after each write (``prune_step_checkpoints``).
        pin_memory: see :class:`HostSnapshot`.
    """

    def __init__(self, directory: Path, keep: int, pin_memory: Optional[bool] = None):
        self.directory = Path(directory)
        self.keep = keep
        self.snapshot = HostSnapshot(pin_memory)
        self.waits = 0  # saves that had to wait for the previous write
        self.waited_s = 0.0
        self.writes = 0
        self._thread: Optional[threading.Thread] = None
        self._progress = _Progress()
        self._result: Optional[Dict[str, Any]] = None  # of the finished write, until collected
        self._error: Optional[BaseException] = None
        self._lock = threading.Lock()

    # -- training thread ------------------------------------------------------------------

    @property
    def busy(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(
        self, state: Dict[str, Any], epoch: int, position: int, pet: Optional[Callable[[], None]] = None
    ) -> Dict[str, float]:
        """Snapshot ``state`` and start writing it as checkpoint (epoch, position). Waits
        for a write still in flight first; raises the error of a failed earlier write
        (then nothing new is written). Returns the training thread's timings (s) and the
        previous write's result (``"previous"``, as :meth:`poll`)."""
        tic = time.perf_counter()
        waited = 0.0
        if self.busy:
            self.waits += 1
            waited = self._join(pet)
            self.waited_s += waited
            logging.warning(
                f"step checkpoint e{epoch}/b{position} is due while the previous one is still "
                f"being written: waited {waited:.1f} s (wait #{self.waits}; consider a longer "
                "--save_every_minutes)"
            )
        previous = self.poll()  # raises the error of the previous write
        t_snap = time.perf_counter()
        snap = self.snapshot.take(state)
        snapshot_s = time.perf_counter() - t_snap
        self._progress = _Progress()
        self._thread = threading.Thread(
            target=self._write,
            args=(snap, epoch, position, self._progress),
            name="espnet_ext-checkpoint-writer",
            daemon=True,
        )
        self._thread.start()
        return {
            "blocked_s": time.perf_counter() - tic,
            "waited_s": waited,
            "snapshot_s": snapshot_s,
            "previous": previous,
        }

    def poll(self) -> Optional[Dict[str, Any]]:
        """The result of a write finished since the last call (or None); raises its error."""
        if self.busy:
            return None
        self.raise_error()
        with self._lock:
            result, self._result = self._result, None
        return result

    def wait(self, pet: Optional[Callable[[], None]] = None) -> Optional[Dict[str, Any]]:
        """Block until no write is in flight; return its result, raise its error."""
        if self.busy:
            self._join(pet)
        return self.poll()

    def raise_error(self) -> None:
        with self._lock:
            error, self._error = self._error, None
        if error is not None:
            raise error

    def _join(self, pet: Optional[Callable[[], None]]) -> float:
        tic = time.perf_counter()
        seen = self._progress.at
        while True:
            self._thread.join(timeout=0.25)
            if not self._thread.is_alive():
                break
            if pet is not None and self._progress.at != seen:  # the writer moved on
                seen = self._progress.at
                pet()
        if pet is not None:
            pet()
        return time.perf_counter() - tic

    # -- writer thread --------------------------------------------------------------------

    def _write(self, state, epoch: int, position: int, progress: _Progress) -> None:
        tic = time.perf_counter()
        try:
            saved = ckpt.save_step_checkpoint(state, self.directory, epoch, position, progress=progress)
            size = saved.path.stat().st_size
            written_s = time.perf_counter() - tic
            removed = ckpt.prune_step_checkpoints(self.directory, self.keep)
            result = {"checkpoint": saved, "bytes": size, "write_s": written_s, "removed": removed}
        except BaseException as e:  # kept for the training thread
            with self._lock:
                self._error = e
            return
        with self._lock:
            self._result = result
            self.writes += 1


def _mapped_ranges(path: Path) -> List[Tuple[int, int]]:
    """Address ranges where this process maps ``path`` (from ``/proc/self/maps``)."""
    target = str(Path(path).resolve())
    ranges = []
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].strip() == target:
                    lo, hi = (int(x, 16) for x in fields[0].split("-"))
                    ranges.append((lo, hi))
    except OSError:
        pass
    return ranges


def release_file_pages(tensors: List[torch.Tensor], path: Path) -> int:
    """Drop this process's resident pages of ``tensors`` that memory-map ``path`` (as
    ``torch.load(path, mmap=True)`` returns them), with ``madvise(MADV_DONTNEED)``: the
    mapping is private and never written, so the data stays valid (re-read from the file
    if touched again). Tensors that do not lie inside a mapping of ``path`` are left
    alone. Used once a loaded checkpoint has been copied into the model and optimizer, so
    a resume's peak RSS is not the live state plus the whole file. Returns the bytes
    released (0 where ``/proc`` or ``madvise`` is unavailable)."""
    import ctypes
    import mmap as _mmap
    import os

    ranges = _mapped_ranges(path)
    if not ranges or not hasattr(_mmap, "MADV_DONTNEED"):
        return 0
    try:
        madvise = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return 0
    madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    page = os.sysconf("SC_PAGE_SIZE")
    released = 0
    for t in tensors:
        if not isinstance(t, torch.Tensor) or t.device.type != "cpu" or t.numel() == 0:
            continue
        start = t.data_ptr()
        end = start + t.numel() * t.element_size()
        if not any(lo <= start and end <= hi for lo, hi in ranges):
            continue
        start = (start + page - 1) // page * page  # whole pages inside the tensor only
        end = end // page * page
        if end > start and madvise(start, end - start, _mmap.MADV_DONTNEED) == 0:
            released += end - start
    return released
