"""Whether a training's schedule fits the data it is given, and what it costs, as values.

For the training command of a launch: the hours of data named (the shape file's frames at
100 per second, or ``--data_hours``), the passes over them that the schedule's optimizer
updates imply (updates x utterances per update / utterances of the data; bins for bin
batch types), the scheduler's ``total_steps`` against ``max_epoch x num_iters_per_epoch /
accum_grad`` (ESPnet's trainer steps a batch scheduler once per optimizer update, i.e. once
per ``accum_grad`` micro-batches, and ``num_iters_per_epoch`` counts micro-batches), and the
projected wall-clock time on the geometry's GPUs (:mod:`espnet_ext.distributed.cost`).

Problems: :class:`ScheduleMismatch` always stops the launch (the learning rate would not
follow the training: it would end early and sit at ``min_lr``, or never decay);
:class:`TooManyPasses` stops it unless ``--accept_passes true``.
"""

import dataclasses
import os
from typing import Any, Dict, Optional, Sequence, Tuple

from espnet_ext.distributed import cost
from espnet_ext.distributed.batch import BatchArithmetic
from espnet_ext.distributed.batch_settings import command_options
from espnet_ext.distributed.cost import CostProjection
from espnet_ext.distributed.geometry import Geometry

# The trainers whose input is speech features at 100 frames/s (hours and cost are known).
_SPEECH_TASKS = {"espnet_ext.bin.ssl_train": "ssl", "espnet_ext.bin.asr_train": "asr"}


@dataclasses.dataclass(frozen=True)
class ScheduleMismatch:
    """The scheduler's total_steps is not the number of optimizer updates the run makes."""

    config: Optional[str]
    scheduler: str
    total_steps: int
    total_steps_source: str
    updates: int
    max_epoch: int
    num_iters_per_epoch: int
    accum_grad: int


@dataclasses.dataclass(frozen=True)
class TooManyPasses:
    """The schedule passes over the data more often than ``max_passes``."""

    config: Optional[str]
    passes: float
    max_passes: float
    updates: int
    max_epoch: int
    num_iters_per_epoch: Optional[int]
    accum_grad: int

    @property
    def max_epoch_fit(self) -> int:
        """The largest max_epoch within max_passes (num_iters_per_epoch kept)."""
        return max(1, int(self.max_epoch * self.max_passes / self.passes))


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A training's schedule against its data; None fields are unknown."""

    task: Optional[str]  # "ssl", "asr" or None (not a speech trainer)
    updates: Optional[int]
    scheduler_total_steps: Optional[int]
    hours: Optional[float]
    hours_source: Optional[str]
    passes: Optional[float]
    max_passes: Optional[float]
    utt_seconds: float  # the mean utterance length of the data (or the assumed one)
    cost: Optional[CostProjection] = None
    cost_note: str = ""
    stops: Tuple[TooManyPasses, ...] = ()
    fatal: Tuple[ScheduleMismatch, ...] = ()


def _load(path: Optional[str]) -> Dict:
    import yaml

    if not path or not os.path.isfile(path):
        return {}
    with open(path) as f:
        return yaml.safe_load(f) or {}


def _scheduler_conf(conf: Dict, opts: Dict) -> Tuple[Dict, str]:
    """scheduler_conf as ESPnet resolves it (``--scheduler_conf k=v`` updates the config's)."""
    import yaml

    out = dict(conf.get("scheduler_conf") or {})
    source = "scheduler_conf.total_steps in the config"
    for value in opts.get("scheduler_conf", []):
        for item in value.split(","):
            if "=" in item:
                key, val = item.split("=", 1)
                out[key.strip()] = yaml.safe_load(val)
                source = "--scheduler_conf on the command line"
            else:
                parsed = yaml.safe_load(value)
                if isinstance(parsed, dict):
                    out.update(parsed)
                    source = "--scheduler_conf on the command line"
                break
    return out, source


def _task(command: Sequence[str]) -> Optional[str]:
    if "-m" in command[:-1]:
        return _SPEECH_TASKS.get(command[command.index("-m") + 1])
    return None


def _vocab_size(opts: Dict) -> Optional[int]:
    path = opts.get("token_list", [None])[-1]
    if path and os.path.isfile(path):
        with open(path) as f:
            return sum(1 for line in f if line.strip())
    return None


def check_schedule(
    command: Sequence[str],
    arithmetic: BatchArithmetic,
    geometry: Geometry,
    *,
    max_passes: Optional[float] = None,
    mean_utt_seconds: float = 15.0,
    peak_flops: float = cost.A100_BF16_PEAK_FLOPS,
) -> Schedule:
    """The schedule of ``command`` (already resolved into ``arithmetic``) on its data."""
    a = arithmetic
    opts = command_options(command)
    conf = _load(a.config)
    for key in ("scheduler",):
        if key in opts:
            conf[key] = opts[key][-1]
    task = _task(command)
    data = a.data
    updates = a.total_steps

    # Hours of the data named: frames at 100/s (shape file), or --data_hours.
    hours = source = None
    if task and data is not None and data.seconds is not None:
        hours, source = data.seconds / 3600, data.source
    utt_seconds = mean_utt_seconds
    if task and data is not None and data.seconds is not None and data.utterances:
        utt_seconds = data.seconds / data.utterances

    # Passes: an epoch is num_iters_per_epoch micro-batches, else one pass.
    passes = None
    if data is not None:
        passes = a.total_passes if a.num_iters_per_epoch is not None else float(a.max_epoch)

    # The scheduler's total_steps against the updates the run makes.
    sched_conf, sched_source = _scheduler_conf(conf, opts)
    total = sched_conf.get("total_steps")
    fatal = []
    if total is not None and a.num_iters_per_epoch is not None and updates is not None:
        if int(total) != updates:
            fatal.append(
                ScheduleMismatch(
                    a.config,
                    str(conf.get("scheduler")),
                    int(total),
                    sched_source,
                    updates,
                    a.max_epoch,
                    a.num_iters_per_epoch,
                    a.accum_grad,
                )
            )
    stops = []
    if max_passes is not None and passes is not None and passes > max_passes and updates is not None:
        stops.append(
            TooManyPasses(
                a.config, passes, max_passes, updates, a.max_epoch, a.num_iters_per_epoch, a.accum_grad
            )
        )

    projection, note = None, ""
    if task and geometry.ngpu > 0 and updates is not None and a.by_utterances:
        shape = cost.model_shape(conf, task, vocab_size=_vocab_size(opts))
        if shape is None:
            note = "no FLOP formula for this model (ssl_conformer encoder only)"
        else:
            projection = cost.project_cost(
                shape,
                total_steps=updates,
                utts_per_update=a.utts_per_step,
                utt_seconds=utt_seconds,
                gpus=geometry.world_size,
                peak_flops=peak_flops,
            )
            if shape.task == "asr" and shape.vocab_assumed:
                note = "output layers at an assumed 5,000 tokens (no token list yet)"
    return Schedule(
        task=task,
        updates=updates,
        scheduler_total_steps=int(total) if total is not None else None,
        hours=hours,
        hours_source=source,
        passes=passes,
        max_passes=max_passes,
        utt_seconds=utt_seconds,
        cost=projection,
        cost_note=note,
        stops=tuple(stops),
        fatal=tuple(fatal),
    )


def describe_schedule_problem(p: Any) -> str:
    if isinstance(p, ScheduleMismatch):
        want = p.max_epoch * p.num_iters_per_epoch // p.accum_grad
        return (
            f"{p.total_steps_source} is {p.total_steps:,}, but the run makes max_epoch {p.max_epoch} x "
            f"num_iters_per_epoch {p.num_iters_per_epoch:,} / accum_grad {p.accum_grad} = {want:,} "
            f"optimizer updates ({p.scheduler} steps once per update): the learning rate would not "
            f"follow the training. Change total_steps {p.total_steps:,} -> {want:,}, or max_epoch / "
            f"num_iters_per_epoch so that they give {p.total_steps:,}"
        )
    if isinstance(p, TooManyPasses):
        fit = p.max_epoch_fit
        n = p.num_iters_per_epoch
        updates_fit = fit * n // p.accum_grad if n is not None else None
        change = f"max_epoch {p.max_epoch} -> {fit}"
        if updates_fit is not None:
            change += f" (num_iters_per_epoch {n:,} kept: {updates_fit:,} updates; scheduler_conf.total_steps -> {updates_fit:,})"
        return (
            f"{p.updates:,} optimizer updates are {p.passes:.3g} passes over the data, more than "
            f"max_passes {p.max_passes:g}: the model would see each utterance {p.passes:.0f} times. "
            f"Change {change}, or give it more data"
        )
    raise TypeError(f"not a schedule problem: {p!r}")


def schedule_lines(s: Schedule) -> list:
    """The report's lines of a schedule (indented under the batch arithmetic)."""
    lines = []
    if s.task is None:
        return lines
    if s.hours is not None:
        passes = f" = {s.passes:.3g} passes over it" if s.passes is not None else ""
        upd = f"{s.updates:,} optimizer updates" if s.updates is not None else "the schedule"
        limit = f" (max_passes {s.max_passes:g})" if s.max_passes is not None else " (no max_passes)"
        lines.append(
            f"  schedule: {upd} over {s.hours:,.0f} h of data (mean {s.utt_seconds:.1f} s per utterance)"
            f"{passes}{limit}"
        )
    if s.scheduler_total_steps is not None and s.updates is not None and not s.fatal:
        lines.append(
            f"  scheduler total_steps {s.scheduler_total_steps:,}: matches the {s.updates:,} updates"
        )
    if s.cost is not None:
        c = s.cost
        days = ", ".join(f"{d:.3g} days at {m:.0%}" for m, d in c.days_by_mfu().items())
        lines.append(
            f"  cost (projected, not measured): {cost.fmt_flops(c.flops_per_update)} FLOPs per update "
            f"({c.utts_per_update} x {c.utt_seconds:.1f} s, espnet_ext.distributed.cost's formula) x "
            f"{c.total_steps:,} updates = {cost.fmt_flops(c.total_flops)} FLOPs; on {c.gpus} GPUs x "
            f"{c.peak_flops / 1e12:g} TFLOP/s: {days} MFU" + (f"; {s.cost_note}" if s.cost_note else "")
        )
    return lines
