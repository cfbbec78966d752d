"""Make a low-resource training set: a seeded subset of a data dir, about N minutes long.

    python -m espnet_ext.bin.subset_data --src data/train_clean \\
        --shape dump/train_clean/speech_shape --dst data/train_clean_10min --minutes 10 --seed 0

Writes a Kaldi data dir ``--dst`` (``wav.scp``, ``segments`` if the source has one,
``text``, ``utt2spk``, ``spk2utt``, ``utt2num_samples``) restricted to the chosen
utterances; stage 2 then writes its shards like any other set's, so the sharded iterator
reads the subset as it reads the full set. The durations and the utterances available
come from stage 2's shape file of the source (``speech_shape``: samples, or
``feats_shape``: 10 ms frames), so utterances stage 2 rejected are never chosen.
Utterances are drawn speaker by speaker in a seeded order (round robin), so the subset
keeps as many speakers as it can; the total is the smallest prefix of that order
reaching the requested duration. A re-run with the same arguments changes nothing.
"""

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ext.shards.format import shape_seconds
from espnet_ext.utils.atomic import write_text_atomic
from espnet_ext.utils.kaldi_table import format_table
from espnet_ext.utils.kaldi_table import read_2columns as _read_map
from espnet_ext.utils.stamps import DONE_FILE, stamp_matches, write_stamp

_PER_UTT = ("text", "utt2spk", "utt2num_samples", "segments")


def _speaker_round_robin(utts: List[str], utt2spk: Dict[str, str], seed: int) -> List[str]:
    by_spk: Dict[str, List[str]] = defaultdict(list)
    for u in sorted(utts):
        by_spk[utt2spk.get(u, u)].append(u)
    rng = random.Random(seed)
    speakers = sorted(by_spk)
    rng.shuffle(speakers)
    for s in speakers:
        rng.shuffle(by_spk[s])
    order = []
    while any(by_spk[s] for s in speakers):
        for s in speakers:
            if by_spk[s]:
                order.append(by_spk[s].pop())
    return order


def subset(src: Path, shape: Path, dst: Path, minutes: float, seed: int) -> List[str]:
    """Write the subset data dir; returns its utterances (sorted)."""
    for path in (src / "wav.scp", src / "text", shape):
        if not path.is_file():
            raise FileNotFoundError(f"{path}: missing (run stages 1-2 for this set first)")
    fingerprint = json.dumps(
        {
            "src": str(src.resolve()),
            "shape": [str(shape.resolve()), shape.stat().st_size],
            "minutes": minutes,
            "seed": seed,
        }
    )
    done = dst / DONE_FILE
    if stamp_matches(done, fingerprint):
        return sorted(_read_map(dst / "text"))

    seconds = shape_seconds(str(shape))
    text = _read_map(src / "text")
    missing = sorted(u for u in seconds if u not in text)
    if missing:
        raise ValueError(
            f"{shape}: {len(missing)} utterances have no transcript in {src / 'text'}, e.g. {missing[0]}"
        )
    utt2spk = _read_map(src / "utt2spk") if (src / "utt2spk").exists() else {}
    chosen, total = [], 0.0
    for u in _speaker_round_robin(list(seconds), utt2spk, seed):
        if total >= minutes * 60.0:
            break
        chosen.append(u)
        total += seconds[u]
    if total < minutes * 60.0:
        raise ValueError(f"{shape}: only {total / 60:.1f} min available, {minutes} min requested")
    keep = set(chosen)

    dst.mkdir(parents=True, exist_ok=True)
    for name in _PER_UTT:
        if (src / name).exists():
            m = _read_map(src / name)
            write_text_atomic(dst / name, format_table((u, m[u]) for u in keep))
    # wav.scp: keyed by recording with segments, by utterance without
    recordings = (
        {_read_map(src / "segments")[u].split()[0] for u in keep} if (src / "segments").exists() else keep
    )
    wav = _read_map(src / "wav.scp")
    write_text_atomic(dst / "wav.scp", format_table((r, wav[r]) for r in recordings))
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    for u in sorted(keep):
        spk2utt[utt2spk.get(u, u)].append(u)
    write_text_atomic(dst / "spk2utt", format_table((s, " ".join(us)) for s, us in spk2utt.items()))
    write_stamp(done, fingerprint)
    print(f"{dst}: {len(keep)} utterances, {total / 60:.1f} min, {len(spk2utt)} speakers (from {src})")
    return sorted(keep)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True, help="the source Kaldi data dir")
    p.add_argument(
        "--shape", type=Path, required=True, help="stage 2's shape file of it (speech_shape or feats_shape)"
    )
    p.add_argument("--dst", type=Path, required=True, help="the subset's Kaldi data dir")
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        subset(args.src, args.shape, args.dst, args.minutes, args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"subset_data: ERROR: {e}")


if __name__ == "__main__":
    main()
