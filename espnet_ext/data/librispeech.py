"""LibriSpeech layout reader.

Layout: ``ROOT/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt>.flac``
with one ``<speaker>-<chapter>.trans.txt`` per chapter folder, lines
``<speaker>-<chapter>-<utt> TRANSCRIPT``. ``ROOT`` also holds SPEAKERS.TXT,
CHAPTERS.TXT, ... which this reader does not need: the speaker id is the
speaker folder. Set ``dev_clean`` is folder ``dev-clean``; any subset folder
works (``unlabeled`` for the recipe's own corpus). A subset with no
``*.trans.txt`` at all is unlabeled (no ``text`` file is written).

Utterance ids are the file stems (``<spk>-<chap>-<utt>``, so the speaker is a
prefix as Kaldi requires). Flagged without audio: ``no_audio`` (transcript
line, no file), ``no_transcript`` (file, no line, in a labeled subset),
``duplicate_id``, ``bad_id`` (id not prefixed by its folders, or whitespace).
"""

from __future__ import annotations

import os
from pathlib import Path

from espnet_ext.data.pipeline import Candidate, Scan
from espnet_ext.utils.kaldi_table import iter_rows


def subset_folder(set_name: str) -> str:
    return set_name.replace("_", "-")


def _subdirs(path: str) -> list[os.DirEntry]:
    return sorted((e for e in os.scandir(path) if e.is_dir()), key=lambda e: e.name)


def scan_librispeech(subset_dir: Path) -> Scan:
    """Read one LibriSpeech subset folder into candidates (no audio decoding)."""
    subset_dir = Path(os.path.abspath(subset_dir))  # keep symlinked paths as given
    listing: list[tuple[str, int, int]] = []
    # id -> (text, where, spk, chap); duplicates kept aside as candidates.
    lines: dict[str, tuple[str, str, str, str]] = {}
    audio: dict[str, tuple[str, str, str]] = {}
    extra: list[Candidate] = []
    n_trans = 0
    for spk in _subdirs(str(subset_dir)):
        for chap in _subdirs(spk.path):
            files = sorted(os.scandir(chap.path), key=lambda e: e.name)
            for f in files:
                if not f.is_file():
                    continue
                if f.name.endswith(".trans.txt") or f.name.endswith(".flac"):
                    st = f.stat()
                    listing.append((os.path.relpath(f.path, subset_dir), st.st_size, st.st_mtime_ns))
                if f.name.endswith(".trans.txt"):
                    n_trans += 1
                    for row in iter_rows(f.path, errors="replace"):
                        utt, text = row.key, row.value.strip()
                        where = f"{f.path}:{row.lineno}"
                        if utt in lines:
                            extra.append(
                                Candidate(
                                    utt,
                                    spk.name,
                                    problem=(
                                        "duplicate_id",
                                        f"transcript line {where} repeats {lines[utt][1]}",
                                    ),
                                )
                            )
                            continue
                        lines[utt] = (text, where, spk.name, chap.name)
                elif f.name.endswith(".flac"):
                    utt = f.name[: -len(".flac")]
                    if utt in audio:
                        extra.append(
                            Candidate(
                                utt, spk.name, problem=("duplicate_id", f"{f.path} repeats {audio[utt][0]}")
                            )
                        )
                        continue
                    audio[utt] = (f.path, spk.name, chap.name)
    labeled = n_trans > 0
    candidates: list[Candidate] = []
    for utt in sorted(set(lines) | set(audio)):
        text, where, spk, chap = lines.get(utt, (None, "", "", ""))
        path = None
        if utt in audio:
            path, spk, chap = audio[utt]
        c = Candidate(utt, spk, path=path, text=text)
        if any(ch.isspace() for ch in utt):
            c.problem = ("bad_id", f"whitespace in id '{utt}'")
        elif not utt.startswith(f"{spk}-{chap}-"):
            c.problem = ("bad_id", f"'{utt}' is in folder {spk}/{chap}: expected '{spk}-{chap}-<n>'")
        elif path is None:
            c.problem = ("no_audio", f"transcript line {where} has no {utt}.flac")
        elif labeled and text is None:
            c.problem = ("no_transcript", f"{path} has no line in {spk}-{chap}.trans.txt")
        candidates.append(c)
    return Scan(candidates + extra, listing, labeled)
