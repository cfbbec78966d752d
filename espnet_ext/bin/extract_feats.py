"""Stage 2: extract the recipe's normalized log-Mel features into kaldi ark/scp.

Usage::

    python -m espnet_ext.bin.extract_feats --data_dir data/<set> --out_dir dump/<set> \\
        [--nj 4] [--chunk_size 200]

Input: a Kaldi data dir with ``wav.scp`` (``<key> <path>``; keyed by recording
when a ``segments`` file ``<utt> <rec> <start> <end>`` (seconds) exists, by
utterance otherwise) and optionally ``text``, ``utt2spk``, ``spk2utt``.

Output in ``--out_dir`` (``--feats_type raw``: the audio instead, as FLAC shards
``data/<d>/audio.<k>.*`` merged into ``wav.scp`` and ``speech_shape``; see
:mod:`espnet_ext.features.extract`):

* ``data/<d>/feats.<k>.ark`` / ``.scp`` / ``.idx`` / ``.done``: chunk k
  (``--chunk_size`` utterances in sorted order), each written to a temporary
  name and renamed; the ``.done`` marker (written last) makes a killed run
  resume with only the unfinished chunks.  Each chunk is a shard of the
  sharded data path (:mod:`espnet_ext.shards.format`): ``.idx`` is its index
  (``<utt>\t<offset>\t<frames>``), and the marker records the ark's size and
  CRC-32.
* ``shards.tsv``: the shard manifest (one row per shard with utterances,
  frames, sizes and checksums) that ``--iterator_type sharded`` reads instead
  of feats.scp/feats_shape; chunks whose utterances were all rejected are left
  out.  For pre-training at scale use ``--chunk_size`` 1000-2000.
* ``feats.scp`` (sorted by utterance id; ark paths as ``--out_dir`` was given,
  so relative paths stay relative to the directory the recipe runs in),
  ``feats_shape`` (``<utt> <T>,80``, ESPnet's shape file), ``rejected``
  (``<utt>\\t<reason>``: unreadable audio, shorter than one 25 ms window, ...),
  ``text``/``utt2spk``/``spk2utt`` copied from the data dir (restricted to the
  written utterances if some were rejected),
* ``.done``: a fingerprint of the inputs (``wav.scp``/``segments`` content,
  feature options).  A re-run with the same fingerprint logs "already done"
  and rewrites nothing.  The fingerprint does not cover the audio files'
  content: delete ``.done`` after replacing audio in place.

The features are :func:`espnet_ext.features.compute_features` (see that
module for the definition and the normalization decision); the extraction is
:func:`espnet_ext.features.extract.run`.  Worker processes import only
numpy/torch/soundfile/kaldiio (never espnet2) and run one torch thread each.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional, Sequence

from espnet_ext.features.extract import UsageError, run
from espnet_ext.utils.cli import setup_logging

log = logging.getLogger("extract_feats")


def get_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Extract normalized 80-dim log-Mel features (kaldi ark/scp).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--data_dir", required=True, help="Kaldi data dir with wav.scp")
    parser.add_argument("--out_dir", required=True, help="output dir (e.g. dump/<set>)")
    parser.add_argument("--nj", type=int, default=4, help="parallel worker processes")
    parser.add_argument("--chunk_size", type=int, default=200, help="utterances per chunk (resume unit)")
    parser.add_argument(
        "--feats_type",
        choices=("fbank", "raw"),
        default="fbank",
        help="fbank: the features (feats.scp); raw: the audio as FLAC shards (wav.scp, "
        "speech_shape), featurized by the model's logmel frontend",
    )
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging()
    try:
        run(args.data_dir, args.out_dir, nj=args.nj, chunk_size=args.chunk_size, feats_type=args.feats_type)
    except UsageError as exc:
        log.error("%s", exc)
        return 2
    except RuntimeError as exc:
        log.error("%s", exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
