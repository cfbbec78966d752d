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

``validate_data_dir`` follows Kaldi's ``utils/validate_data_dir.sh``; every
problem is reported as ``FILE:LINE: message``.
``combine_data_dirs`` follows Kaldi's ``utils/combine_data.sh``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Optional, Sequence

from espnet_ext.data.audio import num_samples_at_target, segment_num_samples
from espnet_ext.data.rules import SEGMENT_END_TOLERANCE

logger = logging.getLogger(__name__)

CORE_FILES = ("wav.scp", "segments", "text", "utt2spk", "spk2utt", "utt2num_samples", "rejected")
DONE_FILE = ".done"
MAX_REPORTED_ERRORS = 50
_ARK_OFFSET = re.compile(r"\.ark:\d+$")


class DataDirError(ValueError):
    """A data dir is invalid. ``errors`` holds ``FILE:LINE: message`` strings."""

    def __init__(self, errors: Sequence[str]):
        self.errors = list(errors)
        shown = self.errors[:MAX_REPORTED_ERRORS]
        more = len(self.errors) - len(shown)
        super().__init__("\n".join(shown) + (f"\n... and {more} more" if more > 0 else ""))


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


@dataclass(frozen=True)
class DirSummary:
    utterances: int
    speakers: int
    recordings: int
    labeled: bool
    segmented: bool
    hours: float


# ---------------------------------------------------------------- writing


def format_time(seconds: float) -> str:
    """Seconds with up to 7 decimals (exact for any 16 kHz sample index)."""
    s = f"{seconds:.7f}".rstrip("0").rstrip(".")
    return "0" if s in ("", "-0") else s


def atomic_write_text(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` through a temporary file and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as f:
            f.write(content)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def spk2utt_of(utt2spk: dict[str, str]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        out.setdefault(utt2spk[utt], []).append(utt)
    return out


def render_files(d: DataDir) -> dict[str, Optional[str]]:
    """File name -> content (None: the file must not exist)."""

    def table(items: Iterable[tuple[str, str]]) -> str:
        return "".join(f"{k} {v}\n" for k, v in sorted(items))

    files: dict[str, Optional[str]] = {
        "wav.scp": table(d.wav.items()),
        "utt2spk": table(d.utt2spk.items()),
        "spk2utt": table((s, " ".join(u)) for s, u in spk2utt_of(d.utt2spk).items()),
        "utt2num_samples": table((u, str(n)) for u, n in d.utt2num_samples.items()),
        "text": table(d.text.items()) if d.text is not None else None,
        "segments": (
            table((u, f"{s.recording} {format_time(s.start)} {format_time(s.end)}") for u, s in d.segments.items())
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
            atomic_write_text(target, content)
        changed.append(name)
    return changed


def files_digest(path: Path, names: Iterable[str] = CORE_FILES) -> dict[str, Optional[str]]:
    """sha256 of each named file in ``path`` (None when absent)."""
    out = {}
    for name in names:
        p = Path(path) / name
        out[name] = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None
    return out


def read_done(path: Path) -> Optional[dict]:
    p = Path(path) / DONE_FILE
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_done(path: Path, record: dict) -> None:
    atomic_write_text(Path(path) / DONE_FILE, json.dumps(record, indent=1, sort_keys=True) + "\n")


# ---------------------------------------------------------------- reading


@dataclass(frozen=True)
class Entry:
    lineno: int
    key: str
    value: str


def read_entries(path: Path, errors: list[str]) -> list[Entry]:
    """Parse ``<key> <value>`` lines; format problems go to ``errors``."""
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
            errors.append(f"{path / 'utt2spk'}:{e.lineno}: expected '<utt> <speaker>', got '{e.key} {e.value}'")

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
                errors.append(f"{where}: {n} samples, but the segment {seg.start}-{seg.end} s has {expect} at 16 kHz")

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
                errors.append(f"{where}: utterance list of speaker '{e.key}' {what} (not the inverse of utt2spk)")
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
        for utt, (e, seg) in segments.items():
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


def read_data_dir(path: Path | str) -> DataDir:
    """Read a data dir that passes ``validate_data_dir``."""
    path = Path(path)
    validate_data_dir(path)

    def table(name: str) -> Optional[dict[str, str]]:
        p = path / name
        if not p.is_file():
            return None
        errors: list[str] = []
        return {e.key: e.value for e in read_entries(p, errors)}

    segs = table("segments")
    rejected = []
    if (path / "rejected").is_file():
        for line in (path / "rejected").read_text(encoding="utf-8").splitlines():
            i, r = line.split("\t", 1)
            rejected.append((i, r))
    return DataDir(
        wav=table("wav.scp") or {},
        utt2spk=table("utt2spk") or {},
        utt2num_samples={k: int(v) for k, v in (table("utt2num_samples") or {}).items()},
        text=table("text"),
        segments=(
            {u: Segment(v.split()[0], float(v.split()[1]), float(v.split()[2])) for u, v in segs.items()}
            if segs is not None
            else None
        ),
        rejected=rejected,
    )


# ---------------------------------------------------------------- combining


class CombineError(ValueError):
    pass


def combine_data_dirs(sources: Sequence[tuple[str, Path]]) -> DataDir:
    """Merge data dirs like Kaldi's combine_data.sh.

    Utterance ids must be unique across sources (a collision is an error
    naming the id and both sets); a recording id may repeat only for the same
    path. ``text`` is kept only if every source has it. If some sources have
    ``segments``, the others get one whole-recording segment per utterance
    (recording id = utterance id). ``rejected`` lists are concatenated.

    Args:
        sources: (set name, data dir) pairs.

    Returns:
        The combined DataDir.
    """
    dirs = [(name, read_data_dir(p)) for name, p in sources]
    out = DataDir()
    owner: dict[str, str] = {}
    rec_owner: dict[str, str] = {}
    any_segments = any(d.segments is not None for _, d in dirs)
    all_text = all(d.text is not None for _, d in dirs)
    if not all_text:
        lacking = [n for n, d in dirs if d.text is None]
        logger.info("combine: no text in %s, so the combined set has no text", ", ".join(lacking))
    out.text = {} if all_text else None
    out.segments = {} if any_segments else None
    for name, d in dirs:
        for utt in d.utt2spk:
            if utt in owner:
                raise CombineError(f"utterance id '{utt}' is in both set '{owner[utt]}' and set '{name}'")
            owner[utt] = name
        for rec, wav_path in d.wav.items():
            if rec in out.wav and out.wav[rec] != wav_path:
                raise CombineError(
                    f"recording id '{rec}' is in both set '{rec_owner[rec]}' and set '{name}' with different audio"
                )
            out.wav[rec] = wav_path
            rec_owner.setdefault(rec, name)
        out.utt2spk.update(d.utt2spk)
        out.utt2num_samples.update(d.utt2num_samples)
        if out.text is not None:
            out.text.update(d.text or {})
        if out.segments is not None:
            if d.segments is not None:
                out.segments.update(d.segments)
            else:
                for utt, n in d.utt2num_samples.items():
                    out.segments[utt] = Segment(utt, 0.0, n / 16000)
        out.rejected.extend(d.rejected)
    return out
