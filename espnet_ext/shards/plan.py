"""The epoch plan of the sharded data path: which rank and loader worker reads what.

Everything here is computed from the shard manifest (utterance and frame counts per
shard) and the shard indices a stream reads; nothing holds the corpus-wide utterance
list, so memory per rank does not grow with the corpus (beyond the manifest's table).

One pass over the corpus ("pass" p = 1, 2, ...; without ``num_iters_per_epoch`` it is
ESPnet's epoch p) is planned as follows, identically on every rank:

1. **Shard order.** The shards are permuted with ``(seed, p)`` (identity without
   shuffling) and laid end to end as one virtual sequence of N utterances (shard-level
   shuffling of sequential-read archives: WebDataset, Aizman et al. 2019, "High
   Performance I/O for Large Scale Deep Learning").
2. **Streams.** The sequence is cut into ``S = world_size x streams_per_rank``
   contiguous spans of ``floor(N/S)`` or ``ceil(N/S)`` utterances; stream
   ``s = rank x streams_per_rank + j`` is rank ``rank``'s j-th stream.  A span
   covers whole shards plus at most two partial ones at its ends; only the stream
   owning a span reads it, so each utterance belongs to exactly one stream.
3. **Batches per stream.** Every stream yields the same number ``k`` of batches,
   derived from the counts alone: ``ceil(N/S / b)`` for ``b`` utterances per batch,
   ``ceil(frames/S / bins)`` for a frame budget (clipped to ``floor(N/S)``).  A rank
   therefore yields exactly ``k x streams_per_rank`` batches per pass, the same on
   every rank, and the stream's utterances are spread over its ``k`` batches: no
   utterance is dropped or repeated, so every utterance is seen exactly once per pass
   across all ranks.  The price: batch sizes vary a little (one rank may carry one
   utterance more than another; per-rank batches are not exactly ``b``).
4. **Bucketing.** A stream reads its shards' indices in order into a pool; when the
   pool holds ``window`` utterances (or the span ends) it is sorted by length (random
   tie-breaking) and cut into ``k_w`` contiguous batches, ``k_w`` chosen so that the
   cumulative number of batches after ``c`` utterances is ``floor(k c / n)``: equal
   counts for count batching, or the partition minimizing the largest padded size
   ``B x T_max`` for a frame budget.  The window's batches are shuffled with
   ``(seed, p, s)``.  Sorting by length within a bounded window (the sort buffer of
   WeNet's and Lhotse's streaming samplers) keeps padding close to ESPnet's global
   sort without holding the corpus.

**Weighted mixing** (``SourceMix``; a set combined from several sources, each shard of
one source): step 1 changes. Pass p draws, per source i, ``u_i = p_i N`` utterances
(``p_i`` the source's share, given or ``hours_i^(1/T)`` normalized): whole shards of the
source in an order permuted with ``(seed, p, i)``, the whole source again (a fresh
permutation) when it is used up (an up-weighted source repeats: sampling with
replacement at the shard level), the last shard cut to the target; the drawn pieces
of all sources are then permuted with ``(seed, p)``. N stays the corpus size, so the
steps per pass are the same as without mixing; steps 2-4 are unchanged. Without
weights nothing changes (every utterance once per pass).

Rank batch ``i`` of a pass comes from stream ``i mod streams_per_rank`` (its
``i div streams_per_rank``-th batch), so the order of a rank's batches is fixed by
(seed, p, rank, world size, streams per rank) and does not depend on how many DataLoader
workers share the streams: resuming at any batch rebuilds the same sequence.
"""

from __future__ import annotations

import dataclasses
import heapq
import math
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

#: ``(utterance ids (n,), byte offsets (n,), frames (n,))`` of one shard, optionally a
#: 4th element: per-utterance payloads (the transcripts), carried into the batch items
IndexReader = Callable[[int], Tuple]


class PlanError(ValueError):
    """The configuration cannot be planned (reported before any work starts)."""


@dataclasses.dataclass(frozen=True)
class BatchRule:
    """How big a batch of one rank is.

    Attributes:
        kind: ``"count"`` (``size`` utterances) or ``"bins"`` (``size`` bins of
            ``bins_per_frame`` per frame, padded frames included).
        size: utterances or bins per batch and rank.
        bins_per_frame: 1 for ``length`` batching, the feature dimension for ``numel``.
    """

    kind: str
    size: int
    bins_per_frame: int = 1

    def __post_init__(self):
        if self.kind not in ("count", "bins"):
            raise PlanError(f"batch rule kind must be 'count' or 'bins', got {self.kind!r}")
        if self.size < 1 or self.bins_per_frame < 1:
            raise PlanError(f"batch size per rank must be >= 1, got {self.size}")


@dataclasses.dataclass(frozen=True)
class Piece:
    """Utterances ``[lo, hi)`` of the shard in manifest row ``row``."""

    row: int
    lo: int
    hi: int


@dataclasses.dataclass(frozen=True)
class PlannedBatch:
    """One batch: ``items`` are ``(manifest row, utterance id, ark offset)`` (plus the
    payload when the index reader gives one); ``frames`` ``(B,)`` per item."""

    items: List[Tuple]
    frames: np.ndarray


@dataclasses.dataclass(frozen=True)
class PassLayout:
    """What every rank agrees on for a corpus and a launch geometry."""

    n_utts: int
    world_size: int
    streams_per_rank: int
    batches_per_stream: int

    @property
    def n_streams(self) -> int:
        return self.world_size * self.streams_per_rank

    @property
    def batches_per_rank(self) -> int:
        return self.batches_per_stream * self.streams_per_rank


def plan_layout(
    *,
    shard_utts: np.ndarray,
    shard_frames: np.ndarray,
    world_size: int,
    streams_per_rank: int,
    rule: BatchRule,
) -> PassLayout:
    """Batches per stream for a corpus (see the module docstring, step 3).

    Raises:
        PlanError: fewer utterances than streams.
    """
    n_utts = int(shard_utts.sum())
    n_streams = world_size * streams_per_rank
    if world_size < 1 or streams_per_rank < 1:
        raise PlanError(
            f"need world_size >= 1 and streams_per_rank >= 1, got {world_size}, {streams_per_rank}"
        )
    q = n_utts // n_streams
    if q < 1:
        raise PlanError(
            f"{n_utts} utterances cannot feed {world_size} ranks x {streams_per_rank} "
            "streams: use fewer ranks, workers or --shard_streams_per_rank"
        )
    if rule.kind == "count":
        k = math.ceil(n_utts / n_streams / rule.size)
    else:
        bins = int(shard_frames.sum()) * rule.bins_per_frame
        k = math.ceil(bins / n_streams / rule.size)
    return PassLayout(
        n_utts=n_utts,
        world_size=world_size,
        streams_per_rank=streams_per_rank,
        batches_per_stream=max(1, min(k, q)),
    )


def shard_order(n_shards: int, *, seed: int, pass_index: int, shuffle: bool) -> np.ndarray:
    """Manifest rows in the order of pass ``pass_index``, ``(n_shards,)``."""
    if not shuffle:
        return np.arange(n_shards)
    return np.random.default_rng([seed, pass_index]).permutation(n_shards)


def stream_span(n_utts: int, n_streams: int, stream: int) -> Tuple[int, int]:
    """Virtual utterance range ``[lo, hi)`` of stream ``stream``."""
    return stream * n_utts // n_streams, (stream + 1) * n_utts // n_streams


def stream_pieces(
    shard_utts: np.ndarray,
    order: np.ndarray,
    n_streams: int,
    stream: int,
    counts: Optional[np.ndarray] = None,
) -> List[Piece]:
    """The (partial) shards that stream ``stream`` reads, in reading order.

    ``counts``: utterances taken from the start of each position's shard (weighted
    mixing cuts a source's last shard); default: whole shards.
    """
    if counts is None:
        counts = shard_utts[order]
    ends = np.cumsum(counts)
    lo, hi = stream_span(int(ends[-1]), n_streams, stream)
    first = int(np.searchsorted(ends, lo, side="right"))
    pieces = []
    for pos in range(first, len(order)):
        start = int(ends[pos] - counts[pos])
        if start >= hi:
            break
        a, b = max(lo, start) - start, min(hi, int(ends[pos])) - start
        if b > a:
            pieces.append(Piece(row=int(order[pos]), lo=a, hi=b))
    return pieces


def _split_counts(n: int, k: int) -> List[Tuple[int, int]]:
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def _groups_under(lengths: np.ndarray, cap: int) -> Optional[List[Tuple[int, int]]]:
    """Greedy contiguous groups of ascending ``lengths`` with ``size x max <= cap``."""
    groups, i, n = [], 0, len(lengths)
    while i < n:
        # largest j with (j - i) * lengths[j - 1] <= cap; (j - i) * lengths[j - 1] grows with j
        lo, hi = i + 1, n
        if lengths[i] > cap:
            return None
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if (mid - i) * int(lengths[mid - 1]) <= cap:
                lo = mid
            else:
                hi = mid - 1
        groups.append((i, lo))
        i = lo
    return groups


def _split_frames(lengths: np.ndarray, k: int) -> List[Tuple[int, int]]:
    """``k`` contiguous groups of ascending ``lengths`` minimizing the largest
    padded size ``group size x longest``."""
    n = len(lengths)
    lo, hi = int(lengths[-1]), n * int(lengths[-1])
    while lo < hi:  # smallest cap that the greedy packs into <= k groups
        mid = (lo + hi) // 2
        g = _groups_under(lengths, mid)
        if g is not None and len(g) <= k:
            hi = mid
        else:
            lo = mid + 1
    groups = _groups_under(lengths, lo)
    # exactly k groups: split the costliest splittable group in halves
    heap = [(-(b - a) * int(lengths[b - 1]), a, b) for a, b in groups]
    heapq.heapify(heap)
    while len(heap) < k:
        stash = []
        while True:
            cost, a, b = heapq.heappop(heap)
            if b - a >= 2:
                break
            stash.append((cost, a, b))
        m = (a + b) // 2
        for x, y in ((a, m), (m, b)):
            heapq.heappush(heap, (-(y - x) * int(lengths[y - 1]), x, y))
        for item in stash:
            heapq.heappush(heap, item)
    return sorted((a, b) for _, a, b in heap)


def bucket(
    frames: np.ndarray, k: int, rule: BatchRule, rng: Optional[np.random.Generator]
) -> List[np.ndarray]:
    """Cut a pool into ``k`` batches by length.

    Args:
        frames: ``(n,)`` frame counts of the pool, ``n >= k >= 1``.
        rng: random tie-breaking among equal lengths (None: stable order).

    Returns:
        ``k`` index arrays into the pool, shortest batch first.
    """
    if rng is None:
        order = np.argsort(frames, kind="stable")
    else:
        order = np.lexsort((rng.random(len(frames)), frames))
    lengths = frames[order]
    if rule.kind == "count":
        bounds = _split_counts(len(order), k)
    else:
        bounds = _split_frames(lengths, k)
    return [order[a:b] for a, b in bounds]


def stream_batches(
    pieces: Sequence[Piece],
    *,
    batches: int,
    read_index: IndexReader,
    rule: BatchRule,
    window: int,
    rng: Optional[np.random.Generator],
) -> Iterator[PlannedBatch]:
    """The ``batches`` batches of one stream, in order (module docstring, step 4).

    ``rng`` None: no shuffling (validation). Reads each shard's index once.
    """
    total = sum(p.hi - p.lo for p in pieces)
    if not 1 <= batches <= total:
        raise PlanError(f"a stream of {total} utterances cannot make {batches} batches")
    pool_items: List[Tuple] = []
    pool_frames: List[np.ndarray] = []
    seen = emitted = 0
    for n, piece in enumerate(pieces):
        entry = read_index(piece.row)
        utts, offsets, frames = entry[:3]
        if len(entry) > 3 and entry[3] is not None:
            extra = entry[3]
            pool_items.extend(
                (piece.row, utts[i], int(offsets[i]), extra[i]) for i in range(piece.lo, piece.hi)
            )
        else:
            pool_items.extend((piece.row, utts[i], int(offsets[i])) for i in range(piece.lo, piece.hi))
        pool_frames.append(np.asarray(frames[piece.lo : piece.hi], dtype=np.int64))
        seen += piece.hi - piece.lo
        if len(pool_items) < window and n < len(pieces) - 1:
            continue
        k_w = batches * seen // total - emitted
        if k_w < 1:
            continue
        frames_pool = np.concatenate(pool_frames)
        groups = bucket(frames_pool, k_w, rule, rng)
        if rng is not None:
            groups = [groups[i] for i in rng.permutation(len(groups))]
        for g in groups:
            yield PlannedBatch(items=[pool_items[i] for i in g], frames=frames_pool[g])
        emitted += k_w
        pool_items, pool_frames = [], []
    assert emitted == batches and not pool_items, (emitted, batches)


def padding_fraction(batches: Sequence[np.ndarray]) -> float:
    """Share of padded frames in ``batches`` (each an array of frame counts)."""
    real = sum(int(b.sum()) for b in batches)
    padded = sum(len(b) * int(b.max()) for b in batches)
    return 1.0 - real / padded


# ---------------------------------------------------------------------------
# Weighted mixing of sources
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SourceMix:
    """Shares of the sources in a pass (module docstring, weighted mixing).

    Attributes:
        names: the sources, in the manifest's order.
        probs: ``(n_sources,)`` shares, summing to 1.
    """

    names: Tuple[str, ...]
    probs: np.ndarray


def parse_source_weights(spec: str) -> List[Tuple[str, float]]:
    """``"a:0.5 b:0.3 c:0.2"`` -> [("a", 0.5), ...] (weights need not sum to 1)."""
    out = []
    for item in spec.replace(",", " ").split():
        name, sep, w = item.rpartition(":")
        try:
            weight = float(w)
        except ValueError:
            weight = -1.0
        if not sep or not name or not weight >= 0 or not math.isfinite(weight):
            raise PlanError(f"source weight {item!r}: expected <source>:<weight >= 0>")
        out.append((name, weight))
    if len({n for n, _ in out}) != len(out):
        raise PlanError(f"source weights {spec!r}: a source is named twice")
    if out and sum(w for _, w in out) <= 0:
        raise PlanError(f"source weights {spec!r}: all weights are 0")
    return out


def source_mix(
    sources: Sequence[str],
    source_hours: np.ndarray,
    *,
    weights: Optional[Sequence[Tuple[str, float]]] = None,
    temperature: Optional[float] = None,
) -> SourceMix:
    """The shares from given weights (every source named exactly once) or from a
    temperature T (``p_i ~ hours_i^(1/T)``: T=1 proportional to size, larger T flatter).

    Raises:
        PlanError: both or neither given, an unknown or missing source, T <= 0.
    """
    if (weights is None) == (temperature is None):
        raise PlanError("give either source weights or a source temperature")
    names = tuple(sources)
    if weights is not None:
        given = dict(weights)
        unknown = sorted(set(given) - set(names))
        missing = [n for n in names if n not in given]
        if unknown or missing:
            raise PlanError(
                "source weights must name each source of the shards exactly once: "
                + "; ".join(
                    filter(
                        None,
                        [
                            f"not a source of the shards: {' '.join(unknown)}" if unknown else "",
                            f"no weight for: {' '.join(missing)}" if missing else "",
                        ],
                    )
                )
                + f" (the shards' sources: {' '.join(names)})"
            )
        w = np.array([given[n] for n in names], dtype=np.float64)
    else:
        if not temperature > 0:
            raise PlanError(f"--source_temperature must be > 0, got {temperature}")
        w = np.asarray(source_hours, dtype=np.float64) ** (1.0 / temperature)
    return SourceMix(names=names, probs=w / w.sum())


def mix_targets(mix: SourceMix, n_utts: int) -> np.ndarray:
    """Utterances per source in a pass, ``(n_sources,)``, summing to ``n_utts``
    (largest remainders)."""
    raw = mix.probs * n_utts
    out = np.floor(raw).astype(np.int64)
    rest = n_utts - int(out.sum())
    if rest:
        out[np.argsort(-(raw - out), kind="stable")[:rest]] += 1
    return out


def mixed_order(
    shard_utts: np.ndarray,
    shard_source: np.ndarray,
    targets: np.ndarray,
    *,
    seed: int,
    pass_index: int,
    shuffle: bool = True,
) -> Tuple[np.ndarray, np.ndarray]:
    """The pass's positions: ``(rows, counts)``, counts utterances from each row's start.

    Raises:
        PlanError: a source with a positive target has no shard.
    """
    rows: List[int] = []
    counts: List[int] = []
    for i, target in enumerate(targets):
        own = np.flatnonzero(shard_source == i)
        if target > 0 and own.size == 0:
            raise PlanError(f"source {i} has a share but no shard")
        rng = np.random.default_rng([seed, pass_index, 1 + i])
        left = int(target)
        while left > 0:
            for row in rng.permutation(own) if shuffle else own:
                take = min(left, int(shard_utts[row]))
                rows.append(int(row))
                counts.append(take)
                left -= take
                if left == 0:
                    break
    rows_a, counts_a = np.array(rows, dtype=np.int64), np.array(counts, dtype=np.int64)
    if shuffle:
        perm = np.random.default_rng([seed, pass_index]).permutation(len(rows_a))
        rows_a, counts_a = rows_a[perm], counts_a[perm]
    return rows_a, counts_a
