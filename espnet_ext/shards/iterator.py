"""``--iterator_type sharded``: ESPnet iterator factory over shards.

Feature shards (pre-training: ``speech``), feature shards with their transcripts
(fine-tuning: ``speech`` + ``text``) and text-only shards (the LM: ``text``) go through
the same plan; only what a batch item carries differs.

ESPnet's ``sequence`` iterator has every rank read the whole shape file, build every
batch of the corpus, and load the whole scp index (and each DataLoader worker inherits
all of it). This factory reads only the shard manifest (:mod:`espnet_ext.shards.format`)
up front; each DataLoader worker reads the indices and arks of its own streams' shards
when it reaches them (:mod:`espnet_ext.shards.plan` has the epoch plan and its
guarantees: every utterance once per pass across ranks, the same number of batches
on every rank, length bucketing, an order fixed by seed, pass, rank and world size).

Epochs: without ``num_iters_per_epoch`` ESPnet's epoch e is pass e. With it, epoch e is
the rank's batches ``[(e - 1) n, e n)`` of the endless sequence of passes 1, 2, ...
(as ESPnet's ``SequenceIterFactory`` does), so a pass may span epochs.

Open files: a loader worker keeps the arks it reads open across batches (per stream it
reads, as many as a bucketing window spans plus 2, at most :data:`MAX_OPEN_ARKS_PER_STREAM`;
the least recently opened closed first) and closes them when its part of the epoch ends.

Weighted mixing (``mix``): see :mod:`espnet_ext.shards.plan`; every pass logs the
hours it draws from each source (frames x 10 ms).

Resuming mid-epoch: the epoch iterator's ``set_start_batch(k)`` (called by the
project's trainer before iterating) starts at the epoch's batch ``k`` with the same
batches and order as an uninterrupted run; the skipped part reads shard indices only,
never features.
"""

from __future__ import annotations

import collections
import logging
import random
from typing import Any, Callable, Dict, Iterator, List, Optional, Set, Tuple, Union

import numpy as np
import torch
from espnet2.iterators.abs_iter_factory import AbsIterFactory
from torch.utils.data import DataLoader, IterableDataset, get_worker_info
from typeguard import typechecked

from espnet_ext.shards.format import FRAME_SHIFT_S, ShardManifest
from espnet_ext.shards.plan import (
    BatchRule,
    PassLayout,
    PlanError,
    PlannedBatch,
    SourceMix,
    mix_targets,
    mixed_order,
    plan_layout,
    shard_order,
    stream_batches,
    stream_pieces,
)

log = logging.getLogger(__name__)

MAX_OPEN_ARKS_PER_STREAM = 64


def _as_is(item):
    return item


def _force_dtypes(utt: str, data: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """After the preprocessor, as ESPnet's dataset does: floats to float32, integers to
    int64 (waveform augmentation, e.g. a RIR convolution, returns float64)."""
    for name, value in data.items():
        if not isinstance(value, np.ndarray):
            raise RuntimeError(
                f"{utt}: the preprocessor left {name!r} as {type(value).__name__}, not an ndarray"
            )
        if value.dtype.kind == "f":
            data[name] = value.astype(np.float32, copy=False)
        elif value.dtype.kind in "iu":
            data[name] = value.astype(np.int64, copy=False)
    return data


class _OpenFiles(collections.OrderedDict):
    """kaldiio's ``fd_dict``: open arks, the least recently opened closed beyond ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = max(1, limit)

    def __setitem__(self, key, value):
        super().__setitem__(key, value)
        while len(self) > self.limit:
            _, fd = self.popitem(last=False)
            fd.close()

    def close(self) -> None:
        while self:
            _, fd = self.popitem(last=False)
            fd.close()


class _PassSegment(IterableDataset):
    """A rank's batches ``[start, stop)`` of one pass, as collated ESPnet batches.

    DataLoader worker ``w`` of ``W`` yields rank batches ``start + w, start + w + W, ...``;
    the DataLoader's in-order round robin puts them back in sequence. ``W`` divides
    ``streams_per_rank``, so a stream is read by one worker only.
    """

    def __init__(self, factory: "ShardedIterFactory", pass_index: int, start: int, stop: int, shuffle: bool):
        self.f = factory
        self.pass_index = pass_index
        self.start = start
        self.stop = stop
        self.shuffle = shuffle

    def _stream(self, local: int) -> Iterator[PlannedBatch]:
        f, layout = self.f, self.f.layout
        stream = f.rank * layout.streams_per_rank + local
        order, counts = f.pass_order(self.pass_index, self.shuffle)
        pieces = stream_pieces(f.manifest.utts, order, layout.n_streams, stream, counts)
        with_text = f.text_name is not None

        def read_index(row: int):
            index = f.manifest.read_index(row, with_text=with_text)
            return index.utts, index.offsets, index.frames, index.texts

        rng = np.random.default_rng([f.seed, self.pass_index, stream]) if self.shuffle else None
        return stream_batches(
            pieces,
            batches=layout.batches_per_stream,
            read_index=read_index,
            rule=f.rule,
            window=f.window,
            rng=rng,
        )

    def _load(self, batch: PlannedBatch, fds: Dict[str, Any]):
        f = self.f
        items = []
        for item, frames in zip(batch.items, batch.frames):
            row, utt, offset = item[:3]
            data = {}
            if f.name is not None:
                data[f.name] = f.manifest.load_matrix(row, utt, offset, int(frames), fds)
            if f.text_name is not None:
                data[f.text_name] = item[3]
            if f.preprocess_fn is not None:
                data = _force_dtypes(utt, f.preprocess_fn(utt, data))
            items.append((utt, data))
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
        own = len({j % per_rank for j in range(worker, per_rank, n_workers)})
        span = 2 + -(-self.f.window // max(1, int(self.f.manifest.utts.min())))
        # open per worker, not per batch: every ark of a window stays open
        fds = _OpenFiles(min(span, MAX_OPEN_ARKS_PER_STREAM) * max(1, own))
        try:
            for j in range(self.start + worker, self.stop, n_workers):
                local, i = j % per_rank, j // per_rank
                if local not in streams:
                    streams[local], position[local] = self._stream(local), 0
                while position[local] < i:  # skipped batches: planned, never loaded
                    next(streams[local])
                    position[local] += 1
                batch = next(streams[local])
                position[local] += 1
                yield self._load(batch, fds)
        finally:
            fds.close()


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
        rule: batch size per rank (count or frame budget; frames are tokens for text
            shards).
        name: the data name the features are given under (``speech``); None for text
            shards.
        text_name: the data name of the transcripts (``text``), or None (features only).
        mix: per-source shares of a pass (weighted mixing), or None (every utterance
            once per pass).
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
        name: Optional[str] = "speech",
        text_name: Optional[str] = None,
        mix: Optional[SourceMix] = None,
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
        self.manifest = manifest if isinstance(manifest, ShardManifest) else ShardManifest.load(manifest)
        m = self.manifest
        if m.kind == "text" and name is not None:
            problems.append(f"{m.path} holds text-only shards: no {name!r} features")
        if m.has_speech and name is None:
            problems.append(f"{m.path} holds speech shards ({m.kind}): give the speech's name")
        if text_name is not None and not m.has_text:
            problems.append(
                f"{m.path}: the shards have no transcripts ({text_name!r}): an "
                "unlabeled set, or written before stage 2 kept them; re-run stage 2"
            )
        if mix is not None and (m.sources is None or tuple(m.sources) != tuple(mix.names)):
            problems.append(
                f"{m.path}: weighted mixing needs shards cut per source "
                f"({' '.join(mix.names)}), the manifest has "
                f"{'no source column' if m.sources is None else 'sources ' + ' '.join(m.sources)}"
                ": re-run stage 1 (combine with utt2source) and stage 2"
            )
        if problems:
            raise PlanError("sharded iterator: " + "; ".join(problems))
        self.text_name = text_name
        self.mix = mix
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
        if mix is None:
            self._targets = None
            utts, frames = self.manifest.utts, self.manifest.frames
        else:
            src = self.manifest.source
            n_src = len(mix.names)
            per_utt = np.bincount(src, weights=self.manifest.frames, minlength=n_src) / np.maximum(
                1, np.bincount(src, weights=self.manifest.utts, minlength=n_src)
            )
            self._targets = utts = mix_targets(mix, self.manifest.n_utts)
            frames = np.round(utts * per_utt).astype(np.int64)
        self.layout: PassLayout = plan_layout(
            shard_utts=utts,
            shard_frames=frames,
            world_size=world_size,
            streams_per_rank=streams_per_rank,
            rule=rule,
        )
        self._checked: Set[Tuple[int, bool]] = set()
        log.info(
            "sharded iterator: %s: %d utterances in %d shards; rank %d/%d reads %d streams "
            "x %d batches = %d batches per pass (%s %d per rank)%s",
            self.manifest.path,
            self.manifest.n_utts,
            self.manifest.n_shards,
            rank,
            world_size,
            streams_per_rank,
            self.layout.batches_per_stream,
            self.layout.batches_per_rank,
            rule.kind,
            rule.size,
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

    def pass_order(self, pass_index: int, shuffle: bool) -> Tuple[np.ndarray, Optional[np.ndarray]]:
        """The pass's manifest rows in reading order and, with mixing, the utterances
        taken from each (None: whole shards)."""
        if self.mix is None:
            return shard_order(
                self.manifest.n_shards, seed=self.seed, pass_index=pass_index, shuffle=shuffle
            ), None
        return mixed_order(
            self.manifest.utts,
            self.manifest.source,
            self._targets,
            seed=self.seed,
            pass_index=pass_index,
            shuffle=shuffle,
        )

    def rank_rows(self, pass_index: int, shuffle: bool) -> List[int]:
        """Manifest rows this rank reads in a pass."""
        layout = self.layout
        order, counts = self.pass_order(pass_index, shuffle)
        rows = []
        for local in range(layout.streams_per_rank):
            stream = self.rank * layout.streams_per_rank + local
            rows += [
                p.row for p in stream_pieces(self.manifest.utts, order, layout.n_streams, stream, counts)
            ]
        return rows

    def hours_drawn(self, pass_index: int, shuffle: bool = True) -> Dict[str, float]:
        """Hours a pass draws from each source (all ranks; a cut shard counts pro rata)."""
        m = self.manifest
        order, counts = self.pass_order(pass_index, shuffle)
        if counts is None:
            counts = m.utts[order]
        frames = m.frames[order] * counts / m.utts[order]
        names = m.sources or [str(m.path.parent.name)]
        src = m.source[order] if m.source is not None else np.zeros(len(order), dtype=np.int64)
        per = np.bincount(src, weights=frames, minlength=len(names)) * FRAME_SHIFT_S / 3600
        return {n: float(h) for n, h in zip(names, per)}

    def check_pass(self, pass_index: int, shuffle: bool) -> None:
        """Stat this rank's shards of a pass before reading (ShardError names a bad one);
        with sources, log the hours the pass draws from each."""
        if (pass_index, shuffle) not in self._checked:
            self.manifest.check_files(self.rank_rows(pass_index, shuffle))
            self._checked.add((pass_index, shuffle))
            if self.manifest.sources is not None and self.manifest.has_speech:
                hours = self.hours_drawn(pass_index, shuffle)
                total = sum(hours.values()) or 1.0
                log.info(
                    "sharded iterator: pass %d draws %s",
                    pass_index,
                    ", ".join(f"{n} {h:.2f} h ({100 * h / total:.1f} %)" for n, h in hours.items()),
                )

    def build_iter(self, epoch: int, shuffle: Optional[bool] = None) -> ShardedEpoch:
        return ShardedEpoch(self, epoch, self.shuffle if shuffle is None else shuffle)
