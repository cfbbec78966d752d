"""Validate Kaldi-style data dirs (in the spirit of Kaldi's validate_data_dir.sh).

Usage::

    python -m espnet_ext.bin.validate_data DATA/<set> [DATA/<set2> ...] [--check_audio]

Prints one ``FILE:LINE: message`` per problem and exits 1 if any dir is
invalid, else prints a one-line summary per dir and exits 0. The checks are
those of :func:`espnet_ext.data.validate.validate_data_dir`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Optional, Sequence

from espnet_ext.data.validate import DataDirError, validate_data_dir

__all__ = ["main"]


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.validate_data", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("datadirs", nargs="+", help="data dirs to check")
    p.add_argument(
        "--check_audio", action="store_true", help="also open every recording (header) with soundfile"
    )
    p.add_argument(
        "--no_derived", action="store_true", help="do not require spk2utt and utt2num_samples (raw user dirs)"
    )
    args = p.parse_args(argv)
    status = 0
    for d in args.datadirs:
        try:
            s = validate_data_dir(d, check_audio=args.check_audio, require_derived=not args.no_derived)
        except DataDirError as e:
            print(f"{d}: INVALID\n{e}", file=sys.stderr)
            status = 1
            continue
        print(
            f"{d}: OK: {s.utterances} utterances, {s.speakers} speakers, {s.recordings} recordings, "
            f"{s.hours:.2f} h, {'labeled' if s.labeled else 'unlabeled'}{', segmented' if s.segmented else ''}"
        )
    return status


if __name__ == "__main__":
    sys.exit(main())
