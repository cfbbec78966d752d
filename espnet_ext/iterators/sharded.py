"""``--iterator_type sharded``: ESPnet iterator factory over feature shards.

ESPnet's ``sequence`` iterator has every rank read the whole shape file, build every
batch of the corpus, and load the whole scp index (and each DataLoader worker inherits
all of it). This factory reads only the shard manifest (:mod:`espnet_ext.data.shards`)
up front; each DataLoader worker reads the indices and arks of its own streams' shards
when it reaches them (:mod:`espnet_ext.data.shard_plan` has the epoch plan and its
guarantees: every utterance once per pass across ranks, the same number of batches
on every rank, length bucketing, an order fixed by seed, pass, rank and world size).

Epochs: without ``num_iters_per_epoch`` ESPnet's epoch e is pass e. With it, epoch e is
the rank's batches ``[(e - 1) n, e n)`` of the endless sequence of passes 1, 2, ...
(as ESPnet's ``SequenceIterFactory`` does), so a pass may span epochs.

Resuming mid-epoch: the epoch iterator's ``set_start_batch(k)`` (called by the
project's trainer before iterating) starts at the epoch's batch ``k`` with the same
batches and order as an uninterrupted run; the skipped part reads shard indices only,
never features.
"""

from __future__ import annotations

import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from typeguard import typechecked

from espnet_ext.data.shard_plan import (
    BatchRule,
    PassLayout,
    PlanError,
    PlannedBatch,
    plan_layout,
    shard_order,
    stream_batches,
    stream_pieces,
)
from espnet_ext.data.shards import ShardManifest

log = logging.getLogger(__name__)


def _as_is(item):
    return item


class _PassSegment(IterableDataset):
    """A rank's batches ``[start, stop)`` of one pass, as collated ESPnet batches.

    DataLoader worker ``w`` of ``W`` yields rank batches ``start + w, start + w + W, ...``;
    the DataLoader's in-order round robin puts them back in sequence. ``W`` divides
    ``streams_per_rank``, so a stream is read by one worker only.
    """

    def __init__(self, factory: "ShardedIterFactory", pass_index: int, start: int, stop: int,
                 shuffle: bool):
        self.f = factory
        self.pass_index = pass_index
        self.start = start
        self.stop = stop
        self.shuffle = shuffle

    def _stream(self, local: int) -> Iterator[PlannedBatch]:
        f, layout = self.f, self.f.layout
        stream = f.rank * layout.streams_per_rank + local
        order = shard_order(f.manifest.n_shards, seed=f.seed, pass_index=self.pass_index,
                            shuffle=self.shuffle)
        pieces = stream_pieces(f.manifest.utts, order, layout.n_streams, stream)

        def read_index(row: int):
            index = f.manifest.read_index(row)
            return index.utts, index.offsets, index.frames

        rng = np.random.default_rng([f.seed, self.pass_index, stream]) if self.shuffle else None
        return stream_batches(pieces, batches=layout.batches_per_stream, read_index=read_index,
                              rule=f.rule, window=f.window, rng=rng)

    def _load(self, batch: PlannedBatch):
        f = self.f
        fds: Dict[str, Any] = {}
        items = []
        try:
            for (row, utt, offset), frames in zip(batch.items, batch.frames):
                data = {f.name: f.manifest.load_matrix(row, utt, offset, int(frames), fds)}
                if f.preprocess_fn is not None:
                    data = f.preprocess_fn(utt, data)
                items.append((utt, data))
        finally:
            for fd in fds.values():
                fd.close()
        return f.collate_fn(items)

    def __iter__(self):
        info = get_worker_info()
        worker, n_workers = (info.id, info.num_workers) if info is not None else (0, 1)
        per_rank = self.f.layout.streams_per_rank
        seed = hash((self.f.seed, self.pass_index, self.f.rank, worker)) % (2**32)
        random.seed(seed)  # for a preprocess_fn that draws random numbers
        np.random.seed(seed)
        streams: Dict[int, Iterator[PlannedBatch]] = {}
        position: Dict[int, int] = {}
        for j in range(self.start + worker, self.stop, n_workers):
            local, i = j % per_rank, j // per_rank
            if local not in streams:
                streams[local], position[local] = self._stream(local), 0
            while position[local] < i:  # skipped batches: planned, never loaded
                next(streams[local])
                position[local] += 1
            batch = next(streams[local])
            position[local] += 1
            yield self._load(batch)


class ShardedEpoch:
    """The iterator of one ESPnet epoch (what ``build_iter`` returns).

    ``len()`` is the epoch's number of batches, like a DataLoader's; ``set_start_batch(k)``
    does not change it (the trainer subtracts ``k`` itself): iterating yields
    ``len() - k`` batches.
    """

    def __init__(self, factory: "ShardedIterFactory", epoch: int, shuffle: bool):
        self.factory = factory
        self.epoch = epoch
        self.shuffle = shuffle
        self.total = factory.batches_per_epoch
        self.start_batch = 0

    def set_start_batch(self, k: int) -> None:
        """Skip the epoch's first ``k`` batches (resume); call before iterating."""
        if not 0 <= k <= self.total:
            raise ValueError(f"start batch {k} outside [0, {self.total}] for epoch {self.epoch}")
        self.start_batch = k

    def __len__(self) -> int:
        return self.total

    def segments(self) -> List[Tuple[int, int, int]]:
        """``(pass, start, stop)`` ranges of rank batches this epoch covers."""
        return self.factory.segments(self.epoch, self.start_batch)

    def __iter__(self) -> Iterator[Tuple[List[str], Dict[str, torch.Tensor]]]:
        f = self.factory
        for pass_index, start, stop in self.segments():
            f.check_pass(pass_index, self.shuffle)
            loader = DataLoader(
                _PassSegment(f, pass_index, start, stop, self.shuffle),
                batch_size=None,
                num_workers=f.num_workers,
                collate_fn=_as_is,
                pin_memory=f.pin_memory,
            )
            yield from loader


class ShardedIterFactory(AbsIterFactory):
    """Mini-batch iterators over the feature shards of one dump dir (module docstring).

    Args:
        manifest: a loaded manifest, or ``shards.tsv``, its dump dir, or a file in that
            dir (``feats.scp``).
        rule: batch size per rank (count or frame budget).
        name: the data name the features are given under (``speech``).
        rank / world_size: this process among the data-parallel ranks.
        seed: with the pass, fixes shard order, tie-breaking and batch order.
        shuffle: False for validation (natural shard order, batches in length order).
        window: utterances per bucketing window of a stream.
        streams_per_rank: independent shard streams per rank; ``num_workers`` must divide it.
        num_workers: DataLoader workers (0: read in the training process).
        num_iters_per_epoch: batches per ESPnet epoch (None: one pass).
        collate_fn: ESPnet collate function (list of ``(utt, dict)`` -> batch).
        preprocess_fn: ESPnet preprocessor ``(utt, dict) -> dict`` or None.
    """

    @typechecked
    def __init__(
        self,
        manifest: Union[str, ShardManifest],
        *,
        rule: BatchRule,
        collate_fn: Callable,
        name: str = "speech",
        rank: int = 0,
        world_size: int = 1,
        seed: int = 0,
        shuffle: bool = True,
        window: int = 4096,
        streams_per_rank: int = 1,
        num_workers: int = 0,
        num_iters_per_epoch: Optional[int] = None,
        preprocess_fn: Optional[Callable] = None,
        pin_memory: bool = False,
    ):
        problems = []
        if not 0 <= rank < world_size:
            problems.append(f"rank {rank} outside [0, world_size={world_size})")
        if seed < 0:
            problems.append(f"--seed must be >= 0 for the sharded iterator, got {seed}")
        if window < 1:
            problems.append(f"--shard_window must be >= 1, got {window}")
        if num_workers < 0:
            problems.append(f"--num_workers must be >= 0, got {num_workers}")
        elif num_workers > 0 and streams_per_rank % num_workers:
            problems.append(
                f"--num_workers {num_workers} must divide --shard_streams_per_rank "
                f"{streams_per_rank} (a stream is read by one worker)"
            )
        if num_iters_per_epoch is not None and num_iters_per_epoch < 1:
            problems.append(f"--num_iters_per_epoch must be >= 1, got {num_iters_per_epoch}")
        if problems:
            raise PlanError("sharded iterator: " + "; ".join(problems))
        self.manifest = (
            manifest if isinstance(manifest, ShardManifest) else ShardManifest.load(manifest)
        )
        self.rule = rule
        self.collate_fn = collate_fn
        self.preprocess_fn = preprocess_fn
        self.name = name
        self.rank = rank
        self.world_size = world_size
        self.seed = seed
        self.shuffle = shuffle
        self.window = window
        self.num_workers = num_workers
        self.num_iters_per_epoch = num_iters_per_epoch
        self.pin_memory = pin_memory
        self.layout: PassLayout = plan_layout(
            shard_utts=self.manifest.utts,
            shard_frames=self.manifest.frames,
            world_size=world_size,
            streams_per_rank=streams_per_rank,
            rule=rule,
        )
        self._checked: Set[Tuple[int, bool]] = set()
        log.info(
            "sharded iterator: %s: %d utterances in %d shards; rank %d/%d reads %d streams "
            "x %d batches = %d batches per pass (%s %d per rank)%s",
            self.manifest.path, self.manifest.n_utts, self.manifest.n_shards, rank, world_size,
            streams_per_rank, self.layout.batches_per_stream, self.layout.batches_per_rank,
            rule.kind, rule.size,
            f", {num_iters_per_epoch} per epoch" if num_iters_per_epoch else "",
        )

    @property
    def batches_per_epoch(self) -> int:
        return self.num_iters_per_epoch or self.layout.batches_per_rank

    def segments(self, epoch: int, start_batch: int = 0) -> List[Tuple[int, int, int]]:
        """``(pass, start, stop)`` rank-batch ranges of ESPnet epoch ``epoch`` (1-based)."""
        if epoch < 1:
            raise ValueError(f"epochs count from 1, got {epoch}")
        per_pass = self.layout.batches_per_rank
        if self.num_iters_per_epoch is None:
            return [(epoch, start_batch, per_pass)] if start_batch < per_pass else []
        n = self.num_iters_per_epoch
        g, end = (epoch - 1) * n + start_batch, epoch * n
        out = []
        while g < end:
            p, a = divmod(g, per_pass)
            b = min(per_pass, a + end - g)
            out.append((p + 1, a, b))
            g += b - a
        return out

    def rank_rows(self, pass_index: int, shuffle: bool) -> List[int]:
        """Manifest rows this rank reads in a pass."""
        layout = self.layout
        order = shard_order(self.manifest.n_shards, seed=self.seed, pass_index=pass_index,
                            shuffle=shuffle)
        rows = []
        for local in range(layout.streams_per_rank):
            stream = self.rank * layout.streams_per_rank + local
            rows += [p.row for p in stream_pieces(self.manifest.utts, order, layout.n_streams,
                                                  stream)]
        return rows

    def check_pass(self, pass_index: int, shuffle: bool) -> None:
        """Stat this rank's shards of a pass before reading (ShardError names a bad one)."""
        if (pass_index, shuffle) not in self._checked:
            self.manifest.check_files(self.rank_rows(pass_index, shuffle))
            self._checked.add((pass_index, shuffle))

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None) -> ShardedEpoch:
        return ShardedEpoch(self, epoch, self.shuffle if shuffle is None else shuffle)
