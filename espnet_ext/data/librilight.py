"""Libri-Light layout reader and segmenter (unlabeled audio).

Layout: ``ROOT/<subset>/<speaker>/<book>/<file>.flac``, each with
``<file>.json`` next to it (Libri-Light's metadata; its ``voice_activity``
is a list of ``[start_s, end_s]`` voiced stretches). Set ``ll_<subset>``
reads ``ROOT/<subset>`` (e.g. ``ll_small``). No ``text`` is written.

Files last many minutes, so each recording is cut into segments of at most
``--segment_seconds`` and written as a Kaldi ``segments`` file, with
``wav.scp`` keyed by recording id ``<speaker>-<book>-<file stem>`` and
utterance ids ``<recording>-<NNNN>`` (speaker first, as Kaldi requires).
Characters other than ``[A-Za-z0-9._-]`` in ids become ``_``.

Cutting (Libri-Light, Kahn et al. 2020, sec. 3.1, ships voice activity for
this purpose):
  1. voiced stretches are clipped to the file, sorted and merged where they
     overlap; a stretch longer than the limit is split into equal pieces;
  2. consecutive stretches are packed greedily while the span from the first
     start to the last end stays within the limit, so cuts fall in silences;
  3. each segment is widened by up to 0.1 s of silence on each side (never
     past the midpoint of the gap to its neighbour or the limit) and rounded
     inward to milliseconds;
  4. segments shorter than ``MIN_SEGMENT_SECONDS`` (isolated blips) are dropped
     and counted; a recording left with none is rejected ``no_speech``.
Without usable voice activity (no .json, unreadable, no ``voice_activity``
list with a valid stretch) the recording is cut into equal pieces of at most
the limit (rule ``fixed_segment``).
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import Optional

from espnet_ext.data.audio import AudioInfo
from espnet_ext.data.pipeline import Candidate, Scan
from espnet_ext.data.rules import MIN_SEGMENT_SECONDS

PAD_SECONDS = 0.1
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def safe_id(text: str) -> str:
    return _UNSAFE.sub("_", text)


def load_voice_activity(json_path: str) -> tuple[Optional[list[tuple[float, float]]], str]:
    """The ``voice_activity`` list of a Libri-Light .json, or (None, why not)."""
    if not os.path.isfile(json_path):
        return None, "no .json metadata"
    try:
        with open(json_path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        return None, f"unreadable .json: {' '.join(str(e).split())}"
    vad = meta.get("voice_activity") if isinstance(meta, dict) else None
    if not isinstance(vad, list):
        return None, "no voice_activity list in .json"
    out = []
    for item in vad:
        if (
            isinstance(item, (list, tuple))
            and len(item) == 2
            and all(isinstance(x, (int, float)) and math.isfinite(x) for x in item)
        ):
            out.append((float(item[0]), float(item[1])))
    if not out:
        return None, "voice_activity has no valid [start, end] pair"
    return out, ""


def _ms_floor(t: float) -> float:
    return math.floor(round(t * 1000, 6)) / 1000


def _ms_ceil(t: float) -> float:
    return math.ceil(round(t * 1000, 6)) / 1000


def fixed_cuts(duration: float, max_seconds: float) -> list[tuple[float, float]]:
    """Equal pieces of at most ``max_seconds`` covering ``[0, duration]``."""
    n = max(1, math.ceil(duration / max_seconds - 1e-9))
    while True:
        bounds = [_ms_floor(i * duration / n) for i in range(n)] + [_ms_floor(duration)]
        cuts = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        if all(b - a <= max_seconds + 1e-9 for a, b in cuts):
            return cuts
        n += 1


def vad_cuts(
    duration: float,
    voice_activity: list[tuple[float, float]],
    max_seconds: float,
    *,
    pad: float = PAD_SECONDS,
    min_seconds: float = MIN_SEGMENT_SECONDS,
) -> tuple[list[tuple[float, float]], int]:
    """Cut a recording at voice-activity boundaries (see the module docstring).

    Returns:
        (segments as (start, end) seconds, number of too-short segments dropped)
    """
    stretches = sorted((max(0.0, s), min(duration, e)) for s, e in voice_activity)
    merged: list[list[float]] = []
    for s, e in stretches:
        if e <= s:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    pieces: list[tuple[float, float]] = []
    for s, e in merged:
        n = max(1, math.ceil((e - s) / max_seconds - 1e-9))
        step = (e - s) / n
        pieces.extend((s + i * step, s + (i + 1) * step) for i in range(n))
    packed: list[tuple[float, float]] = []
    for s, e in pieces:
        if packed and e - packed[-1][0] <= max_seconds:
            packed[-1] = (packed[-1][0], e)
        else:
            packed.append((s, e))
    out = []
    dropped = 0
    for i, (s, e) in enumerate(packed):
        lo = (packed[i - 1][1] + s) / 2 if i > 0 else 0.0
        hi = (e + packed[i + 1][0]) / 2 if i + 1 < len(packed) else duration
        p = max(0.0, min(pad, (max_seconds - (e - s)) / 2))
        start, end = _ms_ceil(max(lo, s - p)), _ms_floor(min(hi, e + p))
        if end - start < min_seconds:
            dropped += 1
            continue
        out.append((start, end))
    return out, dropped


def make_segmenter(max_seconds: float):
    """A ``pipeline.Segmenter`` using each candidate's voice activity (``meta``)."""

    def segment(c: Candidate, info: AudioInfo) -> tuple[list[tuple[float, float]], str, int]:
        vad, _why = c.meta if c.meta is not None else (None, "")
        if vad is not None:
            cuts, dropped = vad_cuts(info.duration, vad, max_seconds)
            if cuts or dropped:
                return cuts, "vad_segment", dropped
        return fixed_cuts(info.duration, max_seconds), "fixed_segment", 0

    return segment


def scan_librilight(subset_dir: Path, *, segment_seconds: float) -> Scan:
    """Read one Libri-Light subset folder into recording candidates."""
    subset_dir = Path(os.path.abspath(subset_dir))  # keep symlinked paths as given
    listing: list[tuple[str, int, int]] = []
    candidates: list[Candidate] = []
    seen: dict[str, str] = {}
    for root, dirs, files in os.walk(subset_dir):
        dirs.sort()
        for name in sorted(files):
            if not (name.endswith(".flac") or name.endswith(".json")):
                continue
            path = os.path.join(root, name)
            st = os.stat(path)
            rel = os.path.relpath(path, subset_dir)
            listing.append((rel, st.st_size, st.st_mtime_ns))
            if not name.endswith(".flac"):
                continue
            parts = Path(rel).parts
            stem = name[: -len(".flac")]
            if len(parts) != 3:
                candidates.append(
                    Candidate(
                        safe_id(rel), problem=("bad_id", f"{path} is not at <speaker>/<book>/<file>.flac")
                    )
                )
                continue
            spk, book = safe_id(parts[0]), safe_id(parts[1])
            rec = f"{spk}-{book}-{safe_id(stem)}"
            if rec in seen:
                candidates.append(
                    Candidate(rec, spk, problem=("duplicate_id", f"{path} and {seen[rec]} map to '{rec}'"))
                )
                continue
            seen[rec] = path
            meta = load_voice_activity(os.path.join(root, stem + ".json"))
            candidates.append(Candidate(rec, spk, path=path, meta=meta))
    return Scan(candidates, listing, labeled=False, segmenter=make_segmenter(segment_seconds))


# ---------------------------------------------------------------------------
# The limited-supervision sets (Libri-Light's librispeech_finetuning)
# ---------------------------------------------------------------------------

#: Libri-Light's labeled low-resource sets (Kahn et al. 2020, sec. 3.3), as named sets:
#: folders of ``LIBRILIGHT/librispeech_finetuning`` in LibriSpeech layout
#: (``<spk>/<chapter>/*.flac`` + ``<spk>-<chapter>.trans.txt``). 10 min is the first of the
#: six 10-minute splits of 1h; 10 h is 1h plus 9h, so ll_10min < ll_1h < ll_10h.
FINETUNING_DIR = "librispeech_finetuning"
_ONE_HOUR = [f"1h/{i}/{kind}" for i in range(6) for kind in ("clean", "other")]
FINETUNING_SETS = {
    "ll_10min": ["1h/0/clean", "1h/0/other"],
    "ll_1h": _ONE_HOUR,
    "ll_10h": _ONE_HOUR + ["9h/clean", "9h/other"],
}


def finetuning_folders(root: Path, set_name: str) -> tuple[list[Path], list[Path]]:
    """``(folders of the set, those missing)`` under ``root/librispeech_finetuning``."""
    folders = [Path(root) / FINETUNING_DIR / f for f in FINETUNING_SETS[set_name]]
    return folders, [f for f in folders if not f.is_dir()]


def scan_finetuning(root: Path, set_name: str) -> Scan:
    """One limited-supervision set: its folders read as LibriSpeech subsets and merged
    (an utterance id in two folders is rejected ``duplicate_id``, naming both)."""
    from espnet_ext.data.librispeech import scan_librispeech

    base = Path(os.path.abspath(root)) / FINETUNING_DIR
    candidates: list[Candidate] = []
    listing: list[tuple[str, int, int]] = []
    where: dict[str, str] = {}
    for rel in FINETUNING_SETS[set_name]:
        scan = scan_librispeech(base / rel)
        if not scan.labeled:
            candidates.append(
                Candidate(
                    safe_id(rel),
                    problem=(
                        "no_transcript",
                        f"{base / rel} has no *.trans.txt (not a librispeech_finetuning folder?)",
                    ),
                )
            )
        listing += [(f"{rel}/{p}", size, mtime) for p, size, mtime in scan.listing]
        for c in scan.candidates:
            if c.problem is None and c.id in where:
                c.problem = ("duplicate_id", f"{c.path} repeats {where[c.id]}")
            elif c.problem is None:
                where[c.id] = c.path or rel
            candidates.append(c)
    return Scan(candidates, listing, labeled=True)
