"""ESPnet's SSL task, fed with pre-extracted log-Mel features.

The stock task collates with ``HuBERTCollateFn``, which crops every utterance of a
training batch to the shortest one with window sizes computed for the wav2vec CNN on raw
audio, and asserts 1-D waveforms. BEST-RQ on log-Mel features needs whole utterances,
zero-padded, with their true lengths (the masking and the loss respect padding), so this
task pads instead and never crops. It trains with the project's trainer
(``espnet_ext.train.trainer``). Everything else is ESPnet's ``SSLTask``.
"""

import argparse
from typing import Callable, Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet2.tasks.ssl import SSLTask as _StockSSLTask
from espnet2.train.collate_fn import CommonCollateFn

from espnet_ext.train.trainer import Trainer


class SSLTask(_StockSSLTask):
    trainer = Trainer

    @classmethod
    def build_collate_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)
