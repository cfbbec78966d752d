"""Batch arithmetic with ESPnet's semantics, and the global-batch check, as values.

``batch_size`` counts the utterances of one micro-batch across all ranks
(``AbsTask.build_sequence_iter_factory`` gives rank r the slice ``batch[r::world_size]``), so
an optimizer step sees ``batch_size x accum_grad`` utterances whatever the number of ranks,
and the number of ranks sets the per-rank micro-batch. A config that declares
``global_batch_utts`` gets that number exactly, split into equal per-rank micro-batches, or
the launch stops before anything starts and says which numbers to change, unless the user
accepts the new batch.

:func:`batch_arithmetic` returns a :class:`BatchArithmetic`: the numbers, and the problems
that stop the launch (``stops``: unless the new global batch is accepted; ``fatal``: always,
ESPnet would fail). :mod:`espnet_ext.distributed.report` words them.
"""

import dataclasses
import math
from typing import Optional, Tuple, Union

from espnet_ext.distributed.batch_settings import UTTERANCE_BATCH_TYPES, BatchSettings, DataSize
from espnet_ext.distributed.geometry import Geometry


@dataclasses.dataclass(frozen=True)
class GlobalBatchFix:
    """How to reach ``target`` utterances per step with equal per-rank micro-batches.

    One of: ``batch_size_alone`` and/or ``accum_grad_alone`` (either change alone works);
    ``both`` (change batch_size and accum_grad together); ``nearest`` (no equal split of
    ``target`` exists on ``ranks``: the nearest global batches that split).
    """

    target: int
    ranks: int
    batch_size: int
    accum_grad: int
    batch_size_alone: Optional[int] = None
    accum_grad_alone: Optional[int] = None
    both: Optional[Tuple[int, int]] = None  # (batch_size, accum_grad)
    nearest: Tuple[int, ...] = ()


def global_batch_fix(*, target: int, ranks: int, batch_size: int, accum_grad: int) -> GlobalBatchFix:
    """The change(s) that give ``target`` utterances per step on ``ranks`` ranks."""
    fix = GlobalBatchFix(target, ranks, batch_size, accum_grad)
    alone = {}
    if target % accum_grad == 0 and (target // accum_grad) % ranks == 0:
        alone["batch_size_alone"] = target // accum_grad
    if target % batch_size == 0 and batch_size % ranks == 0 and batch_size != target // accum_grad:
        alone["accum_grad_alone"] = target // batch_size
    if alone:
        return dataclasses.replace(fix, **alone)
    # Change both: a multiple of the ranks that divides the target, closest per rank.
    pairs = [
        (ranks * n, target // (ranks * n)) for n in range(1, target // ranks + 1) if target % (ranks * n) == 0
    ]
    if pairs:
        both = min(pairs, key=lambda p: (abs(p[0] / ranks - batch_size / ranks), p[0]))
        return dataclasses.replace(fix, both=both)
    step = ranks * accum_grad
    lo, hi = (target // step) * step, (target // step + 1) * step
    return dataclasses.replace(fix, nearest=tuple(g for g in (lo, hi) if g > 0))


# ---------------------------------------------------------------------------------------
# Problems


@dataclasses.dataclass(frozen=True)
class TooFewUtterances:
    """Fatal: a micro-batch has fewer utterances than there are ranks."""

    batch_size: int
    ranks: int
    fix: Optional[GlobalBatchFix]  # with a global_batch_utts; else batch_size -> ranks or more


@dataclasses.dataclass(frozen=True)
class PerRankMismatch:
    """The config is sized for ``micro_batch_per_rank``; the geometry gives ``per_rank``."""

    config: Optional[str]
    micro_batch_per_rank: int
    batch_size: int
    ranks: int
    per_rank: int
    accum_grad: int
    global_batch_utts: Optional[int]

    @property
    def new_batch_size(self) -> int:
        return self.ranks * self.micro_batch_per_rank

    @property
    def new_accum_grad(self) -> Optional[int]:
        """With the new batch_size, when it divides the global batch."""
        G = self.global_batch_utts
        return G // self.new_batch_size if G is not None and G % self.new_batch_size == 0 else None


@dataclasses.dataclass(frozen=True)
class GlobalBatchMismatch:
    """The step's utterances are not the config's ``global_batch_utts``."""

    utts_per_step: int
    utts_per_micro_batch: int
    accum_grad: int
    global_batch_utts: int
    global_batch_source: str
    fix: GlobalBatchFix


@dataclasses.dataclass(frozen=True)
class UnequalSplit:
    """The global batch holds, but the micro-batch does not split equally over the ranks."""

    global_batch_utts: int
    ranks: int
    batch_size: int
    fix: GlobalBatchFix


@dataclasses.dataclass(frozen=True)
class BinsCannotHoldGlobalBatch:
    """A bin-sized batch_type cannot keep a number of utterances per step."""

    global_batch_utts: int
    global_batch_source: str
    batch_type: str


Problem = Union[
    TooFewUtterances, PerRankMismatch, GlobalBatchMismatch, UnequalSplit, BinsCannotHoldGlobalBatch
]


# ---------------------------------------------------------------------------------------
# The arithmetic


@dataclasses.dataclass(frozen=True)
class BatchArithmetic:
    """The batch numbers of a training command on a geometry.

    Utterance batch types use ``batch_size`` .. ``utts_per_micro_batch``; bin batch types
    ``batch_bins``. Pass and epoch numbers are None when unknown (no data size, no
    ``num_iters_per_epoch``).
    """

    config: Optional[str]
    batch_type: str
    ranks: int
    accum_grad: int
    global_batch_utts: Optional[int]
    accum_no_sync: bool
    batch_size: int
    per_rank: int  # batch_size // ranks
    remainder: int  # batch_size % ranks
    sharded: bool  # the sharded iterator: every rank gets per_rank, the remainder is unused
    utts_per_micro_batch: int
    batch_bins: int
    max_epoch: int
    num_iters_per_epoch: Optional[int]
    data: Optional[DataSize] = None
    micro_batches_per_pass: Optional[int] = None
    stops: Tuple[Problem, ...] = ()
    fatal: Tuple[Problem, ...] = ()

    @property
    def by_utterances(self) -> bool:
        return self.batch_type in UTTERANCE_BATCH_TYPES

    @property
    def upper_bound(self) -> bool:
        """folded: micro-batches of long utterances are smaller."""
        return self.batch_type == "folded"

    @property
    def utts_per_step(self) -> int:
        return self.utts_per_micro_batch * self.accum_grad

    @property
    def bins_per_step(self) -> int:
        return self.batch_bins * self.accum_grad

    @property
    def grad_allreduces_per_step(self) -> Optional[int]:
        """None when there is nothing to count (one rank, or no accumulation)."""
        if self.ranks == 1 or self.accum_grad == 1:
            return None
        return 1 if self.accum_no_sync else self.accum_grad

    @property
    def global_batch_matches(self) -> bool:
        return (
            self.by_utterances
            and self.global_batch_utts is not None
            and self.batch_size >= self.ranks
            and not self.stops
            and not self.fatal
        )

    @property
    def steps_per_pass(self) -> Optional[int]:
        m = self.micro_batches_per_pass
        return None if m is None else m // self.accum_grad

    @property
    def steps_per_epoch(self) -> Optional[int]:
        if self.num_iters_per_epoch is not None:
            return self.num_iters_per_epoch // self.accum_grad
        return self.steps_per_pass

    @property
    def total_steps(self) -> Optional[int]:
        if self.num_iters_per_epoch is not None:
            return self.max_epoch * self.num_iters_per_epoch // self.accum_grad
        if self.micro_batches_per_pass is not None:
            return self.max_epoch * self.steps_per_pass
        return None

    @property
    def passes_per_epoch(self) -> Optional[float]:
        m, n = self.micro_batches_per_pass, self.num_iters_per_epoch
        return None if m is None or n is None else n / m

    @property
    def total_passes(self) -> Optional[float]:
        m, n = self.micro_batches_per_pass, self.num_iters_per_epoch
        return None if m is None or n is None else self.max_epoch * n / m


def _utterance_problems(s: BatchSettings, W: int, per_rank: int, rem: int, used: int):
    B, A, G = s.batch_size, s.accum_grad, s.global_batch_utts
    stops, fatal = [], []

    def fix() -> GlobalBatchFix:
        return global_batch_fix(target=G, ranks=W, batch_size=B, accum_grad=A)

    if B < W:
        fatal.append(TooFewUtterances(B, W, fix() if G else None))
        return stops, fatal
    M = s.micro_batch_per_rank
    if M is not None and per_rank != M:
        # The config fixes what one GPU holds; ESPnet's global batch_size would change it.
        stops.append(PerRankMismatch(s.config, M, B, W, per_rank, A, G))
    if G is not None:
        if used * A != G:
            stops.append(GlobalBatchMismatch(used * A, used, A, G, s.global_batch_source, fix()))
        elif rem != 0:
            stops.append(UnequalSplit(G, W, B, fix()))
    return stops, fatal


def _micro_batches_per_pass(s: BatchSettings, used: int, data: Optional[DataSize]) -> Optional[int]:
    if data is None or used == 0:  # used == 0: fewer utterances than ranks, reported as a problem
        return None
    if s.batch_type in UTTERANCE_BATCH_TYPES:
        return max(data.utterances // used, 1)  # ESPnet: floor(N / B) batches of B or B + 1
    if data.numel is not None:
        return max(math.ceil(data.numel / s.batch_bins), 1)
    return None


def batch_arithmetic(
    settings: BatchSettings, geometry: Geometry, data: Optional[DataSize] = None
) -> BatchArithmetic:
    """The batch numbers of ``settings`` on ``geometry`` and what would stop the launch."""
    s, W = settings, geometry.world_size
    per_rank, rem = divmod(s.batch_size, W)
    # ESPnet's sequence iterator gives rank r batch[r::W] (unequal shares when W does not
    # divide B); the project's sharded iterator gives every rank B // W (the rest unused).
    sharded = s.iterator_type == "sharded"
    used = W * per_rank if sharded else s.batch_size
    if s.batch_type in UTTERANCE_BATCH_TYPES:
        stops, fatal = _utterance_problems(s, W, per_rank, rem, used)
    elif s.global_batch_utts is not None:
        stops, fatal = (
            [BinsCannotHoldGlobalBatch(s.global_batch_utts, s.global_batch_source, s.batch_type)],
            [],
        )
    else:
        stops, fatal = [], []
    return BatchArithmetic(
        config=s.config,
        batch_type=s.batch_type,
        ranks=W,
        accum_grad=s.accum_grad,
        global_batch_utts=s.global_batch_utts,
        accum_no_sync=s.accum_no_sync,
        batch_size=s.batch_size,
        per_rank=per_rank,
        remainder=rem,
        sharded=sharded,
        utts_per_micro_batch=used,
        batch_bins=s.batch_bins,
        max_epoch=s.max_epoch,
        num_iters_per_epoch=s.num_iters_per_epoch,
        data=data,
        micro_batches_per_pass=_micro_batches_per_pass(s, used, data),
        stops=tuple(stops),
        fatal=tuple(fatal),
    )
