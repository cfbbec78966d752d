"""Make a low-resource training set: a seeded subset of a feature dump, about N minutes long.

    python -m espnet_ext.bin.subset_dump --src dump/train_clean --dst dump/train_10min \
        --minutes 10 --seed 0

Reuses the source's features (the new ``feats.scp`` points into the same archives) and
restricts ``feats_shape``, ``text``, ``utt2spk`` and ``spk2utt`` to the chosen utterances.
Utterances are drawn speaker by speaker in a seeded order (round robin), so the subset keeps
as many speakers as it can; the total is the smallest prefix of that order reaching the
requested duration (frames at 10 ms). A re-run with the same arguments changes nothing.
"""

import argparse
import json
import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional

from espnet_ext.utils.atomic import write_text_atomic
from espnet_ext.utils.kaldi_table import format_table
from espnet_ext.utils.kaldi_table import read_2columns as _read_map
from espnet_ext.utils.stamps import DONE_FILE, stamp_matches, write_stamp


def subset(src: Path, dst: Path, minutes: float, seed: int, frame_shift_s: float = 0.01) -> List[str]:
    for name in ("feats.scp", "feats_shape", "text"):
        if not (src / name).is_file():
            raise FileNotFoundError(f"{src / name}: missing (run stage 2 for this set first)")
    fingerprint = json.dumps(
        {
            "src": str(src.resolve()),
            "minutes": minutes,
            "seed": seed,
            "shape": (src / "feats_shape").stat().st_size,
        }
    )
    done = dst / DONE_FILE
    if stamp_matches(done, fingerprint):
        return (dst / "feats.scp").read_text().split("\n")[:-1]

    feats = _read_map(src / "feats.scp")
    frames = {u: int(s.split(",")[0]) for u, s in _read_map(src / "feats_shape").items()}
    utt2spk = _read_map(src / "utt2spk") if (src / "utt2spk").exists() else {u: u for u in feats}
    by_spk: Dict[str, List[str]] = defaultdict(list)
    for u in sorted(feats):
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
    target = minutes * 60.0
    chosen, total = [], 0.0
    for u in order:
        if total >= target:
            break
        chosen.append(u)
        total += frames[u] * frame_shift_s
    if total < target:
        raise ValueError(f"{src}: only {total / 60:.1f} min available, {minutes} min requested")
    keep = set(chosen)

    dst.mkdir(parents=True, exist_ok=True)
    for name in ("feats.scp", "feats_shape", "text", "utt2spk"):
        if (src / name).exists():
            m = _read_map(src / name)
            write_text_atomic(dst / name, format_table((u, m[u]) for u in keep))
    spk2utt: Dict[str, List[str]] = defaultdict(list)
    for u in sorted(keep):
        spk2utt[utt2spk.get(u, u)].append(u)
    write_text_atomic(dst / "spk2utt", format_table((s, " ".join(us)) for s, us in spk2utt.items()))
    write_stamp(done, fingerprint)
    print(f"{dst}: {len(keep)} utterances, {total / 60:.1f} min, {len(spk2utt)} speakers (from {src})")
    return sorted(keep)


def main(argv: Optional[List[str]] = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--src", type=Path, required=True)
    p.add_argument("--dst", type=Path, required=True)
    p.add_argument("--minutes", type=float, required=True)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    try:
        subset(args.src, args.dst, args.minutes, args.seed)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f"subset_dump: ERROR: {e}")


if __name__ == "__main__":
    main()
