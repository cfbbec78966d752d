"""Stage 1: prepare Kaldi-style data dirs from corpora or existing dirs.

Usage::

    python -m espnet_ext.bin.prepare_data --datadir data --sets "dev_clean ll_small cv_train" \\
        [--combine "pretrain=unlabeled,ll_small"] [--librispeech ROOT] [--librilight ROOT] \\
        [--commonvoice ROOT] [--max_utt_seconds 35] [--segment_seconds 30] [--nj 4] \\
        [--audio_check full|header]

How sets are found, the bad-input rules and the re-run behaviour are described in
:mod:`espnet_ext.data.prepare` (the library this entry point calls).

Exit status: 0 done; 1 some set failed (the others were still prepared);
2 bad configuration (nothing was done).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import asdict
from typing import Optional, Sequence

from espnet_ext.data.prepare import ConfigError, Options, prepare
from espnet_ext.utils.cli import setup_logging

logger = logging.getLogger("espnet_ext.data.prepare")


def get_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.prepare_data",
        description="Prepare Kaldi-style data dirs (stage 1). See espnet_ext.data.prepare for the rules.",
    )
    p.add_argument("--datadir", required=True, help="where DATA/<set> dirs are written")
    p.add_argument(
        "--sets", required=True, help='space-separated set names, e.g. "dev_clean ll_small cv_train"'
    )
    p.add_argument("--combine", default="", help='"dst=a,b dst2=c,d": combine prepared sets')
    p.add_argument("--librispeech", default=None, help="LibriSpeech-layout root (holds dev-clean/, ...)")
    p.add_argument("--librilight", default=None, help="Libri-Light root (holds small/, medium/, ...)")
    p.add_argument("--commonvoice", default=None, help="Common Voice language folder (clips/, *.tsv)")
    p.add_argument("--max_utt_seconds", type=float, default=35.0, help="reject longer utterances")
    p.add_argument("--segment_seconds", type=float, default=30.0, help="Libri-Light segment length limit")
    p.add_argument("--nj", type=int, default=1, help="parallel audio-check processes")
    p.add_argument(
        "--audio_check",
        choices=("full", "header"),
        default="full",
        help="decode every file (full) or read headers",
    )
    p.add_argument(
        "--utt2source",
        action="store_true",
        help="combined sets also get utt2source (<utt> <source set>): stage 2 then cuts each "
        "source into its own shards (needed to mix the sources by weight in pre-training)",
    )
    p.add_argument("--log_level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.log_level)
    options = Options(
        max_utt_seconds=args.max_utt_seconds,
        segment_seconds=args.segment_seconds,
        nj=args.nj,
        audio_check=args.audio_check,
        utt2source=args.utt2source,
    )
    try:
        reports, failures = prepare(
            args.datadir,
            args.sets.split(),
            combine=args.combine,
            librispeech_root=args.librispeech,
            librilight_root=args.librilight,
            commonvoice_root=args.commonvoice,
            options=options,
        )
    except ConfigError as e:
        print(f"prepare: error (nothing was done):\n{e}", file=sys.stderr)
        return 2
    for r in reports:
        logger.info("%s: %s", r.name, json.dumps({k: v for k, v in asdict(r).items() if k != "name"}))
    if failures:
        print(f"prepare: {len(failures)} set(s) failed:\n" + "\n".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
