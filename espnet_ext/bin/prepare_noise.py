"""Stage 1 for waveform augmentation: MUSAN noise and RIRS_NOISES room responses as lists.

Usage::

    python -m espnet_ext.bin.prepare_noise --datadir data [--musan DIR] [--rirs DIR] \\
        [--noise_set musan_noise] [--rir_set rirs] [--musan_parts noise]

    python -m espnet_ext.bin.prepare_noise --datadir data --train_opts CONFIG [--check]

Writes ``<datadir>/<noise_set>/{wav.scp,rejected}`` from ``--musan`` and
``<datadir>/<rir_set>/{wav.scp,rejected}`` from ``--rirs`` (each when given), the lists
ESPnet's ``CommonPreprocessor`` reads as ``--noise_scp`` and ``--rir_scp``. Layouts, checks
and reasons: :mod:`espnet_ext.data.augment`.

``--train_opts CONFIG`` prints the training options a fine-tuning config asks for: ``--noise_scp
<datadir>/<noise_set>/wav.scp`` when its ``noise_apply_prob`` is above 0, ``--rir_scp ...``
when its ``rir_apply_prob`` is (ESPnet's defaults, 1.0, apply only when the config says so:
a config without these keys gets no noise and no reverberation); with ``--check`` a missing
list is an error (run stage 1). Exit status 2 names a bad layout or a missing list.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from espnet_ext.data.augment import AugmentSetError, musan_files, rir_files, write_set
from espnet_ext.utils.cli import setup_logging


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m espnet_ext.bin.prepare_noise", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--datadir", type=Path, required=True)
    p.add_argument("--musan", type=Path, default=None, help="MUSAN root (holds noise/, music/, speech/)")
    p.add_argument("--rirs", type=Path, default=None, help="RIRS_NOISES root (holds simulated_rirs/)")
    p.add_argument("--noise_set", default="musan_noise")
    p.add_argument("--rir_set", default="rirs")
    p.add_argument("--musan_parts", default="noise", help="comma-separated: noise, music, speech")
    p.add_argument("--train_opts", type=Path, default=None, help="print the lists CONFIG asks for as options")
    p.add_argument("--check", action="store_true", help="with --train_opts: a missing list is an error")
    args = p.parse_args(argv)
    if args.train_opts is not None:
        return _train_opts(args)
    setup_logging()
    try:
        if args.musan is not None:
            parts = [x for x in args.musan_parts.split(",") if x]
            write_set(musan_files(args.musan, parts), args.datadir / args.noise_set, "noise files")
        if args.rirs is not None:
            write_set(rir_files(args.rirs), args.datadir / args.rir_set, "RIRs")
    except AugmentSetError as e:
        print(f"prepare_noise: error: {e}", file=sys.stderr)
        return 2
    return 0


def _train_opts(args) -> int:
    import yaml

    conf = yaml.safe_load(args.train_opts.read_text(encoding="utf-8")) or {}
    opts = []
    for key, option, name in (
        ("noise_apply_prob", "--noise_scp", args.noise_set),
        ("rir_apply_prob", "--rir_scp", args.rir_set),
    ):
        if float(conf.get(key, 0.0) or 0.0) > 0:
            scp = args.datadir / name / "wav.scp"
            if args.check and not scp.is_file():
                print(f"prepare_noise: error: {args.train_opts} sets {key} > 0 but {scp} is missing: "
                      "run stage 1 (MUSAN / RIRS_NOISES in db.sh; the embedded corpus writes its own)",
                      file=sys.stderr)  # fmt: skip
                return 2
            opts += [option, str(scp)]
    print(" ".join(opts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
