"""From found items to a data dir: apply the rules of ``rules.py`` to each item.

A corpus reader (``librispeech.py``, ``librilight.py``, ``commonvoice.py``,
``existing.py``) turns its source into ``Candidate`` items and flags what it
can see without audio (missing files, missing transcripts, duplicate ids).
``apply_rules`` then uses the audio checks and keeps, repairs or rejects each
item, counting by rule.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from espnet_ext.data.audio import AudioInfo, segment_num_samples
from espnet_ext.data.kaldi_dir import DataDir, Segment
from espnet_ext.data.rules import (
    MIN_UTT_SECONDS,
    RULES,
    SEGMENT_END_TOLERANCE,
    TARGET_RATE,
    normalize_transcript,
)


@dataclass
class Candidate:
    """One found item.

    ``id`` is the utterance id (for a Libri-Light recording: the recording id,
    segment ids are made from it). ``recording``/``start``/``end`` are set
    when the item is a segment of a recording (``end`` None: to the end).
    ``problem`` is a (rule, detail) rejection the reader already found;
    ``repairs`` are repairs it already made. A rejected item is listed
    under ``source_id`` (the id the source uses) when set.
    """

    id: str
    spk: Optional[str] = None
    path: Optional[str] = None
    text: Optional[str] = None
    recording: Optional[str] = None
    start: float = 0.0
    end: Optional[float] = None
    problem: Optional[tuple[str, str]] = None
    repairs: tuple[str, ...] = ()
    meta: Any = None
    source_id: Optional[str] = None  # the id in the source, when ``id`` was renamed


# (candidate, audio info) -> (list of (start, end) seconds, repair rule, dropped segment count)
Segmenter = Callable[[Candidate, AudioInfo], tuple[list[tuple[float, float]], str, int]]


@dataclass
class Scan:
    """What a reader found: the items, and the input files for the fingerprint."""

    candidates: list[Candidate]
    listing: list[tuple[str, int, int]]  # (path, size, mtime_ns) of every input file read
    labeled: bool
    segmenter: Optional[Segmenter] = None


@dataclass
class Outcome:
    data: DataDir
    found: int = 0
    kept: int = 0
    rejected: Counter = field(default_factory=Counter)
    repaired: Counter = field(default_factory=Counter)
    segments: int = 0
    segments_dropped: int = 0

    def check(self, label: str) -> None:
        total = sum(self.rejected.values())
        if self.found != self.kept + total:
            raise RuntimeError(
                f"{label}: counts do not reconcile: found {self.found} != kept {self.kept} + rejected {total}"
            )

    def summary(self) -> str:
        def fmt(c: Counter) -> str:
            return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(c.items())) + "}"

        s = (
            f"found {self.found}, kept {self.kept}, repaired {fmt(self.repaired)}, "
            f"rejected {sum(self.rejected.values())} {fmt(self.rejected)}"
        )
        if self.segments:
            s += f"; {self.segments} segments written, {self.segments_dropped} too short dropped"
        return s


def apply_rules(
    candidates: list[Candidate],
    infos: dict[str, AudioInfo],
    *,
    labeled: bool,
    max_utt_seconds: float,
    segmenter: Optional[Segmenter] = None,
) -> Outcome:
    """Keep, repair or reject each candidate.

    Args:
        candidates: the found items.
        infos: audio checks by path (``audio.probe_many``).
        labeled: write a ``text`` file (items must carry a transcript).
        max_utt_seconds: longer utterances are rejected (``too_long``).
        segmenter: cut each recording into segments instead (Libri-Light).

    Returns:
        Outcome with the data dir content and the counts.
    """
    data = DataDir(
        text={} if labeled else None, segments={} if segmenter or _any_segment(candidates) else None
    )
    out = Outcome(data=data)

    def reject(c: Candidate, rule: str, detail: str = "") -> None:
        assert rule in RULES and RULES[rule].action == "reject", rule
        out.rejected[rule] += 1
        data.rejected.append((c.source_id or c.id, f"{rule}: {detail}" if detail else rule))

    for c in candidates:
        out.found += 1
        if c.problem is not None:
            reject(c, *c.problem)
            continue
        if c.path and any(ch.isspace() for ch in c.path):
            reject(c, "unsupported_wav_entry", f"'{c.path}': whitespace in the path (wav.scp cannot hold it)")
            continue
        info = infos.get(c.path) if c.path else None
        if info is None:
            reject(c, "no_audio", f"{c.path}: no such file" if c.path else "no audio file")
            continue
        if not info.ok:
            reject(c, info.rule, info.detail)
            continue
        repairs = list(c.repairs)
        if info.samplerate != TARGET_RATE:
            repairs.append("resample")
        if info.channels > 1:
            repairs.append("downmix")
        if info.duration < MIN_UTT_SECONDS:
            reject(c, "too_short", f"{info.duration:.3f} s")
            continue

        if segmenter is not None:
            cuts, rule, dropped = segmenter(c, info)
            out.segments_dropped += dropped
            if not cuts:
                reject(c, "no_speech", f"{c.path}: no voiced stretch of usable length")
                continue
            repairs.append(rule)
            data.wav[c.id] = c.path
            for k, (start, end) in enumerate(cuts):
                utt = f"{c.id}-{k:04d}"
                data.segments[utt] = Segment(c.id, start, end)
                data.utt2spk[utt] = c.spk
                data.utt2num_samples[utt] = segment_num_samples(start, end)
            out.segments += len(cuts)
            out.kept += 1
            out.repaired.update(set(repairs))
            continue

        if c.recording is not None:
            start, end = c.start, c.end
            if end is None or end < 0 or info.duration < end <= info.duration + SEGMENT_END_TOLERANCE:
                end = info.duration
                repairs.append("segment_clipped")
            if not (0.0 <= start < end <= info.duration):
                reject(c, "bad_segment", f"{start}-{end} s of '{c.recording}' ({info.duration:.3f} s)")
                continue
            duration = end - start
            num_samples = segment_num_samples(start, end)
        else:
            duration, num_samples = info.duration, info.num_samples
        if duration < MIN_UTT_SECONDS or num_samples <= 0:
            reject(c, "too_short", f"{duration:.3f} s")
            continue
        if duration > max_utt_seconds:
            reject(c, "too_long", f"{duration:.1f} s > --max_utt_seconds {max_utt_seconds:g}")
            continue
        if labeled:
            if c.text is None:
                reject(c, "no_transcript")
                continue
            text, text_repairs = normalize_transcript(c.text)
            if not text:
                reject(c, "empty_text", repr(c.text))
                continue
            repairs.extend(text_repairs)
            data.text[c.id] = text
        if c.recording is not None:
            data.wav[c.recording] = c.path
            data.segments[c.id] = Segment(c.recording, start, end)
        else:
            data.wav[c.id] = c.path
        data.utt2spk[c.id] = c.spk
        data.utt2num_samples[c.id] = num_samples
        out.kept += 1
        out.repaired.update(set(repairs))
    if data.segments is not None and not data.segments and not data.utt2spk:
        data.segments = None
    return out


def _any_segment(candidates: list[Candidate]) -> bool:
    return any(c.recording is not None for c in candidates)
