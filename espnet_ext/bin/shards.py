"""Check the feature shards of dump dirs (stage 2's output).

Usage::

    python -m espnet_ext.bin.shards verify [--quick] <dump dir or shards.tsv> [...]
    python -m espnet_ext.bin.shards text --text T --shape S --out_dir D [--shard_size N]

``text`` writes text-only shards (the LM's, stage 3) of a Kaldi text file and its
token counts (``text_shape.bpe``) into ``D`` (skipped when up to date).

Prints every problem as ``<path>: <message>`` and exits 1 if there is any, else prints
``<path>: ok`` per path and exits 0.  Without ``--quick`` every ark is read and its
CRC-32 compared (:func:`espnet_ext.shards.format.verify`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet_ext.shards.format import ShardError, verify
from espnet_ext.shards.text import write_text_shards


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Check the feature shards of dump dirs.")
    parser.add_argument("command", choices=["verify", "text"])
    parser.add_argument("paths", nargs="*", help="verify: dump dirs or their shards.tsv")
    parser.add_argument("--quick", action="store_true", help="sizes and indices only (do not read the arks)")
    parser.add_argument("--text", help="text: Kaldi text file (<utt> <sentence>)")
    parser.add_argument("--shape", help="text: token counts (<utt> <n>), same order")
    parser.add_argument("--out_dir", help="text: where shards.tsv and data/ go")
    parser.add_argument("--shard_size", type=int, default=10000, help="text: lines per shard")
    args = parser.parse_intermixed_args(argv)  # paths may follow --quick
    if args.command == "text":
        if not (args.text and args.shape and args.out_dir) or args.paths:
            parser.error("text needs --text, --shape and --out_dir (and no paths)")
        try:
            path, written = write_text_shards(args.text, args.shape, args.out_dir, shard_size=args.shard_size)
        except (ShardError, OSError) as exc:
            print(f"shards text: error: {exc}", file=sys.stderr)
            return 1
        print(f"{path}: {'written' if written else 'up to date'}")
        return 0
    if not args.paths:
        parser.error("verify needs at least one path")
    bad = 0
    for p in args.paths:
        problems = verify(p, content=not args.quick)
        for msg in problems:
            print(f"{p}: {msg}", file=sys.stderr)
        bad += len(problems)
        if not problems:
            print(f"{p}: ok")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
