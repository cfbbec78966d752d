"""Read validated Kaldi-style data dirs back, and merge them like Kaldi's
``utils/combine_data.sh``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data.kaldi_dir import DataDir, Segment
from espnet_ext.data.validate import validate_data_dir
from espnet_ext.utils.kaldi_table import read_entries, read_rejected

__all__ = ["CombineError", "combine_data_dirs", "read_data_dir"]

logger = logging.getLogger(__name__)


def read_data_dir(path: Path | str) -> DataDir:
    """Read a data dir that passes ``validate_data_dir``."""
    path = Path(path)
    validate_data_dir(path)

    def table(name: str) -> Optional[dict[str, str]]:
        p = path / name
        return {e.key: e.value for e in read_entries(p)} if p.is_file() else None

    segs = table("segments")
    rejected = read_rejected(path / "rejected") if (path / "rejected").is_file() else []
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
