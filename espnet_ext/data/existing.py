"""Reader for a data dir that already exists in ``DATA/<set>`` (the user's own
Kaldi-style data, e.g. a podcast collection, or a set prepared before).

It needs ``wav.scp`` and ``utt2spk``; ``text`` (labeled) and ``segments`` are
optional. ``spk2utt`` and ``utt2num_samples`` are derived files: they are
always (re)computed, since a user's ``utt2num_samples`` may count samples at
another rate. The same rules as for corpora apply (see ``rules.py``); each
file this stage changes is first copied to ``DATA/<set>/.orig/`` (once), so
the user's originals stay available.

Items are the utterance ids found in utt2spk, text and segments (or wav.scp).
Flagged without audio: ``duplicate_id`` (an id on two lines of one file),
``no_speaker``, ``no_audio`` (no wav.scp entry / segments line),
``no_transcript``, ``unsupported_wav_entry`` (pipe, ark offset),
``bad_segment`` (unparsable segments line). Repairs: ``relative_path``
(made absolute against the current directory, as Kaldi reads it),
``speaker_prefix`` (only when utt2spk is not also sorted by speaker: ids
lacking the ``<speaker>-`` prefix get it).
"""

from __future__ import annotations

import os
from pathlib import Path

from espnet_ext.data.pipeline import Candidate, Scan
from espnet_ext.data.validate import wav_entry_problem
from espnet_ext.utils.kaldi_table import Entry, read_entries


class ExistingDirError(ValueError):
    pass


def _table(path: Path) -> tuple[dict[str, Entry], dict[str, str]]:
    """First entry per key, and 'file:line' of each duplicated key."""
    first: dict[str, Entry] = {}
    dups: dict[str, str] = {}
    errors: list[str] = []
    for e in read_entries(path, errors):
        if e.key in first:
            dups.setdefault(e.key, f"{path}:{e.lineno} repeats line {first[e.key].lineno}")
        else:
            first[e.key] = e
    fatal = [m for m in errors if "whitespace" not in m and "carriage" not in m]
    if fatal:
        raise ExistingDirError("\n".join(fatal))
    return first, dups


def audio_paths(d: Path) -> list[str]:
    """The audio paths wav.scp names (for the fingerprint)."""
    wav, _ = _table(Path(d) / "wav.scp")
    return sorted({os.path.abspath(e.value) for e in wav.values() if not wav_entry_problem(e.value)})


def scan_existing(d: Path) -> Scan:
    """Read ``d`` into candidates.

    Raises:
        ExistingDirError: a file cannot be parsed (not UTF-8, empty lines),
            naming FILE:LINE.
    """
    d = Path(d)
    wav, wav_dups = _table(d / "wav.scp")
    utt2spk, spk_dups = _table(d / "utt2spk")
    labeled = (d / "text").is_file()
    text, text_dups = _table(d / "text") if labeled else ({}, {})
    segmented = (d / "segments").is_file()
    segments, seg_dups = _table(d / "segments") if segmented else ({}, {})
    dups = (
        {**wav_dups, **spk_dups, **text_dups, **seg_dups}
        if not segmented
        else {**spk_dups, **text_dups, **seg_dups}
    )

    utts = set(utt2spk) | set(text) | (set(segments) if segmented else set(wav))
    ordered = sorted(utts)
    prefix_needed = False
    prev = None
    for utt in ordered:
        if utt in utt2spk:
            spk = utt2spk[utt].value
            if prev is not None and spk < prev:
                prefix_needed = True
                break
            prev = spk

    candidates: list[Candidate] = []
    for utt in ordered:
        c = Candidate(utt)
        repairs: list[str] = []
        spk_entry = utt2spk.get(utt)
        c.spk = spk_entry.value.split()[0] if spk_entry and spk_entry.value else None
        if labeled and utt in text:
            c.text = text[utt].value
        if utt in dups:
            c.problem = ("duplicate_id", dups[utt])
        elif c.spk is None:
            c.problem = ("no_speaker", f"'{utt}' has no speaker in {d / 'utt2spk'}")
        elif labeled and utt not in text:
            c.problem = ("no_transcript", f"'{utt}' has no line in {d / 'text'}")
        if segmented:
            seg = segments.get(utt)
            fields = seg.value.split() if seg else []
            if c.problem is None:
                if seg is None:
                    c.problem = ("no_audio", f"'{utt}' has no line in {d / 'segments'}")
                elif len(fields) != 3:
                    c.problem = (
                        "bad_segment",
                        f"{d / 'segments'}:{seg.lineno}: expected '<utt> <rec> <start> <end>'",
                    )
                else:
                    try:
                        c.recording, c.start, c.end = fields[0], float(fields[1]), float(fields[2])
                    except ValueError:
                        c.problem = ("bad_segment", f"{d / 'segments'}:{seg.lineno}: times are not numbers")
                    if c.problem is None and c.recording in wav_dups:
                        c.problem = ("duplicate_id", wav_dups[c.recording])
            rec = fields[0] if fields else None
        else:
            rec = utt
        if c.problem is None:
            entry = wav.get(rec)
            if entry is None:
                c.problem = ("no_audio", f"recording '{rec}' is not in {d / 'wav.scp'}")
            elif wav_entry_problem(entry.value):
                c.problem = (
                    "unsupported_wav_entry",
                    f"{d / 'wav.scp'}:{entry.lineno}: {wav_entry_problem(entry.value)} '{entry.value}'",
                )
            else:
                c.path = entry.value
                if not os.path.isabs(c.path):
                    c.path = os.path.abspath(c.path)
                    repairs.append("relative_path")
        if prefix_needed and c.spk is not None and utt != c.spk and not utt.startswith(c.spk + "-"):
            c.id, c.source_id = f"{c.spk}-{utt}", utt
            repairs.append("speaker_prefix")
        c.repairs = tuple(repairs)
        candidates.append(c)
    # A renamed id may now clash with an existing one: reject the renamed one.
    ids: dict[str, Candidate] = {}
    for c in sorted(candidates, key=lambda c: "speaker_prefix" in c.repairs):
        if c.id in ids and c.problem is None:
            c.problem = ("duplicate_id", f"'{c.id}' (renamed with its speaker prefix) already exists")
        ids.setdefault(c.id, c)
    # The fingerprint of an existing dir is taken over its files after the
    # rules ran (prepare.py), so no input listing is needed here.
    return Scan(candidates, [], labeled=labeled)
