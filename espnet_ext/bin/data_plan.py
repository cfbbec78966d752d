"""Print the stage-2 data plan for a number of hours (:mod:`espnet_ext.distributed.data_plan`).

python -m espnet_ext.bin.data_plan --hours 600000 --chunk_size 1000
"""

import argparse
import sys
from typing import Optional, Sequence

from espnet_ext.distributed.data_plan import data_plan, plan_lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m espnet_ext.bin.data_plan", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    ap.add_argument("--hours", type=float, required=True)
    ap.add_argument("--chunk_size", type=int, default=200)
    ap.add_argument("--mean_utt_seconds", type=float, default=15.0)
    args = ap.parse_args(argv)
    try:
        print("\n".join(plan_lines(data_plan(args.hours, args.chunk_size, args.mean_utt_seconds))))
    except ValueError as e:
        print(f"data_plan: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
