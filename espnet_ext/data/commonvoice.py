"""Common Voice layout reader.

Layout: a language folder ``ROOT`` with ``clips/*.mp3`` (usually 48 kHz) and
``<split>.tsv`` files (validated, train, dev, test, other, invalidated, ...),
tab-separated with a header; the columns used are ``client_id``, ``path``
(clip file name) and ``sentence``. Set ``cv_<split>`` reads ``<split>.tsv``.
Fields are read verbatim (no quote processing: sentences contain quotes).

Speaker: ``client_id`` hashed to 12 hex digits (sha1 prefix; stable across
releases and splits, short enough for ids, collision-free in practice for the
~10^5 speakers of the largest languages). Utterance id ``<spk>-<clip stem>``.
Text: ``sentence`` normalized by ``rules.normalize_transcript``. The set is
labeled; the pre-training stage may ignore its text.
Flagged without audio: ``no_audio`` (clip missing), ``bad_row`` (column
count differs from the header), ``duplicate_id`` (same clip listed twice).
"""

from __future__ import annotations

import csv
import hashlib
import os
from pathlib import Path

from espnet_ext.data.pipeline import Candidate, Scan

REQUIRED_COLUMNS = ("client_id", "path", "sentence")


def speaker_id(client_id: str) -> str:
    return hashlib.sha1(client_id.encode("utf-8")).hexdigest()[:12]


def scan_commonvoice(root: Path, split: str) -> Scan:
    """Read ``ROOT/<split>.tsv`` into candidates (no audio decoding)."""
    root = Path(os.path.abspath(root))
    tsv = root / f"{split}.tsv"
    clips = root / "clips"
    st = tsv.stat()
    listing: list[tuple[str, int, int]] = [(tsv.name, st.st_size, st.st_mtime_ns)]
    candidates: list[Candidate] = []
    seen: dict[str, int] = {}
    with open(tsv, encoding="utf-8", newline="") as f:
        reader = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader)
        col = {name: header.index(name) for name in REQUIRED_COLUMNS}
        for row in reader:
            lineno = reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            where = f"{tsv}:{lineno}"
            if len(row) != len(header):
                ident = row[col["path"]] if len(row) > col["path"] and row[col["path"]] else where
                candidates.append(
                    Candidate(
                        ident, problem=("bad_row", f"{where}: {len(row)} columns, header has {len(header)}")
                    )
                )
                continue
            clip = row[col["path"]].strip()
            spk = speaker_id(row[col["client_id"]])
            utt = f"{spk}-{Path(clip).stem}"
            if utt in seen:
                candidates.append(
                    Candidate(utt, spk, problem=("duplicate_id", f"{where} repeats line {seen[utt]}"))
                )
                continue
            seen[utt] = lineno
            if not clip or any(ch.isspace() for ch in clip) or "/" in clip:
                candidates.append(
                    Candidate(utt, spk, problem=("bad_id", f"{where}: unusable clip name '{clip}'"))
                )
                continue
            path = clips / clip
            try:
                cst = os.stat(path)
            except OSError:
                candidates.append(
                    Candidate(utt, spk, problem=("no_audio", f"{where}: {path} does not exist"))
                )
                continue
            listing.append((f"clips/{clip}", cst.st_size, cst.st_mtime_ns))
            candidates.append(Candidate(utt, spk, path=str(path), text=row[col["sentence"]]))
    return Scan(candidates, listing, labeled=True)
