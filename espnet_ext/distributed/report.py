"""The launcher's words: the one place that turns geometry, batch numbers and plans into text.

:func:`launch_report` is what the launcher prints (and writes at the top of the training
log); :func:`refusal_messages` are its ``launch: error:`` lines when the batch arithmetic
stops the launch. Everything here formats values computed elsewhere
(:mod:`~espnet_ext.distributed.geometry`, :mod:`~espnet_ext.distributed.batch`,
:mod:`~espnet_ext.distributed.plan`).
"""

import functools
import shlex
from typing import List, Optional

from espnet_ext.distributed.batch import (
    BatchArithmetic,
    BinsCannotHoldGlobalBatch,
    GlobalBatchFix,
    GlobalBatchMismatch,
    PerRankMismatch,
    TooFewUtterances,
    UnequalSplit,
)
from espnet_ext.distributed.geometry import Geometry
from espnet_ext.distributed.plan import LaunchPlan
from espnet_ext.distributed.schedule import Schedule, describe_schedule_problem, schedule_lines


def _plural(n: int, word: str, suffix: str = "s") -> str:
    return f"{word}{suffix if n > 1 else ''}"


def describe_geometry(geometry: Geometry) -> str:
    """``backend slurm, 16 nodes x 8 GPUs = 128 ranks, DDP over nccl``."""
    g = geometry
    if g.ngpu > 0:
        per = f"{g.ngpu} {_plural(g.ngpu, 'GPU')}"
    else:
        per = f"{g.cpu_procs} {_plural(g.cpu_procs, 'CPU process', 'es')}"
    dist = f", DDP over {g.dist_backend}" if g.world_size > 1 else ", single process"
    return (
        f"backend {g.backend}, {g.num_nodes} {_plural(g.num_nodes, 'node')} "
        f"x {per} = {g.world_size} {_plural(g.world_size, 'rank')}{dist}"
    )


# ---------------------------------------------------------------------------------------
# Problems


def describe_fix(fix: GlobalBatchFix) -> str:
    """The change(s) that reach the fix's target, as a sentence."""
    target, ranks, batch, accum = fix.target, fix.ranks, fix.batch_size, fix.accum_grad
    options = []
    if fix.batch_size_alone is not None:
        options.append(f"batch_size {batch} -> {fix.batch_size_alone}")
    if fix.accum_grad_alone is not None:
        options.append(f"accum_grad {accum} -> {fix.accum_grad_alone}")
    if options:
        return "Change " + " or ".join(options)
    if fix.both is not None:
        b, a = fix.both
        return (
            f"Change batch_size {batch} -> {b} and accum_grad {accum} -> {a} "
            f"({target} = {ranks} ranks x {b // ranks} x {a})"
        )
    step = ranks * accum
    near = " or ".join(f"{g} = {ranks} ranks x {g // step} x {accum}" for g in fix.nearest)
    return (
        f"{target} is not a multiple of {ranks} ranks, so no equal per-rank micro-batch "
        f"gives it: use a number of ranks that divides {target}, or change "
        f"global_batch_utts (e.g. {near})"
    )


@functools.singledispatch
def describe_problem(problem) -> str:
    """One problem of :class:`~espnet_ext.distributed.batch.BatchArithmetic`, as a sentence."""
    raise TypeError(f"not a batch problem: {problem!r}")


@describe_problem.register
def _(p: TooFewUtterances) -> str:
    fix = describe_fix(p.fix) if p.fix else f"Change batch_size {p.batch_size} -> {p.ranks} or more"
    return (
        f"batch_size {p.batch_size} is smaller than the {p.ranks} ranks: ESPnet needs at least one "
        "utterance per rank in every micro-batch. " + fix
    )


@describe_problem.register
def _(p: PerRankMismatch) -> str:
    B, W, M, G, want = p.batch_size, p.ranks, p.micro_batch_per_rank, p.global_batch_utts, p.new_batch_size
    if p.new_accum_grad is not None:
        fix = (
            f"Change batch_size {B} -> {want} and accum_grad {p.accum_grad} -> {p.new_accum_grad} "
            f"({G} = {W} ranks x {M} x {p.new_accum_grad})"
        )
    else:
        fix = f"Change batch_size {B} -> {want}" + (
            f"; {G} is not a multiple of {want}: change global_batch_utts too" if G else ""
        )
    return (
        f"{p.config or 'no --config'} is sized for micro_batch_per_rank {M} utterances per rank, "
        f"but batch_size {B} over {W} {_plural(W, 'rank')} gives {p.per_rank} per rank. " + fix
    )


@describe_problem.register
def _(p: GlobalBatchMismatch) -> str:
    return (
        f"the global batch would be {p.utts_per_step} utterances per optimizer step "
        f"({p.utts_per_micro_batch} per micro-batch x accum_grad {p.accum_grad}), but "
        f"{p.global_batch_source} is {p.global_batch_utts}. " + describe_fix(p.fix)
    )


@describe_problem.register
def _(p: UnequalSplit) -> str:
    return (
        f"{p.global_batch_utts} utterances per step do not split into equal micro-batches on "
        f"{p.ranks} ranks (batch_size {p.batch_size} / {p.ranks} ranks = "
        f"{p.batch_size / p.ranks:.2f}). " + describe_fix(p.fix)
    )


@describe_problem.register
def _(p: BinsCannotHoldGlobalBatch) -> str:
    G, t = p.global_batch_utts, p.batch_type
    return (
        f"{p.global_batch_source} is {G}, but batch_type {t} sizes micro-batches by batch_bins, "
        f"not utterances, so the global batch cannot be held to {G}. Change batch_type {t} -> "
        f"sorted with batch_size x accum_grad = {G}"
    )


def refusal_messages(arithmetic: BatchArithmetic) -> List[str]:
    """The ``launch: error:`` lines for a launch the arithmetic stops (fatal problems first:
    when there are any, the accept-able ones are not worth mentioning)."""
    if arithmetic.fatal:
        return [f"launch: error: {describe_problem(p)}." for p in arithmetic.fatal]
    return [
        f"launch: error: {describe_problem(p)}; or pass --accept_global_batch true to launch as it is."
        for p in arithmetic.stops
    ]


# ---------------------------------------------------------------------------------------
# The arithmetic


def _utterance_lines(a: BatchArithmetic) -> List[str]:
    B, W, A = a.batch_size, a.ranks, a.accum_grad
    upto = "up to " if a.upper_bound else ""
    lines = [
        f"batch arithmetic ({a.config or 'no --config'}; batch_type {a.batch_type}; ESPnet's "
        "batch_size counts a micro-batch across all ranks):"
    ]
    if B >= W and a.remainder == 0:
        lines.append(
            f"  {upto}{B * A} utterances = {W} {_plural(W, 'rank')} x {a.per_rank} per "
            f"micro-batch x {A} {_plural(A, 'accumulation step')}"
        )
        if W > 1:
            lines.append(
                f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks = {a.per_rank} per rank"
            )
    elif B >= W and a.sharded:
        lines.append(
            f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks: the sharded "
            f"iterator gives each rank {a.per_rank} ({a.utts_per_micro_batch} per micro-batch, "
            f"{a.remainder} unused)"
        )
    elif B >= W:
        lines.append(
            f"  micro-batch: batch_size {upto}{B} utterances over {W} ranks = {a.per_rank + 1} "
            f"on {a.remainder} ranks, {a.per_rank} on {W - a.remainder} (unequal)"
        )
    lines.append(f"  utterances per optimizer step: {a.utts_per_micro_batch} x {A} = {upto}{a.utts_per_step}")
    if a.upper_bound:
        lines.append("  (folded: micro-batches of long utterances are smaller, so these are upper bounds)")
    if a.global_batch_matches:
        lines.append(f"  global_batch_utts {a.global_batch_utts}: matches")
    return lines


def _bin_lines(a: BatchArithmetic) -> List[str]:
    W, A = a.ranks, a.accum_grad
    return [
        f"batch arithmetic ({a.config or 'no --config'}; batch_type {a.batch_type}: micro-batches "
        "are sized by batch_bins, so utterances per step vary):",
        f"  micro-batch: batch_bins {a.batch_bins:,}"
        + (f" over {W} ranks = ~{a.batch_bins // W:,} per rank" if W > 1 else "")
        + f"; x {A} {_plural(A, 'accumulation step')} = {a.bins_per_step:,} bins per optimizer step",
    ]


def _sync_lines(a: BatchArithmetic) -> List[str]:
    if a.grad_allreduces_per_step is None:
        return []
    if a.accum_no_sync:
        return [
            f"  gradient all-reduces per optimizer step: 1 (accum_no_sync true; "
            f"ESPnet's stock trainer: {a.accum_grad})"
        ]
    return [
        f"  gradient all-reduces per optimizer step: {a.accum_grad} (one per micro-batch; "
        "accum_no_sync true makes it 1)"
    ]


def _data_and_epoch_lines(a: BatchArithmetic) -> List[str]:
    n_iter, micro = a.num_iters_per_epoch, a.micro_batches_per_pass
    if a.data is None:
        if n_iter is None:
            return []
        return [
            f"  ESPnet epoch: num_iters_per_epoch {n_iter:,} micro-batches = {a.steps_per_epoch:,} "
            f"optimizer steps; max_epoch {a.max_epoch} -> {a.total_steps:,} optimizer steps "
            "(give --data_hours or --data_utts for passes over the data)"
        ]
    lines = [f"  data: {a.data.source}"]
    if micro is None:
        return lines
    if a.by_utterances:
        lines.append(
            f"    -> {micro:,} micro-batches = {a.steps_per_pass:,} optimizer steps per pass over the data"
        )
    else:
        lines.append(
            f"    -> ~{micro:,} micro-batches = ~{a.steps_per_pass:,} optimizer steps per pass "
            f"({a.data.numel:,} bins / batch_bins {a.batch_bins:,})"
        )
    if n_iter is not None:
        lines.append(
            f"  ESPnet epoch: num_iters_per_epoch {n_iter:,} micro-batches = "
            f"{a.steps_per_epoch:,} optimizer steps ({a.passes_per_epoch:.3g} passes over the data)"
        )
        lines.append(
            f"  training: max_epoch {a.max_epoch} x {a.steps_per_epoch:,} = "
            f"{a.total_steps:,} optimizer steps = {a.total_passes:.3g} passes over the data"
        )
    else:
        lines.append(
            f"  ESPnet epoch = one pass; max_epoch {a.max_epoch} -> {a.total_steps:,} optimizer steps"
        )
    return lines


def arithmetic_lines(arithmetic: BatchArithmetic) -> List[str]:
    """The batch arithmetic, a heading and indented lines."""
    a = arithmetic
    lines = _utterance_lines(a) if a.by_utterances else _bin_lines(a)
    return lines + _sync_lines(a) + _data_and_epoch_lines(a)


# ---------------------------------------------------------------------------------------
# Commands and the whole report


def plan_lines(plan: LaunchPlan) -> List[str]:
    """The exact files (written at launch) and commands of ``plan``."""
    lines = []
    for path, content in plan.files.items():
        lines.append(f"# ---- {path} (written at launch) ----")
        lines += content.rstrip("\n").split("\n")
        lines.append(f"# ---- end of {path} ----")
    return lines + [shlex.join(p.argv) for p in plan.processes]


def submitted_lines(job_id: str, log: str) -> List[str]:
    """What the launcher prints after ``sbatch --parsable`` (``--wait false``)."""
    return [
        f"launch: submitted job {job_id} (not waiting for it)",
        f"  follow it:  squeue -j {job_id}   tail -f {log}",
        f"  stop it:    scancel {job_id}   (a requeued job keeps its id)",
    ]


def launch_report(
    *,
    job_name: str,
    geometry: Geometry,
    arithmetic: BatchArithmetic,
    dry_run: bool,
    plan: Optional[LaunchPlan] = None,
    schedule: Optional[Schedule] = None,
) -> List[str]:
    """What the launcher prints: the geometry, the arithmetic and, when the launch goes
    ahead (``plan`` given), the problems accepted and the commands."""
    lines = [
        f"launch {job_name}{' (dry run: nothing runs)' if dry_run else ''}: {describe_geometry(geometry)}"
    ]
    lines += arithmetic_lines(arithmetic)
    lines += schedule_lines(schedule) if schedule is not None else []
    if plan is None:
        return lines
    lines += [f"  accepted (--accept_global_batch true): {describe_problem(p)}" for p in arithmetic.stops]
    lines += [
        f"  accepted (--accept_passes true): {describe_schedule_problem(p)}"
        for p in (schedule.stops if schedule is not None else ())
    ]
    lines.append("commands:" if plan.files or len(plan.processes) > 1 else "command:")
    return lines + plan_lines(plan)
