#!/usr/bin/env python3
"""Synthesize the embedded English read-speech corpus with espeak-ng, in LibriSpeech layout.

    <out>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>-<utt:04d>.flac   16 kHz mono PCM_16
    <out>/<subset>/<speaker>/<chapter>/<speaker>-<chapter>.trans.txt         "<id> UPPER WORDS"
    <out>/SPEAKERS.TXT                                                       LibriSpeech format
    <out>/librispeech-lm-norm.txt.gz  text-only LM corpus, LibriSpeech's format (OpenSLR 11)
    <out>/embedded_corpus.json    written last: parameters, per-subset sizes, speakers

Subsets: unlabeled (self-supervised pre-training; its trans.txt exist only because the
layout has them), train-clean (labeled), dev-clean, test-clean, test-other.

This script only reads the options; the corpus is made by the package next to it,
local/embedded_corpus/ (grammar, plan, synthesis, LM text, files on disk), which enforces
the honesty guarantees (test sentences never in training, test-other voices never heard
in training) checked by tests/test_embedded_corpus.py. Deterministic for a given --seed
and --scale; a complete corpus is not rewritten, an interrupted one resumes.
See local/embedded_corpus.md.

Usage: make_embedded_corpus.py --out DIR [--seed 1] [--scale 1.0] [--nj 2]
Exit status: 0 on success or when the corpus is already complete, 2 on a configuration
problem (the message names the option or directory and the reason).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))
from embedded_corpus import CorpusError, make_corpus  # noqa: E402  (package next to this script)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--out", required=True, type=Path, help="corpus root (LibriSpeech layout)")
    p.add_argument("--seed", type=int, default=1, help="seed of every random choice")
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply all subset sizes (1.0: about 2.7 h in total)"
    )
    p.add_argument("--nj", type=int, default=2, help="parallel synthesis processes")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    problems = []
    if args.seed < 0:
        problems.append(f"--seed must be >= 0, got {args.seed}")
    if not 0 < args.scale <= 20 or math.isnan(args.scale):
        problems.append(f"--scale must be in (0, 20], got {args.scale}")
    if args.nj < 1:
        problems.append(f"--nj must be >= 1, got {args.nj}")
    try:
        if problems:
            raise CorpusError("; ".join(problems))
        return make_corpus(args.out, seed=args.seed, scale=args.scale, nj=args.nj)
    except CorpusError as e:
        print(f"make_embedded_corpus.py: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
