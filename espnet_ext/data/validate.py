"""Validate Kaldi-style data dirs, like Kaldi's ``utils/validate_data_dir.sh``.

Every problem is reported as ``FILE:LINE: message`` (see :func:`validate_data_dir`);
the command line is ``python -m espnet_ext.bin.validate_data``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data.audio import num_samples_at_target, segment_num_samples
from espnet_ext.data.kaldi_dir import Segment, spk2utt_of
from espnet_ext.data.rules import SEGMENT_END_TOLERANCE
from espnet_ext.utils.kaldi_table import Entry, read_entries

__all__ = ["DataDirError", "DirSummary", "MAX_REPORTED_ERRORS", "validate_data_dir", "wav_entry_problem"]

MAX_REPORTED_ERRORS = 50
_ARK_OFFSET = re.compile(r"\.ark:\d+$")


class DataDirError(ValueError):
    """A data dir is invalid. ``errors`` holds ``FILE:LINE: message`` strings."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        shown = self.errors[:MAX_REPORTED_ERRORS]
        more = len(self.errors) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


@dataclass(frozen=True)
class DirSummary:
    utterances: int
    speakers: int
    recordings: int
    labeled: bool
    segmented: bool
    hours: float


def _check_sorted_unique(path: Path, entries: list[Entry], errors: list[str]) -> None:
    prev = None
    for e in entries:
        if prev is not None:
            if e.key == prev:
                errors.append(f"{path}:{e.lineno}: duplicate id '{e.key}'")
            elif e.key < prev:
                errors.append(f"{path}:{e.lineno}: not sorted: '{e.key}' after '{prev}' (C locale order)")
                return
        prev = e.key


def wav_entry_problem(value: str) -> Optional[str]:
    """Why a wav.scp value is not a plain file path, or None."""
    v = value.strip()
    if not v:
        return "no path"
    if v.endswith("|") or v.startswith("|"):
        return "command pipe"
    if _ARK_OFFSET.search(v):
        return "ark offset"
    if any(ch.isspace() for ch in v):
        return "path with whitespace"
    return None


def validate_data_dir(
    path: Path | str,
    *,
    check_audio: bool = False,
    require_derived: bool = True,
) -> DirSummary:
    """Check a data dir like Kaldi's validate_data_dir.sh.

    Checks: required files present; every file's ids sorted (C locale) and
    unique; the utterance sets of utt2spk, text, utt2num_samples and segments
    (or wav.scp) identical; spk2utt the inverse of utt2spk and utt2spk sorted
    by speaker too; no empty transcript; segment times ``0 <= start < end``
    on recordings present in wav.scp; utt2num_samples positive (and matching
    the segment length); wav.scp paths absolute plain files that exist.
    With ``check_audio`` each recording's header is read too: utt2num_samples
    of unsegmented utterances and segment ends must fit the audio.

    Args:
        path: the data dir.
        check_audio: also open every recording with soundfile.
        require_derived: spk2utt and utt2num_samples must exist.

    Returns:
        DirSummary of the dir.

    Raises:
        DataDirError: listing each problem as ``FILE:LINE: message``.
    """
    path = Path(path)
    errors: list[str] = []
    if not path.is_dir():
        raise DataDirError([f"{path}: not a directory"])
    required = ["wav.scp", "utt2spk"] + (["spk2utt", "utt2num_samples"] if require_derived else [])
    missing = [n for n in required if not (path / n).is_file()]
    if missing:
        raise DataDirError([f"{path / n}: missing" for n in missing])

    tables: dict[str, list[Entry]] = {}
    for name in ("wav.scp", "utt2spk", "spk2utt", "utt2num_samples", "text", "segments"):
        p = path / name
        if p.is_file():
            tables[name] = read_entries(p, errors)
            _check_sorted_unique(p, tables[name], errors)

    wav = {e.key: e for e in tables["wav.scp"]}
    for e in tables["wav.scp"]:
        where = f"{path / 'wav.scp'}:{e.lineno}"
        problem = wav_entry_problem(e.value)
        if problem:
            errors.append(f"{where}: '{e.value}' is a {problem}, not a plain audio file path")
        elif not os.path.isabs(e.value):
            errors.append(f"{where}: path '{e.value}' is not absolute")
        elif not os.path.isfile(e.value):
            errors.append(f"{where}: audio file '{e.value}' does not exist")

    utt2spk = {e.key: e for e in tables["utt2spk"]}
    if not utt2spk:
        errors.append(f"{path / 'utt2spk'}:1: no utterances")
    for e in tables["utt2spk"]:
        if not e.value or len(e.value.split()) != 1:
            errors.append(
                f"{path / 'utt2spk'}:{e.lineno}: expected '<utt> <speaker>', got '{e.key} {e.value}'"
            )

    segments: dict[str, tuple[Entry, Segment]] = {}
    if "segments" in tables:
        for e in tables["segments"]:
            where = f"{path / 'segments'}:{e.lineno}"
            fields = e.value.split()
            if len(fields) != 3:
                errors.append(f"{where}: expected '<utt> <recording> <start> <end>'")
                continue
            try:
                start, end = float(fields[1]), float(fields[2])
            except ValueError:
                errors.append(f"{where}: start/end are not numbers: '{fields[1]} {fields[2]}'")
                continue
            if not (0.0 <= start < end):
                errors.append(f"{where}: bad times: need 0 <= start < end, got {fields[1]} {fields[2]}")
            if fields[0] not in wav:
                errors.append(f"{where}: recording '{fields[0]}' is not in wav.scp")
            segments[e.key] = (e, Segment(fields[0], start, end))

    if "text" in tables:
        for e in tables["text"]:
            if not e.value:
                errors.append(f"{path / 'text'}:{e.lineno}: empty transcript for '{e.key}'")

    num_samples: dict[str, int] = {}
    for e in tables.get("utt2num_samples", []):
        where = f"{path / 'utt2num_samples'}:{e.lineno}"
        try:
            n = int(e.value)
        except ValueError:
            errors.append(f"{where}: '{e.value}' is not an integer")
            continue
        if n <= 0:
            errors.append(f"{where}: sample count must be positive, got {n}")
        num_samples[e.key] = n
        if e.key in segments:
            seg = segments[e.key][1]
            expect = segment_num_samples(seg.start, seg.end)
            if n != expect:
                errors.append(
                    f"{where}: {n} samples, but the segment {seg.start}-{seg.end} s has {expect} at 16 kHz"
                )

    # The utterance sets must agree (utt2spk is the reference).
    per_utt = ["text", "utt2num_samples", "segments" if "segments" in tables else "wav.scp"]
    for name in per_utt:
        if name not in tables:
            continue
        keys = {e.key for e in tables[name]}
        for e in tables[name]:
            if e.key not in utt2spk:
                errors.append(f"{path / name}:{e.lineno}: utterance '{e.key}' is not in utt2spk")
        for e in tables["utt2spk"]:
            if e.key not in keys:
                errors.append(f"{path / 'utt2spk'}:{e.lineno}: utterance '{e.key}' has no entry in {name}")

    # Kaldi also needs utt2spk sorted by speaker: speaker ids prefix utt ids.
    prev_spk = None
    for e in tables["utt2spk"]:
        if prev_spk is not None and e.value < prev_spk:
            errors.append(
                f"{path / 'utt2spk'}:{e.lineno}: speaker '{e.value}' after '{prev_spk}': utt2spk is not sorted by "
                "speaker as well as by utterance (make the speaker id a prefix of the utterance id)"
            )
            break
        prev_spk = e.value

    if "spk2utt" in tables:
        expected = spk2utt_of({e.key: e.value for e in tables["utt2spk"]})
        seen = set()
        for e in tables["spk2utt"]:
            where = f"{path / 'spk2utt'}:{e.lineno}"
            seen.add(e.key)
            utts = e.value.split()
            if e.key not in expected:
                errors.append(f"{where}: speaker '{e.key}' has no utterance in utt2spk")
            elif utts != expected[e.key]:
                diff = sorted(set(utts) ^ set(expected[e.key]))
                what = f"differs in {diff[:3]}" if diff else "is not sorted"
                errors.append(
                    f"{where}: utterance list of speaker '{e.key}' {what} (not the inverse of utt2spk)"
                )
        for e in tables["utt2spk"]:
            if e.value not in seen:
                errors.append(f"{path / 'utt2spk'}:{e.lineno}: speaker '{e.value}' is missing from spk2utt")
                seen.add(e.value)

    rejected = path / "rejected"
    if rejected.is_file():
        for lineno, line in enumerate(rejected.read_text(encoding="utf-8").splitlines(), 1):
            parts = line.split("\t")
            if len(parts) < 2 or not parts[0] or not parts[1]:
                errors.append(f"{rejected}:{lineno}: expected '<id>\\t<reason>'")

    if check_audio and not errors:
        _check_audio(path, tables, segments, num_samples, errors)

    if errors:
        raise DataDirError(errors)
    total = sum(num_samples.values())
    return DirSummary(
        utterances=len(utt2spk),
        speakers=len({e.value for e in tables["utt2spk"]}),
        recordings=len(wav),
        labeled="text" in tables,
        segmented="segments" in tables,
        hours=total / 16000 / 3600,
    )


def _check_audio(path, tables, segments, num_samples, errors) -> None:
    import soundfile

    infos = {}
    for e in tables["wav.scp"]:
        try:
            infos[e.key] = soundfile.info(e.value)
        except Exception as ex:
            errors.append(f"{path / 'wav.scp'}:{e.lineno}: cannot open '{e.value}': {ex}")
    lines = {e.key: e.lineno for e in tables.get("utt2num_samples", [])}
    if segments:
        for _utt, (e, seg) in segments.items():
            info = infos.get(seg.recording)
            if info is not None and seg.end > info.duration + SEGMENT_END_TOLERANCE:
                errors.append(
                    f"{path / 'segments'}:{e.lineno}: segment ends at {seg.end} s, after the end of "
                    f"'{seg.recording}' ({info.duration:.3f} s)"
                )
    else:
        for utt, info in infos.items():
            if utt in num_samples:
                expect = num_samples_at_target(info.frames, info.samplerate)
                if num_samples[utt] != expect:
                    errors.append(
                        f"{path / 'utt2num_samples'}:{lines[utt]}: {num_samples[utt]} samples, but the audio has "
                        f"{expect} at 16 kHz"
                    )
