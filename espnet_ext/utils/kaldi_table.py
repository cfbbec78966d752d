"""Kaldi-style tables: ``<key> <value>`` per line (wav.scp, text, utt2spk, feats.scp, ...).

One module reads and formats them for every stage:

* :func:`iter_rows`: the rows of a table as the stages read them (line number, key,
  the rest of the line), optionally gzipped; the callers decide what is an error and
  say so in their own words;
* :func:`read_2columns`: a plain ``{key: value}`` dict, ESPnet's own reader
  (``espnet2.fileio.read_text.read_2columns_text``: a duplicated key is an error);
* :func:`read_entries`: the strict reader of the data dir validator, which reports
  every format problem as ``FILE:LINE: message``;
* :func:`read_keys`, :func:`read_rejected`, :func:`format_table`.

espnet2 is imported only when :func:`read_2columns` is called (stage 2 must not
import it).
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Dict, Iterable, Iterator, List, Optional, Tuple

from espnet_ext.utils.atomic import PathLike

__all__ = [
    "Entry",
    "Row",
    "format_table",
    "iter_rows",
    "open_text",
    "read_2columns",
    "read_entries",
    "read_keys",
    "read_rejected",
]


def open_text(path: PathLike, errors: str = "strict") -> IO[str]:
    """Open a UTF-8 text file for reading, gunzipping a ``.gz`` one."""
    if Path(path).suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8", errors=errors)
    return open(path, encoding="utf-8", errors=errors)


@dataclass(frozen=True)
class Row:
    """One line of a table.

    Attributes:
        lineno: 1-based line number.
        key: the first field ("" on a blank line).
        value: the rest of the line after the white space that follows the key, as it
            stands (trailing white space kept; "" when the line has one field).
        line: the line without its newline.
    """

    lineno: int
    key: str
    value: str
    line: str


def iter_rows(path: PathLike, *, skip_blank: bool = True, errors: str = "strict") -> Iterator[Row]:
    """The rows of a table (``.gz`` allowed).

    Args:
        path: the table.
        skip_blank: leave out lines that are empty or white space only (else they
            come as rows with an empty key).
        errors: how undecodable bytes are handled (see :func:`open`).
    """
    with open_text(path, errors=errors) as f:
        for lineno, raw in enumerate(f, 1):
            line = raw.rstrip("\n")
            parts = line.split(maxsplit=1)
            if not parts:
                if not skip_blank:
                    yield Row(lineno, "", "", line)
                continue
            yield Row(lineno, parts[0], parts[1] if len(parts) > 1 else "", line)


def read_keys(path: PathLike) -> List[str]:
    """The keys of a table in file order (blank lines skipped)."""
    return [row.key for row in iter_rows(path)]


def read_2columns(path: PathLike) -> Dict[str, str]:
    """``{key: value}`` of a table, with ESPnet's reader (a duplicated key is an error)."""
    from espnet2.fileio.read_text import read_2columns_text

    return read_2columns_text(path)


def format_table(items: Iterable[Tuple[str, str]], *, sort: bool = True) -> str:
    """``<key> <value>`` lines (sorted by key in C-locale order unless ``sort`` is False)."""
    rows = sorted(items) if sort else items
    return "".join(f"{k} {v}\n" for k, v in rows)


def read_rejected(path: PathLike) -> List[Tuple[str, str]]:
    """The ``(id, reason)`` pairs of a ``rejected`` file (``<id>\\t<reason>`` lines;
    lines without a tab are left out)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if "\t" in line:
            item, reason = line.split("\t", 1)
            out.append((item, reason))
    return out


@dataclass(frozen=True)
class Entry:
    """A line of a data dir file, as the validator reads it (value stripped)."""

    lineno: int
    key: str
    value: str


def read_entries(path: PathLike, errors: Optional[List[str]] = None) -> List[Entry]:
    """Parse ``<key> <value>`` lines strictly; format problems go to ``errors``.

    Reported (as ``FILE:LINE: message``): invalid UTF-8, a Windows line ending, an
    empty line, a line starting with white space.  Lines that cannot be decoded or are
    empty are left out; the others are returned.
    """
    errors = [] if errors is None else errors
    entries = []
    with open(path, "rb") as f:
        for lineno, raw in enumerate(f, 1):
            where = f"{path}:{lineno}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                errors.append(f"{where}: not valid UTF-8 ({e.reason})")
                continue
            line = line.rstrip("\n")
            if line.endswith("\r"):
                errors.append(f"{where}: Windows line ending (carriage return)")
                line = line.rstrip("\r")
            if not line.strip():
                errors.append(f"{where}: empty line")
                continue
            if line[0].isspace():
                errors.append(f"{where}: line starts with whitespace")
            parts = line.split(maxsplit=1)
            entries.append(Entry(lineno, parts[0], parts[1].strip() if len(parts) > 1 else ""))
    return entries
