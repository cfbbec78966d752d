#!/usr/bin/env python3
"""Write the embedded corpus's augmentation sets: non-speech noise in MUSAN's layout and
simulated room impulse responses in RIRS_NOISES' layout (local/embedded_corpus/noise.py).

Usage: make_embedded_noise.py --out DIR [--seed 0]
Stage 1 then prepares <out>/musan and <out>/RIRS_NOISES like the real sets. Deterministic
for a given --seed; a complete set is not rewritten.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_corpus.noise import make_noise_sets  # noqa: E402  (package next to this script)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="corpus root")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice")
    args = p.parse_args(argv)
    if args.seed < 0:
        print(f"make_embedded_noise.py: error: --seed must be >= 0, got {args.seed}", file=sys.stderr)
        return 2
    s = make_noise_sets(args.out, seed=args.seed)
    print(
        f"make_embedded_noise.py: {s['noise_files']} noise files ({s['noise_seconds']:.0f} s) in "
        f"{args.out}/musan, {s['rirs']} RIRs (RT60 {min(s['rt60_s']):.2f}-{max(s['rt60_s']):.2f} s) "
        f"in {args.out}/RIRS_NOISES"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
