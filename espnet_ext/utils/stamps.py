"""``.done`` markers: a finished stage leaves a fingerprint of its inputs behind.

A re-run computes the fingerprint again and, when the marker holds the same one, does
nothing.  Two marker formats exist, each with one reader and one writer here:

* a *stamp*: the fingerprint alone, one line of text (tokenizer, LM text, low-resource
  subsets);
* a *record*: a JSON object with a ``"fingerprint"`` key and whatever else the stage
  wants back on a skipped re-run (data preparation, feature extraction and its chunks).

Markers are written atomically (:mod:`espnet_ext.utils.atomic`), after the outputs.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional

from espnet_ext.utils.atomic import PathLike, write_text_atomic

__all__ = [
    "DONE_FILE",
    "json_digest",
    "read_record",
    "read_stamp",
    "record_if_matches",
    "stamp_matches",
    "write_record",
    "write_stamp",
]

DONE_FILE = ".done"


def json_digest(obj: Any, algorithm: str = "sha256") -> str:
    """Hex digest of ``json.dumps(obj, sort_keys=True)`` (UTF-8): a fingerprint of data."""
    return hashlib.new(algorithm, json.dumps(obj, sort_keys=True).encode("utf-8")).hexdigest()


# -- stamps --------------------------------------------------------------------------


def read_stamp(path: PathLike) -> Optional[str]:
    """The fingerprint in a stamp file (white space stripped), or None if absent."""
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None


def stamp_matches(path: PathLike, fingerprint: str) -> bool:
    """Whether the stamp at ``path`` holds ``fingerprint``."""
    return read_stamp(path) == fingerprint


def write_stamp(path: PathLike, fingerprint: str) -> None:
    """Write ``fingerprint`` and a newline to ``path`` atomically."""
    write_text_atomic(path, fingerprint + "\n")


# -- records -------------------------------------------------------------------------


def read_record(path: PathLike) -> Optional[dict]:
    """The JSON object in a record marker, or None if absent, unreadable or not an object."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def record_if_matches(path: PathLike, fingerprint: str) -> Optional[dict]:
    """The record at ``path`` if its ``"fingerprint"`` is ``fingerprint``, else None."""
    record = read_record(path)
    if record is None or record.get("fingerprint") != fingerprint:
        return None
    return record


def write_record(path: PathLike, record: dict) -> None:
    """Write ``record`` as indented, key-sorted JSON to ``path`` atomically."""
    write_text_atomic(path, json.dumps(record, indent=1, sort_keys=True) + "\n")
