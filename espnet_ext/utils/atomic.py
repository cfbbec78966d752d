"""Atomic file writes: a temporary sibling, ``fsync``, then ``os.replace``.

Readers never see a partial file: the target either keeps its old content or has the
new content in full (``os.replace`` is atomic on POSIX).  A failed write removes its
temporary file.  This is the one implementation used by every stage that writes a
result or marker file (data dirs, feature chunks, shard manifests, token lists, LM
text, step checkpoints).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import IO, Iterator, Optional, Union

__all__ = ["atomic_open", "fsync_dir", "tmp_path_for", "write_bytes_atomic", "write_text_atomic"]

PathLike = Union[str, os.PathLike]


def tmp_path_for(path: PathLike) -> Path:
    """The default temporary name of ``path``: ``<name>.tmp`` in the same directory."""
    path = Path(path)
    return path.with_name(path.name + ".tmp")


def fsync_dir(directory: PathLike) -> None:
    """``fsync`` a directory, so a rename in it survives a power loss."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_open(
    path: PathLike,
    mode: str = "w",
    *,
    tmp: Optional[PathLike] = None,
    sync_dir: bool = False,
    buffering: int = -1,
) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; commit it on a clean exit.

    On leaving the block normally the file is flushed, ``fsync``-ed, closed and renamed
    to ``path`` (and with ``sync_dir`` the directory is ``fsync``-ed too).  On an
    exception the temporary file is removed and ``path`` is left untouched.

    Args:
        path: the target file.
        mode: ``"w"`` (text, UTF-8, ``\\n`` line endings) or ``"wb"``.
        tmp: the temporary file (default :func:`tmp_path_for`); callers that clean up
            stale temporaries by name pass their own.
        sync_dir: also ``fsync`` the directory after the rename.
        buffering: passed to :func:`open` (``0``: unbuffered binary).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open: mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    tmp = tmp_path_for(path) if tmp is None else Path(tmp)
    text = {"encoding": "utf-8", "newline": "\n"} if mode == "w" else {}
    try:
        with open(tmp, mode, buffering=buffering, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(path: PathLike, text: str, **kwargs) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w", **kwargs) as f:
        f.write(text)


def write_bytes_atomic(path: PathLike, data: bytes, **kwargs) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "wb", **kwargs) as f:
        f.write(data)
