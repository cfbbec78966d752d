"""Stage 2's inputs: the utterances of a Kaldi data dir, and their fingerprint.

A data dir has ``wav.scp`` (``<key> <path>``; keyed by recording when a ``segments``
file ``<utt> <rec> <start> <end>`` (seconds) exists, by utterance otherwise).  Only
audio files are read (no command pipes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ext.features.logmel import LogMelOptions
from espnet_ext.utils.kaldi_table import iter_rows

__all__ = ["FORMAT_VERSION", "DataDirError", "UsageError", "Utterance", "fingerprint", "read_data_dir"]

FORMAT_VERSION = "espnet_ext.extract_feats/2"  # /2: shards (.idx, shards.tsv)


class UsageError(ValueError):
    """Bad arguments: reported before any work starts."""


class DataDirError(UsageError):
    """The data dir is missing or malformed (reported before any work starts)."""


@dataclasses.dataclass(frozen=True)
class Utterance:
    """One utterance to extract: a file, or a segment of a recording."""

    utt: str
    path: Optional[str]  # None when a segment names a recording missing from wav.scp
    start: Optional[float] = None
    end: Optional[float] = None
    recording: Optional[str] = None


def _read_table(path: Path, n_fields: int) -> List[List[str]]:
    """The rows of a table with exactly ``n_fields`` fields (the last one may hold
    spaces) and unique keys; blank lines are skipped."""
    rows, seen = [], set()
    for row in iter_rows(path):
        fields = [row.key, *row.value.strip().split(maxsplit=n_fields - 2)] if row.value else [row.key]
        if len(fields) < n_fields:
            raise DataDirError(f"{path}:{row.lineno}: malformed line: {row.line.strip()!r}")
        if row.key in seen:
            raise DataDirError(f"{path}:{row.lineno}: duplicate key {row.key!r}")
        seen.add(row.key)
        rows.append(fields)
    return rows


def read_data_dir(data_dir: Path) -> List[Utterance]:
    """Utterances of a data dir, sorted by id.

    Raises:
        DataDirError: missing dir / wav.scp, malformed lines, pipe entries.
    """
    if not data_dir.is_dir():
        raise DataDirError(f"data dir {str(data_dir)!r} does not exist")
    wav_scp = data_dir / "wav.scp"
    if not wav_scp.is_file():
        raise DataDirError(f"{data_dir}: no wav.scp")
    wavs: Dict[str, str] = {}
    for key, value in _read_table(wav_scp, 2):
        value = value.strip()
        if value.endswith("|"):
            raise DataDirError(
                f"{wav_scp}: entry {key!r} is a command pipe ({value!r}); "
                "this stage reads audio files only: give a path"
            )
        wavs[key] = value
    segments = data_dir / "segments"
    if not segments.is_file():
        return [Utterance(utt=k, path=wavs[k]) for k in sorted(wavs)]
    utts = []
    for utt, rec, start, end in _read_table(segments, 4):
        try:
            s, e = float(start), float(end)
        except ValueError:
            raise DataDirError(f"{segments}: {utt!r}: times must be numbers, got {start!r} {end!r}") from None
        if s < 0 or e <= s:
            raise DataDirError(f"{segments}: {utt!r}: need 0 <= start < end, got {s} {e}")
        utts.append(Utterance(utt=utt, path=wavs.get(rec), start=s, end=e, recording=rec))
    return sorted(utts, key=lambda u: u.utt)


def fingerprint(data_dir: Path, options: LogMelOptions) -> str:
    """Hash of what the features depend on: wav.scp, segments, feature options."""
    h = hashlib.sha256(FORMAT_VERSION.encode())
    h.update(json.dumps(dataclasses.asdict(options), sort_keys=True).encode())
    for name in ("wav.scp", "segments"):
        p = data_dir / name
        h.update(f"\n{name}\n".encode())
        h.update(p.read_bytes() if p.is_file() else b"<absent>")
    return h.hexdigest()
