"""What data preparation does with bad input: one named rule per case.

Every item the preparation finds (an utterance, or a Libri-Light recording) is
either kept or rejected. A kept item may have been repaired by one or more
rules; a rejected item is written to ``DATA/<set>/rejected`` as
``<id or path>\t<rule>[: <detail>]`` and the run carries on. Per set the log
reconciles ``found == kept + rejected`` and counts repairs and rejections by rule.

Rules (``RULES`` below is the table the code and the tests use):

Rejected
  - ``no_audio``: a transcript line, TSV row or wav.scp/segments entry whose
    audio file does not exist (or whose recording is not in wav.scp).
  - ``no_transcript``: an audio file with no transcript line in a labeled set
    (a LibriSpeech-layout subset with no ``*.trans.txt`` at all is unlabeled).
  - ``no_speaker``: an utterance of an existing Kaldi dir missing from utt2spk.
  - ``duplicate_id``: the second and later occurrences of an id.
  - ``bad_id``: an id that cannot be used: whitespace in it, or a LibriSpeech
    id not prefixed by its ``<speaker>-<chapter>-`` folders, or a Libri-Light
    file not at ``<subset>/<speaker>/<book>/<file>.flac``.
  - ``bad_row``: a Common Voice TSV row with the wrong number of columns.
  - ``unsupported_wav_entry``: a wav.scp value that is a command pipe or an
    ark offset, or an audio path with whitespace in it; the feature stage
    reads plain files with soundfile and wav.scp cannot hold spaces.
  - ``empty_audio``: a zero-byte file or a file with zero frames.
  - ``corrupt_audio``: soundfile cannot open the file or (with the default
    full check) cannot decode all of it, or decodes fewer frames than its
    header states, or decodes non-finite samples.
  - ``silent_audio``: every decoded sample is exactly zero (full check only);
    per-utterance feature normalization would divide by zero.
  - ``too_short``: shorter than ``MIN_UTT_SECONDS`` (0.1 s), too short to give
    the feature stage a useful number of 25 ms frames.
  - ``too_long``: longer than ``--max_utt_seconds`` (Libri-Light recordings
    are segmented instead).
  - ``bad_segment``: a segments line whose times are not
    ``0 <= start < end <= recording duration``.
  - ``no_speech``: a Libri-Light recording whose voice activity yields no
    segment of at least ``MIN_SEGMENT_SECONDS``.
  - ``empty_text``: a transcript that is empty after normalization.

Repaired (kept)
  - ``resample``: a sample rate other than 16 kHz. Kept as is; the feature
    stage resamples. ``utt2num_samples`` counts samples at 16 kHz:
    ``floor(frames * 16000 / rate + 0.5)``, the length soxr gives.
  - ``downmix``: more than one channel. Kept; the feature stage averages the
    channels.
  - ``uppercase``: lower-case letters in a transcript are upper-cased.
  - ``punctuation``: punctuation and symbols in a transcript are removed
    (replaced by a space), except apostrophes inside a word; typographic
    apostrophes become ``'``. Digits are kept as they are.
  - ``relative_path``: a relative wav.scp path of an existing Kaldi dir is
    made absolute (relative to the current directory, as Kaldi reads it).
  - ``speaker_prefix``: an utterance id of an existing Kaldi dir that does not
    start with ``<speaker>-`` is renamed ``<speaker>-<utt>`` (Kaldi's sort
    order requirement for utt2spk/spk2utt).
  - ``segment_clipped``: a segment end at most ``SEGMENT_END_TOLERANCE`` past
    the end of its recording, or Kaldi's ``-1`` (to the end), is set to the
    recording duration.
  - ``vad_segment``: a Libri-Light recording cut at voice-activity boundaries
    into segments of at most ``--segment_seconds``.
  - ``fixed_segment``: a Libri-Light recording with no usable voice-activity
    metadata (no .json, unreadable, no ``voice_activity``) cut into equal
    pieces of at most ``--segment_seconds``.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Literal

# Bump when a rule changes what is kept or written: finished sets are redone.
RULES_VERSION = 1

TARGET_RATE = 16000
MIN_UTT_SECONDS = 0.1
MIN_SEGMENT_SECONDS = 0.5
SEGMENT_END_TOLERANCE = 0.05


@dataclass(frozen=True)
class Rule:
    """One bad-input case: ``action`` is what happens to the item."""

    action: Literal["reject", "repair"]
    description: str


RULES: dict[str, Rule] = {
    "no_audio": Rule("reject", "transcript line / TSV row / entry whose audio file does not exist"),
    "no_transcript": Rule("reject", "audio file with no transcript line in a labeled set"),
    "no_speaker": Rule("reject", "utterance missing from utt2spk"),
    "duplicate_id": Rule("reject", "second and later occurrences of an id"),
    "bad_id": Rule("reject", "id with whitespace, or not matching its folder layout"),
    "bad_row": Rule("reject", "TSV row with the wrong number of columns"),
    "unsupported_wav_entry": Rule("reject", "wav.scp value is a pipe, ark offset or path with whitespace"),
    "empty_audio": Rule("reject", "zero-byte file or zero frames"),
    "corrupt_audio": Rule("reject", "cannot be opened or fully decoded"),
    "silent_audio": Rule("reject", "every sample is zero"),
    "too_short": Rule("reject", f"shorter than {MIN_UTT_SECONDS} s"),
    "too_long": Rule("reject", "longer than --max_utt_seconds"),
    "bad_segment": Rule("reject", "segment times outside 0 <= start < end <= duration"),
    "no_speech": Rule("reject", f"no voice-activity segment of {MIN_SEGMENT_SECONDS} s or more"),
    "empty_text": Rule("reject", "transcript empty after normalization"),
    "resample": Rule("repair", "sample rate not 16 kHz: kept, the feature stage resamples"),
    "downmix": Rule("repair", "several channels: kept, the feature stage averages them"),
    "uppercase": Rule("repair", "lower-case transcript upper-cased"),
    "punctuation": Rule("repair", "punctuation removed except word-internal apostrophes"),
    "relative_path": Rule("repair", "relative wav.scp path made absolute"),
    "speaker_prefix": Rule("repair", "utterance id renamed <speaker>-<utt>"),
    "segment_clipped": Rule("repair", "segment end set to the recording duration"),
    "vad_segment": Rule("repair", "long recording cut at voice-activity boundaries"),
    "fixed_segment": Rule("repair", "long recording cut into equal pieces (no usable VAD)"),
}

REJECT_RULES = tuple(k for k, r in RULES.items() if r.action == "reject")
REPAIR_RULES = tuple(k for k, r in RULES.items() if r.action == "repair")

_APOSTROPHES = {"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u0060": "'", "\u00b4": "'"}


def _keep_char(ch: str) -> bool:
    # Letters, combining marks and digits stay; everything else is a separator.
    return unicodedata.category(ch)[0] in ("L", "M", "N")


def normalize_transcript(text: str) -> tuple[str, list[str]]:
    """Normalize a transcript line to upper-case words without punctuation.

    Args:
        text: the raw transcript (without the utterance id).

    Returns:
        (normalized text, names of the repair rules that changed it:
        a subset of ``["uppercase", "punctuation"]``). An empty result means
        the item is rejected with ``empty_text``.
    """
    repairs: list[str] = []
    text = unicodedata.normalize("NFKC", text)
    chars = []
    punct = False
    for ch in text:
        if ch in _APOSTROPHES:
            ch = "'"
            punct = True
        if ch == "'" or _keep_char(ch):
            chars.append(ch)
        elif ch.isspace():
            chars.append(" ")
        else:
            chars.append(" ")
            punct = True
    words = []
    for word in "".join(chars).split():
        stripped = word.strip("'")
        if stripped != word:
            punct = True
        if stripped:
            words.append(stripped)
    joined = " ".join(words)
    upper = joined.upper()
    if upper != joined:
        repairs.append("uppercase")
    if punct:
        repairs.append("punctuation")
    return upper, repairs
