"""ESPnet's SSL task, fed with pre-extracted log-Mel features.

The stock task collates with ``HuBERTCollateFn``, which crops every utterance of a
training batch to the shortest one with window sizes computed for the wav2vec CNN on raw
audio, and asserts 1-D waveforms. BEST-RQ on log-Mel features needs whole utterances,
zero-padded, with their true lengths (the masking and the loss respect padding), so this
task pads instead and never crops. It trains with the project's trainer
(``espnet_ext.train.trainer``), with the frozen-encoder probe every ``--probe_every_steps``
updates if asked (:mod:`espnet_ext.probe.hook`). Everything else is ESPnet's ``SSLTask``.

Data path: ``--iterator_type sharded`` (and/or ``--valid_iterator_type sharded``) reads
the feature shards stage 2 writes (:mod:`espnet_ext.shards`) instead of
loading the whole shape file and scp index in every rank. The data triple stays
``<dump>/feats.scp,speech,kaldi_ark`` (the manifest ``<dump>/shards.tsv`` is found next
to it; the scp and the shape file are not read). ``batch_type`` ``sorted`` batches by
count (``batch_size``), ``numel``/``length`` by a frame budget (``batch_bins``); both are
global over ranks, as in ESPnet.
"""

import argparse
from typing import Callable, Collection, Dict, List, Tuple

import numpy as np
import torch
from espnet2.tasks.ssl import SSLTask as _StockSSLTask
from espnet2.train.collate_fn import CommonCollateFn

from espnet_ext.probe.hook import add_probe_arguments, probing_trainer
from espnet_ext.tasks.base import ProjectTask
from espnet_ext.train.trainer import Trainer


class SSLTask(ProjectTask, _StockSSLTask):
    trainer = probing_trainer(Trainer)  # + the frozen-encoder probe (--probe_every_steps)

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        add_probe_arguments(parser)

    @classmethod
    def build_collate_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)
