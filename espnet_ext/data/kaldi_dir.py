"""Kaldi-style data directories: read, write atomically, validate, combine.

A data dir holds (one ``<key> <value>`` line each, sorted by key in C-locale
order, keys unique):

- ``wav.scp``: ``<recording> <absolute audio path>`` (plain files, no pipes);
- ``segments`` (optional): ``<utt> <recording> <start s> <end s>``; without
  it, recording ids are utterance ids;
- ``text`` (labeled sets only): ``<utt> <TRANSCRIPT>``;
- ``utt2spk``, ``spk2utt`` (its inverse);
- ``utt2num_samples``: ``<utt> <samples at 16 kHz>`` (``audio.py`` defines the
  count: ``floor(frames * 16000 / rate + 0.5)`` as soxr resamples, or for a
  segment ``r(end * 16000) - r(start * 16000)`` with r rounding half up);
- ``rejected``: ``<id or path>\t<rule>[: <detail>]`` (see ``rules.py``).

This module holds the content model (:class:`DataDir`) and writes it;
``validate.py`` checks a dir (Kaldi's ``utils/validate_data_dir.sh``) and
``combine.py`` reads validated dirs back and merges them (Kaldi's
``utils/combine_data.sh``).
"""

from __future__ import annotations

import hashlib
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional

from espnet_ext.utils.atomic import write_text_atomic
from espnet_ext.utils.kaldi_table import format_table

CORE_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2num_samples", "rejected")


@dataclass
class Segment:
    recording: str
    start: float
    end: float


@dataclass
class DataDir:
    """The content of a data dir, keyed as in the files."""

    wav: dict[str, str] = field(default_factory=dict)
    utt2spk: dict[str, str] = field(default_factory=dict)
    utt2num_samples: dict[str, int] = field(default_factory=dict)
    text: Optional[dict[str, str]] = None
    segments: Optional[dict[str, Segment]] = None
    rejected: list[tuple[str, str]] = field(default_factory=list)

    @property
    def utts(self) -> list[str]:
        return sorted(self.utt2spk)


# ---------------------------------------------------------------- writing


def format_time(seconds: float) -> str:
    """Seconds with up to 7 decimals (exact for any 16 kHz sample index)."""
    s = f"{seconds:.7f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def spk2utt_of(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return out


def render_files(d: DataDir) -> dict[str, Optional[str]]:
    """File name -> content (None: the file must not exist)."""

    files: dict[str, Optional[str]] = {
        "wav.scp": format_table(d.wav.items()),
        "utt2spk": format_table(d.utt2spk.items()),
        "spk2utt": format_table((s, " ".join(u)) for s, u in spk2utt_of(d.utt2spk).items()),
        "utt2num_samples": format_table((u, str(n)) for u, n in d.utt2num_samples.items()),
        "text": format_table(d.text.items()) if d.text is not None else None,
        "segments": (
            format_table(
                (u, f"{s.recording} {format_time(s.start)} {format_time(s.end)}")
                for u, s in d.segments.items()
            )
            if d.segments is not None
            else None
        ),
        "rejected": "".join(f"{i}\t{r}\n" for i, r in sorted(set(d.rejected))),
    }
    return files


def write_data_dir(d: DataDir, path: Path, *, backup_dir: Optional[Path] = None) -> list[str]:
    """Write ``d`` into ``path``; only files whose content changes are rewritten.

    Args:
        d: the content.
        path: the data dir (created if missing).
        backup_dir: if given, an existing file is copied there (once: an
            earlier backup is never overwritten) before it is changed or removed.

    Returns:
        Names of the files written or removed.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    changed = []
    for name, content in render_files(d).items():
        target = path / name
        old = target.read_text(encoding="utf-8") if target.exists() else None
        if old == content:
            continue
        if old is not None and backup_dir is not None:
            backup_dir.mkdir(parents=True, exist_ok=True)
            if not (backup_dir / name).exists():
                shutil.copy2(target, backup_dir / name)
        if content is None:
            target.unlink()
        else:
            write_text_atomic(target, content)
        changed.append(name)
    return changed


def files_digest(path: Path, names: Iterable[str] = CORE_FILES) -> dict[str, Optional[str]]:
    """sha256 of each named file in ``path`` (None when absent)."""
    out = {}
    for name in names:
        p = Path(path) / name
        out[name] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out
