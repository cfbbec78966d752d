"""Decoding with CTC-only configurations made fast: ESPnet's ``asr_inference`` (same options,
same output directory layout), with ``Speech2Text`` replaced by
:class:`espnet_ext.decoding.speech2text.FastSpeech2Text`.

    python -m espnet_ext.bin.ctc_inference --config conf/decode_asr_embedded_ctc_lm.yaml \
        --asr_train_config ... --asr_model_file ... --lm_train_config ... --lm_file ... \
        --data_path_and_name_and_type dump/test_clean/feats.scp,speech,kaldi_ark --output_dir D

``ctc_weight: 1.0`` decodes with CTC greedy (``beam_size: 1``, no LM) or the time-synchronous
CTC prefix beam search + LM (:mod:`espnet_ext.decoding.ctc_search`); any other configuration
is ESPnet's search, unchanged. ``--decoder_rescore_weight λ`` (> 0, with ``ctc_weight: 1.0``
and a beam) rescores the prefix search's final beam with the attention decoder. ESPnet's ``inference`` loop builds its model through the
module-level name ``Speech2Text``; this entry point rebinds that name, in this process only,
for the duration of the call (no ESPnet file is changed).
"""

import sys
from unittest import mock

from espnet2.bin import asr_inference as _stock
from espnet2.legacy.utils.cli_utils import get_commandline_args

import espnet_ext  # noqa: F401  (registers the plugins)
from espnet_ext.decoding.speech2text import FastSpeech2Text


def get_parser():
    """ESPnet's ``asr_inference`` parser plus ``--decoder_rescore_weight``."""
    parser = _stock.get_parser()
    parser.add_argument(
        "--decoder_rescore_weight",
        type=float,
        default=0.0,
        help="With ctc_weight 1.0 and a beam: rescore the CTC prefix search's final beam with "
        "the attention decoder, (1 - w) ctc + w att (+ lm_weight lm + penalty len); 0: off",
    )
    return parser


def inference(decoder_rescore_weight: float = 0.0, **kwargs) -> None:
    """ESPnet's ``asr_inference.inference`` with :class:`FastSpeech2Text`."""

    class _Speech2Text(FastSpeech2Text):
        def __init__(self, **kw):
            super().__init__(decoder_rescore_weight=decoder_rescore_weight, **kw)

    with mock.patch.object(_stock, "Speech2Text", _Speech2Text):
        _stock.inference(**kwargs)


def main(cmd=None) -> None:
    print(get_commandline_args(), file=sys.stderr)
    args = get_parser().parse_args(cmd)
    kwargs = vars(args)
    kwargs.pop("config", None)
    inference(**kwargs)


if __name__ == "__main__":
    main()
