"""Check the feature shards of dump dirs (stage 2's output).

Usage::

    python -m espnet_ext.bin.shards verify [--quick] <dump dir or shards.tsv> [...]

Prints every problem as ``<path>: <message>`` and exits 1 if there is any, else prints
``<path>: ok`` per path and exits 0.  Without ``--quick`` every ark is read and its
CRC-32 compared (:func:`espnet_ext.shards.format.verify`).
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet_ext.shards.format import verify


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Check the feature shards of dump dirs.")
    parser.add_argument("command", choices=["verify"])
    parser.add_argument("paths", nargs="+", help="dump dirs or their shards.tsv")
    parser.add_argument("--quick", action="store_true",
                        help="sizes and indices only (do not read the arks)")
    args = parser.parse_args(argv)
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
