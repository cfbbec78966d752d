"""The one way the embedded corpus writes a file: under a hidden temporary name, then renamed.

Guarantees: a file of the corpus either is absent or has its complete content (``os.replace``
is atomic on one file system), so an interrupted run leaves only temporary files, named
``.<name>.<pid>.tmp`` next to their target; ``remove_stale`` deletes them before a resumed
run writes anything. ``write_text_atomic`` leaves a file whose content is already right
untouched (its mtime too), which is what makes a rerun on a complete corpus a no-op.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable


def tmp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under by this process."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def write_atomic(path: Path, write: Callable[[Path], object]) -> None:
    """Call ``write(tmp)`` to write the whole file under a temporary name, then rename it
    to ``path``."""
    tmp = tmp_path(path)
    write(tmp)
    os.replace(tmp, path)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically, unless the file already holds it."""
    if path.is_file() and path.read_text(encoding="utf-8") == text:
        return  # unchanged: keep the file (and its mtime)
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def remove_stale(root: Path) -> None:
    """Delete the temporary files an interrupted run left anywhere under ``root``."""
    for stale in root.glob("**/.*.tmp"):
        stale.unlink()
