"""ESPnet's SSL task, fed with pre-extracted log-Mel features.

The stock task collates with ``HuBERTCollateFn``, which crops every utterance of a
training batch to the shortest one with window sizes computed for the wav2vec CNN on raw
audio, and asserts 1-D waveforms. BEST-RQ on log-Mel features needs whole utterances,
zero-padded, with their true lengths (the masking and the loss respect padding), so this
task pads instead and never crops. It trains with the project's trainer
(``espnet_ext.train.trainer``), with the frozen-encoder probe every ``--probe_every_steps``
updates if asked (:mod:`espnet_ext.probe.hook`). Everything else is ESPnet's ``SSLTask``.

Data path: ``--iterator_type sharded`` (and/or ``--valid_iterator_type sharded``) reads
the feature shards stage 2 writes (:mod:`espnet_ext.iterators.sharded`) instead of
loading the whole shape file and scp index in every rank. The data triple stays
``<dump>/feats.scp,speech,kaldi_ark`` (the manifest ``<dump>/shards.tsv`` is found next
to it; the scp and the shape file are not read). ``batch_type`` ``sorted`` batches by
count (``batch_size``), ``numel``/``length`` by a frame budget (``batch_bins``); both are
global over ranks, as in ESPnet.
"""

import argparse
import logging
from typing import Callable, Collection, Dict, List, Optional, Tuple

import numpy as np
import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.tasks.ssl import SSLTask as _StockSSLTask
from espnet2.train.collate_fn import CommonCollateFn
from espnet2.train.distributed_utils import DistributedOption
from espnet2.utils.types import int_or_none

from espnet_ext.probe.hook import add_probe_arguments, probing_trainer
from espnet_ext.tasks.launcher import add_launcher_arguments
from espnet_ext.train.trainer import Trainer

SHARDED = "sharded"
_COUNT_BATCH_TYPES = ("sorted",)
_BINS_BATCH_TYPES = ("numel", "length")


def add_sharded_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``sharded`` to the iterator types and the options of that iterator."""
    for option in ("--iterator_type", "--valid_iterator_type"):
        # argparse has no public way to extend an option's choices
        action = parser._option_string_actions[option]
        if SHARDED not in action.choices:
            action.choices = list(action.choices) + [SHARDED]
    group = parser.add_argument_group("sharded iterator (--iterator_type sharded)")
    group.add_argument(
        "--shard_window",
        type=int,
        default=4096,
        help="Utterances per length-bucketing window of a shard stream (index entries "
        "only; features are read per batch)",
    )
    group.add_argument(
        "--shard_streams_per_rank",
        type=int_or_none,
        default=None,
        help="Shard streams per rank (default: max(1, num_workers)); fixes the batch order "
        "independently of num_workers, which must divide it",
    )


def build_sharded_iter_factory(
    args: argparse.Namespace,
    iter_options,
    distributed_option: DistributedOption,
    required_names: Tuple[str, ...],
    mode: str,
) -> AbsIterFactory:
    """A :class:`ShardedIterFactory` from ESPnet's parsed options (checks them first)."""
    from espnet_ext.data.shard_plan import BatchRule
    from espnet_ext.data.shards import ShardManifest
    from espnet_ext.iterators.sharded import ShardedIterFactory

    entries = iter_options.data_path_and_name_and_type
    if len(entries) != 1:
        raise ValueError(
            f"--iterator_type sharded ({mode}): give exactly one data entry (the features, "
            f"e.g. dump/<set>/feats.scp,speech,kaldi_ark), got {len(entries)}: {entries}"
        )
    path, name, _type = entries[0]
    missing = [n for n in required_names if n != name]
    if missing:
        raise ValueError(f"--iterator_type sharded ({mode}): the task needs {missing}, "
                         f"the shards provide only {name!r}")
    if distributed_option.distributed:
        rank, world = distributed_option.dist_rank, distributed_option.dist_world_size
    else:
        rank, world = 0, 1
    if iter_options.batch_type in _COUNT_BATCH_TYPES:
        total, what = iter_options.batch_size, "batch_size"
    elif iter_options.batch_type in _BINS_BATCH_TYPES:
        total, what = iter_options.batch_bins, "batch_bins"
    else:
        raise ValueError(
            f"--iterator_type sharded ({mode}): batch_type must be one of "
            f"{_COUNT_BATCH_TYPES + _BINS_BATCH_TYPES}, got {iter_options.batch_type!r}"
        )
    if total < world:
        raise ValueError(f"--iterator_type sharded ({mode}): {what}={total} is global over "
                         f"ranks and smaller than the {world} ranks")
    if total % world:
        logging.warning(f"{what}={total} is not divisible by {world} ranks: each rank uses "
                        f"{total // world}")
    manifest = ShardManifest.load(path)
    if iter_options.batch_type in _COUNT_BATCH_TYPES:
        rule = BatchRule("count", total // world)
    else:
        per_frame = manifest.feat_dim if iter_options.batch_type == "numel" else 1
        rule = BatchRule("bins", total // world, bins_per_frame=per_frame)
    streams = args.shard_streams_per_rank or max(1, args.num_workers)
    return ShardedIterFactory(
        manifest,
        rule=rule,
        collate_fn=iter_options.collate_fn,
        preprocess_fn=iter_options.preprocess_fn,
        name=name,
        rank=rank,
        world_size=world,
        seed=args.seed,
        shuffle=iter_options.train,
        window=args.shard_window,
        streams_per_rank=streams,
        num_workers=args.num_workers,
        num_iters_per_epoch=iter_options.num_iters_per_epoch,
        pin_memory=args.ngpu > 0,
    )


class SSLTask(_StockSSLTask):
    trainer = probing_trainer(Trainer)  # + the frozen-encoder probe (--probe_every_steps)

    @classmethod
    def add_task_arguments(cls, parser: argparse.ArgumentParser):
        super().add_task_arguments(parser)
        add_launcher_arguments(parser)
        add_probe_arguments(parser)

    @classmethod
    def get_parser(cls):
        parser = super().get_parser()
        add_sharded_arguments(parser)
        return parser

    @classmethod
    def build_iter_factory(
        cls,
        args: argparse.Namespace,
        distributed_option: DistributedOption,
        mode: str,
        kwargs: Optional[dict] = None,
    ) -> AbsIterFactory:
        if mode == "valid" and args.valid_iterator_type is not None:
            iterator_type = args.valid_iterator_type
        else:
            iterator_type = args.iterator_type
        # attention plots (a few utterances on rank 0) keep ESPnet's path
        if iterator_type != SHARDED or mode == "plot_att":
            if iterator_type == SHARDED:
                args = argparse.Namespace(**{**vars(args), "iterator_type": "sequence",
                                             "valid_iterator_type": "sequence"})
            return super().build_iter_factory(args, distributed_option, mode, kwargs)
        iter_options = cls.build_iter_options(args, distributed_option, mode)
        for k, v in (kwargs or {}).items():
            setattr(iter_options, k, v)
        required = cls.required_data_names(train=iter_options.train, inference=False)
        return build_sharded_iter_factory(args, iter_options, distributed_option, required, mode)

    @classmethod
    def build_collate_fn(
        cls, args: argparse.Namespace, train: bool
    ) -> Callable[
        [Collection[Tuple[str, Dict[str, np.ndarray]]]],
        Tuple[List[str], Dict[str, torch.Tensor]],
    ]:
        return CommonCollateFn(float_pad_value=0.0, int_pad_value=-1)
