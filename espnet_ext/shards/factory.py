"""The task side of ``--iterator_type sharded``: options, checks, and the mixin that
the SSL, ASR and LM tasks share.

Data entries (``--*_data_path_and_name_and_type``), as the recipe passes them for
either iterator type; the manifest ``shards.tsv`` is found next to the file:

* pre-training: ``<dump>/feats.scp,speech,kaldi_ark`` (feature shards);
* fine-tuning: that, plus ``<dump>/text,text,text`` (the transcripts stage 2 keeps in
  the same shards; the text file itself is not read);
* the LM: ``<lm_data>/text,text,text`` (text-only shards: stage 3 writes them with
  ``python -m espnet_ext.bin.shards text``).

``batch_type`` ``sorted`` batches by count (``batch_size``), ``numel``/``length`` by a
budget (``batch_bins``: frames x feature dim / frames, or tokens for text shards); both
are global over ranks, as in ESPnet. ``--shard_source_weights "a:0.5 b:0.3 c:0.2"`` or
``--shard_source_temperature T`` mix the sources of a combined set by weight (training
only; :mod:`espnet_ext.shards.plan`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Optional, Tuple

from espnet2.iterators.abs_iter_factory import AbsIterFactory
from espnet2.train.distributed_utils import DistributedOption
from espnet2.utils.types import float_or_none, int_or_none, str_or_none

SHARDED = "sharded"
_COUNT_BATCH_TYPES = ("sorted",)
_BINS_BATCH_TYPES = ("numel", "length")
_FEATURE_TYPES = ("kaldi_ark",)
_TEXT_TYPES = ("text",)


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
    group.add_argument(
        "--shard_source_weights",
        type=str_or_none,
        default=None,
        help='Training: mix the sources of a combined set by weight, e.g. "ll_large:0.5 '
        'cv_validated:0.3 podcasts:0.2" (every source once; weights are normalized)',
    )
    group.add_argument(
        "--shard_source_temperature",
        type=float_or_none,
        default=None,
        help="Training: mix the sources with shares proportional to hours^(1/T)",
    )


def _rank_world(distributed_option: DistributedOption) -> Tuple[int, int]:
    if distributed_option.distributed:
        return distributed_option.dist_rank, distributed_option.dist_world_size
    return 0, 1


def _split_entries(entries, required_names, mode):
    """(features entry or None, text entry or None) from the data entries."""
    where = f"--iterator_type sharded ({mode})"
    feats = [e for e in entries if e[2] in _FEATURE_TYPES]
    texts = [e for e in entries if e[2] in _TEXT_TYPES]
    other = [e for e in entries if e not in feats and e not in texts]
    if other or len(feats) > 1 or len(texts) > 1 or not entries:
        raise ValueError(
            f"{where}: give the features (e.g. dump/<set>/feats.scp,speech,kaldi_ark), "
            f"the transcripts (dump/<set>/text,text,text), or both; got {entries}"
        )
    feat = feats[0] if feats else None
    text = texts[0] if texts else None
    given = [e[1] for e in (feat, text) if e is not None]
    missing = [n for n in required_names if n not in given]
    if missing:
        raise ValueError(f"{where}: the task needs {missing}, the shards provide only {given}")
    return feat, text


def build_sharded_iter_factory(
    args: argparse.Namespace,
    iter_options,
    distributed_option: DistributedOption,
    required_names: Tuple[str, ...],
    mode: str,
) -> AbsIterFactory:
    """A :class:`ShardedIterFactory` from ESPnet's parsed options (checks them first)."""
    from espnet_ext.shards.format import ShardManifest, find_manifest
    from espnet_ext.shards.iterator import ShardedIterFactory
    from espnet_ext.shards.plan import BatchRule, parse_source_weights, source_mix

    where = f"--iterator_type sharded ({mode})"
    feat, text = _split_entries(iter_options.data_path_and_name_and_type, required_names, mode)
    rank, world = _rank_world(distributed_option)
    if iter_options.batch_type in _COUNT_BATCH_TYPES:
        total, what = iter_options.batch_size, "batch_size"
    elif iter_options.batch_type in _BINS_BATCH_TYPES:
        total, what = iter_options.batch_bins, "batch_bins"
    else:
        raise ValueError(
            f"{where}: batch_type must be one of "
            f"{_COUNT_BATCH_TYPES + _BINS_BATCH_TYPES}, got {iter_options.batch_type!r}"
        )
    if total < world:
        raise ValueError(f"{where}: {what}={total} is global over ranks and smaller than the {world} ranks")
    if total % world:
        logging.warning(f"{what}={total} is not divisible by {world} ranks: each rank uses {total // world}")
    path = (feat or text)[0]
    if feat is not None and text is not None and find_manifest(text[0]) != find_manifest(feat[0]):
        raise ValueError(
            f"{where}: the transcripts {text[0]} are not those of the feature "
            f"shards {find_manifest(feat[0])} (give <dump>/<set>/text of the same set)"
        )
    manifest = ShardManifest.load(path)
    if iter_options.batch_type in _COUNT_BATCH_TYPES:
        rule = BatchRule("count", total // world)
    else:
        per_frame = manifest.feat_dim if iter_options.batch_type == "numel" and feat else 1
        rule = BatchRule("bins", total // world, bins_per_frame=per_frame)
    mix = None
    weights = getattr(args, "shard_source_weights", None)
    temperature = getattr(args, "shard_source_temperature", None)
    if iter_options.train and (weights or temperature is not None):
        if manifest.sources is None:
            raise ValueError(
                f"{where}: source weights or temperature need a set combined per source "
                f"(utt2source in stage 1, shards per source in stage 2); {manifest.path} has "
                "no source column: re-run stages 1-2 with weighted --pretrain_sources"
            )
        hours = [h for h in _source_hours(manifest)]
        mix = source_mix(
            manifest.sources,
            hours,
            weights=parse_source_weights(weights) if weights else None,
            temperature=temperature if not weights else None,
        )
        if weights and temperature is not None:
            raise ValueError(f"{where}: give source weights or a source temperature, not both")
        logging.info(
            "sharded iterator: source shares %s",
            ", ".join(f"{n} {p:.3f}" for n, p in zip(mix.names, mix.probs)),
        )
    streams = args.shard_streams_per_rank or max(1, args.num_workers)
    return ShardedIterFactory(
        manifest,
        rule=rule,
        collate_fn=iter_options.collate_fn,
        preprocess_fn=iter_options.preprocess_fn,
        name=feat[1] if feat else None,
        text_name=text[1] if text else None,
        mix=mix,
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


def _source_hours(manifest):
    import numpy as np

    from espnet_ext.shards.iterator import FRAME_SHIFT_S

    per = np.bincount(manifest.source, weights=manifest.frames, minlength=len(manifest.sources))
    return per * FRAME_SHIFT_S / 3600


class ShardedTaskMixin:
    """``--iterator_type sharded`` for an ESPnet task: ``class T(ShardedTaskMixin, Stock)``.

    Attention plots (a few utterances on rank 0) keep ESPnet's iterator.
    """

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
        if iterator_type != SHARDED or mode == "plot_att":
            if SHARDED in (args.iterator_type, args.valid_iterator_type):
                stock = {
                    k: ("sequence" if getattr(args, k) == SHARDED else getattr(args, k))
                    for k in ("iterator_type", "valid_iterator_type")
                }
                args = argparse.Namespace(**{**vars(args), **stock})
            return super().build_iter_factory(args, distributed_option, mode, kwargs)
        iter_options = cls.build_iter_options(args, distributed_option, mode)
        for k, v in (kwargs or {}).items():
            setattr(iter_options, k, v)
        required = cls.required_data_names(train=iter_options.train, inference=False)
        return build_sharded_iter_factory(args, iter_options, distributed_option, required, mode)
