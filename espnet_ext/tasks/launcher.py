"""Options that only the launcher reads (:mod:`espnet_ext.distributed.launch`).

``espnet_ext.bin.launch`` reads them from the training command and its YAML config to check
the launch geometry; the trainer never does. ESPnet's parser must still accept them, since
the configs carry them and ESPnet parses the same command. Every task adds them with
:func:`add_launcher_arguments`.
"""

import argparse

from espnet2.utils.types import int_or_none, str2bool


def add_launcher_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("espnet_ext launcher (read by espnet_ext.bin.launch)")
    group.add_argument(
        "--global_batch_utts",
        type=int_or_none,
        default=None,
        help="The global batch (utterances per optimizer update, all ranks) this config "
        "intends; the launcher stops when ranks x batch x accum_grad would differ",
    )
    group.add_argument(
        "--micro_batch_per_rank",
        type=int_or_none,
        default=None,
        help="Utterances per rank per micro-batch the config is sized for (accelerator "
        "memory); the launcher stops when batch_size / ranks would differ",
    )
    group.add_argument(
        "--accept_global_batch",
        type=str2bool,
        default=False,
        help="Launch even when the launch geometry changes --global_batch_utts",
    )
