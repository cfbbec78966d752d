"""Crash-safe step checkpoints: atomic files, a commit manifest, validation, retention.

A step checkpoint is two files in ``<output_dir>/step_checkpoints/``:

* ``e{epoch:05d}_b{position:09d}.pth``: ``torch.save`` of the training state after
  ``position`` micro-batches of ``epoch`` (always at an optimizer-update boundary);
* ``e{epoch:05d}_b{position:09d}.json``: its manifest (size in bytes and CRC-32 of the
  ``.pth``), written after the ``.pth`` is complete.

Writing is atomic in two steps. The state goes to a hidden temporary file in the same
directory (CRC computed on the fly), which is flushed, ``fsync``-ed and renamed into
place (``os.replace`` is atomic on POSIX); then the manifest is written the same way.
The manifest is the commit record: a ``.pth`` without one, or whose size or CRC
disagrees with it, is a torn or corrupt write and is skipped with a warning. A process
killed at any point therefore leaves either a complete new checkpoint or none, and the
previous checkpoints are never touched before the new one is committed. A failed write
(``ENOSPC`` and other ``OSError``) removes its own partial files and raises
:class:`CheckpointWriteError`.

Writing normally happens in a background thread on a host snapshot of the state
(:mod:`espnet_ext.train.async_writer`); this module is the synchronous writer it runs.
Loading memory-maps the file (``torch.load(mmap=True)``, which the default zip format of
``torch.save`` supports), so a resume does not hold a second copy of the state.

Everything stored loads with ``torch.load(weights_only=True)``: RNG states and reporter
statistics are converted to tensors and plain Python values.

This module only touches files and process-local state; the trainer
(:mod:`espnet_ext.train.trainer`) decides when to save and coordinates ranks.
"""

import dataclasses
import errno
import json
import logging
import os
import random
import re
import time
import zlib
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from espnet_ext.utils.atomic import atomic_open

STEP_DIR = "step_checkpoints"
FORMAT = "espnet_ext.step_checkpoint/1"
_NAME = re.compile(r"^e(\d{5})_b(\d{9})\.pth$")
_TMP_PREFIX = ".tmp."
_READ_CHUNK = 16 * 2**20


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used to resume."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written (the previous ones are intact)."""


@dataclasses.dataclass(frozen=True)
class StepCheckpoint:
    """One step checkpoint on disk: ``path`` (the ``.pth``) after ``position``
    micro-batches of ``epoch``."""

    path: Path
    epoch: int
    position: int

    @classmethod
    def from_path(cls, path: Path) -> "StepCheckpoint":
        match = _NAME.match(Path(path).name)
        if match is None:
            raise CheckpointError(f"{path} is not named like a step checkpoint")
        return cls(Path(path), int(match.group(1)), int(match.group(2)))

    @property
    def manifest_path(self) -> Path:
        return self.path.with_suffix(".json")

    @property
    def key(self) -> Tuple[int, int]:
        """Training-time order: later epoch, then more micro-batches, is newer."""
        return (self.epoch, self.position)


def step_checkpoint_path(directory: Path, epoch: int, position: int) -> Path:
    if epoch < 1 or position < 0:
        raise ValueError(f"bad checkpoint point: epoch={epoch}, position={position}")
    return Path(directory) / f"e{epoch:05d}_b{position:09d}.pth"


def list_step_checkpoints(directory: Path) -> List[StepCheckpoint]:
    """Step checkpoint files in ``directory``, newest first (not validated)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for entry in directory.iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(StepCheckpoint(entry, int(match.group(1)), int(match.group(2))))
    return sorted(found, key=lambda c: c.key, reverse=True)


class ChecksumWriter:
    """File-like sink for ``torch.save``: writes everything to an unbuffered binary file,
    counts bytes and keeps a running CRC-32. An ``OSError`` from the file (e.g. ENOSPC)
    is kept in :attr:`error`, because ``torch.save`` reports it as an unrelated
    ``RuntimeError``. ``progress(bytes_so_far)`` is called after each write."""

    def __init__(self, raw, progress: Optional[Callable[[int], None]] = None):
        self.raw = raw
        self.crc = 0
        self.bytes = 0
        self.error: Optional[OSError] = None
        self.progress = progress

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        try:
            while view:
                written = self.raw.write(view)
                view = view[written:]
        except OSError as e:
            self.error = e
            raise
        self.crc = zlib.crc32(data, self.crc)
        self.bytes += len(data)
        if self.progress is not None:
            self.progress(self.bytes)
        return len(data)

    def flush(self) -> None:
        self.raw.flush()


def _write_durably(
    path: Path, produce: Callable[[ChecksumWriter], None], progress: Optional[Callable[[int], None]] = None
) -> ChecksumWriter:
    """``produce(writer)`` into a temporary file, fsync, rename to ``path``."""
    tmp = path.with_name(f"{_TMP_PREFIX}{path.name}.{os.getpid()}")
    writer = None
    try:
        with atomic_open(path, "wb", tmp=tmp, sync_dir=True, buffering=0) as raw:
            writer = ChecksumWriter(raw, progress)
            produce(writer)
    except BaseException as e:
        if writer is not None and writer.error is not None and e is not writer.error:
            raise writer.error from e
        raise
    return writer


def save_step_checkpoint(
    state: Dict[str, Any],
    directory: Path,
    epoch: int,
    position: int,
    progress: Optional[Callable[[int], None]] = None,
) -> StepCheckpoint:
    """Atomically write ``state`` as the step checkpoint (epoch, position) and commit it
    with its manifest. Raises :class:`CheckpointWriteError` (partial files removed).
    ``progress(bytes_so_far)`` is called as the file is written (a watchdog's pet)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    checkpoint = StepCheckpoint(step_checkpoint_path(directory, epoch, position), epoch, position)
    start = time.perf_counter()
    try:
        writer = _write_durably(checkpoint.path, lambda w: torch.save(state, w), progress)
        manifest = {
            "format": FORMAT,
            "file": checkpoint.path.name,
            "epoch": epoch,
            "position": position,
            "bytes": writer.bytes,
            "crc32": f"{writer.crc:08x}",
            "saved_at": time.time(),
            "write_seconds": round(time.perf_counter() - start, 3),
        }
        text = (json.dumps(manifest, indent=1) + "\n").encode()
        _write_durably(checkpoint.manifest_path, lambda w: w.write(text))
    except OSError as e:
        # The .pth may already be in place without its manifest: remove it too.
        checkpoint.path.unlink(missing_ok=True)
        hint = " (disk full)" if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        raise CheckpointWriteError(f"could not write step checkpoint {checkpoint.path}{hint}: {e}") from e
    return checkpoint


def verify_step_checkpoint(
    checkpoint: StepCheckpoint, progress: Optional[Callable[[], None]] = None
) -> Optional[str]:
    """``None`` if the checkpoint is complete and intact, else the reason it is not.
    ``progress()`` is called after each chunk of the CRC re-read (a watchdog's pet)."""
    try:
        manifest = json.loads(checkpoint.manifest_path.read_text())
    except FileNotFoundError:
        return "no manifest (the write did not complete)"
    except (OSError, ValueError) as e:
        return f"unreadable manifest {checkpoint.manifest_path.name}: {e}"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return f"manifest {checkpoint.manifest_path.name} is not a {FORMAT} manifest"
    if (manifest.get("epoch"), manifest.get("position")) != checkpoint.key:
        return f"manifest names epoch/position {manifest.get('epoch')}/{manifest.get('position')}"
    try:
        size = checkpoint.path.stat().st_size
    except OSError as e:
        return f"cannot stat: {e}"
    if size != manifest.get("bytes"):
        return f"size {size} bytes, manifest says {manifest.get('bytes')} (truncated?)"
    crc = 0
    try:
        with open(checkpoint.path, "rb") as f:
            while chunk := f.read(_READ_CHUNK):
                crc = zlib.crc32(chunk, crc)
                if progress is not None:
                    progress()
    except OSError as e:
        return f"cannot read: {e}"
    if f"{crc:08x}" != manifest.get("crc32"):
        return f"CRC-32 {crc:08x}, manifest says {manifest.get('crc32')} (corrupt)"
    return None


def remove_step_checkpoint(checkpoint: StepCheckpoint) -> None:
    checkpoint.manifest_path.unlink(missing_ok=True)
    checkpoint.path.unlink(missing_ok=True)


def remove_temporaries(directory: Path) -> List[Path]:
    """Delete leftovers of interrupted writes (only one process writes here)."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.name.startswith(_TMP_PREFIX):
                entry.unlink(missing_ok=True)
                removed.append(entry)
    return removed


def prune_step_checkpoints(directory: Path, keep: int) -> List[StepCheckpoint]:
    """Keep the ``keep`` newest committed checkpoints (those with a manifest); delete the
    rest, and uncommitted files older than the newest kept one. Returns the deleted."""
    if keep < 1:
        raise ValueError(f"keep must be >= 1, got {keep}")
    checkpoints = list_step_checkpoints(directory)
    committed = [c for c in checkpoints if c.manifest_path.exists()]
    kept = set(c.key for c in committed[:keep])
    removed = []
    for c in checkpoints:
        stale_commit = c.key not in kept and c.manifest_path.exists()
        stale_torn = not c.manifest_path.exists() and bool(kept) and c.key < max(kept)
        if stale_commit or stale_torn:
            remove_step_checkpoint(c)
            removed.append(c)
    return removed


def completed_epochs(epoch_checkpoint: Path) -> int:
    """The number of finished epochs recorded in ESPnet's ``checkpoint.pth`` (its
    reporter's epoch). Memory-maps the file: the tensors are not read. Raises if the
    file is truncated or corrupt."""
    state = torch.load(epoch_checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return int(state["reporter"]["epoch"])


def epoch_checkpoint_reporter(epoch_checkpoint: Path) -> Dict[str, Any]:
    """The reporter state stored in ESPnet's ``checkpoint.pth`` (memory-mapped read)."""
    state = torch.load(epoch_checkpoint, map_location="cpu", weights_only=True, mmap=True)
    return state["reporter"]


@dataclasses.dataclass
class ResumeChoice:
    """Where training resumes. ``checkpoint`` is a step checkpoint, or ``None`` for
    ESPnet's own ``checkpoint.pth`` (``epoch_checkpoint_epoch`` finished epochs) or a
    fresh start (both ``None``). ``skipped`` lists (checkpoint, reason) found invalid."""

    checkpoint: Optional[StepCheckpoint]
    epoch_checkpoint_epoch: Optional[int]
    skipped: List[Tuple[StepCheckpoint, str]]


def choose_resume_point(output_dir: Path, progress: Optional[Callable[[], None]] = None) -> ResumeChoice:
    """The newest valid training state in ``output_dir``.

    A step checkpoint wins when it is later than the epochs finished in ESPnet's
    ``checkpoint.pth``. Invalid step checkpoints (torn, truncated, corrupt) are skipped,
    newest first, and reported in ``skipped``. An unreadable ``checkpoint.pth`` (e.g.
    killed while ESPnet wrote it in place) is passed over for the newest valid step
    checkpoint; with none, :class:`CheckpointError` is raised rather than silently
    restarting from scratch.
    """
    output_dir = Path(output_dir)
    epoch_ckpt = output_dir / "checkpoint.pth"
    finished = None
    epoch_error = None
    if epoch_ckpt.exists():
        try:
            finished = completed_epochs(epoch_ckpt)
        except Exception as e:  # torch reports a torn zip as RuntimeError, others vary
            epoch_error = f"{type(e).__name__}: {e}"
            logging.warning(f"{epoch_ckpt} is unreadable (truncated or corrupt?): {epoch_error}")
    skipped = []
    for checkpoint in list_step_checkpoints(output_dir / STEP_DIR):
        if finished is not None and checkpoint.epoch <= finished:
            break
        reason = verify_step_checkpoint(checkpoint, progress)
        if reason is None:
            return ResumeChoice(checkpoint, finished, skipped)
        logging.warning(f"skipping step checkpoint {checkpoint.path}: {reason}")
        skipped.append((checkpoint, reason))
    if epoch_error is not None:
        raise CheckpointError(
            f"cannot resume: {epoch_ckpt} is unreadable ({epoch_error}) and no valid step "
            f"checkpoint is left in {output_dir / STEP_DIR}; move the file away to start "
            "from scratch"
        )
    return ResumeChoice(None, finished, skipped)


def remove_newer_than(directory: Path, key: Optional[Tuple[int, int]]) -> List[StepCheckpoint]:
    """Delete step checkpoints later than ``key`` (all if ``None``): invalid ones, or
    another training history's, which a later resume must never pick."""
    removed = []
    for checkpoint in list_step_checkpoints(directory):
        if key is None or checkpoint.key > key:
            remove_step_checkpoint(checkpoint)
            removed.append(checkpoint)
    return removed


def load_step_checkpoint(checkpoint: StepCheckpoint, mmap: bool = True) -> Dict[str, Any]:
    """The checkpoint's state, its tensors memory-mapped from the file (``mmap``): pages
    are read when touched, and nothing stays in memory once the references are dropped
    (see :meth:`espnet_ext.train.resume.RunContext.prepare`)."""
    state = torch.load(checkpoint.path, map_location="cpu", weights_only=True, mmap=mmap)
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{checkpoint.path} is not a {FORMAT} checkpoint")
    if (state.get("epoch"), state.get("position")) != checkpoint.key:
        raise CheckpointError(
            f"{checkpoint.path} holds epoch/position {state.get('epoch')}/{state.get('position')}"
        )
    return state


# ---------------------------------------------------------------------------
# Process-local state that a checkpoint must carry besides the model and optimizers.


def capture_rng() -> Dict[str, Any]:
    """Python, NumPy, torch CPU and (if initialized) CUDA generator states."""
    version, py_state, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": [version, torch.tensor(py_state, dtype=torch.int64), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state(),
        "cuda": None,
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = [s.cpu() for s in torch.cuda.get_rng_state_all()]
    return state


def restore_rng(state: Dict[str, Any]) -> None:
    version, py_state, gauss = state["python"]
    random.setstate((version, tuple(int(x) for x in py_state.tolist()), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None:
        if not torch.cuda.is_available():
            logging.warning("the checkpoint has CUDA RNG states but CUDA is not available")
        else:
            torch.cuda.set_rng_state_all(state["cuda"])


def sub_reporter_state(sub_reporter) -> Dict[str, Any]:
    """The statistics an ESPnet ``SubReporter`` collected so far in this epoch, as
    tensors: the epoch summary after a resume then covers the whole epoch."""
    from espnet2.train.reporter import WeightedAverage

    stats = {}
    for key, values in sub_reporter.stats.items():
        weighted = bool(values) and isinstance(values[0], WeightedAverage)
        stats[key] = {
            "weighted": weighted,
            "value": torch.tensor([float(v.value) for v in values], dtype=torch.float64),
            "weight": torch.tensor(
                [float(v.weight) for v in values] if weighted else [], dtype=torch.float64
            ),
        }
    return {"count": sub_reporter.count, "total_count": sub_reporter.total_count, "stats": stats}


def load_sub_reporter_state(sub_reporter, state: Dict[str, Any]) -> None:
    from espnet2.train.reporter import Average, WeightedAverage

    if sub_reporter.count != 0:
        raise CheckpointError(f"sub-reporter already has {sub_reporter.count} steps")
    sub_reporter.count = int(state["count"])
    sub_reporter.total_count = int(state["total_count"])
    sub_reporter.stats.clear()
    for key, entry in state["stats"].items():
        values = entry["value"].tolist()
        if entry["weighted"]:
            restored = [WeightedAverage(v, w) for v, w in zip(values, entry["weight"].tolist())]
        else:
            restored = [Average(v) for v in values]
        sub_reporter.stats[key] = restored
