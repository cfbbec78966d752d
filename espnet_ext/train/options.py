"""The trainer's options: one dataclass, its command-line arguments and one validator.

ESPnet builds :class:`ExtTrainerOptions` from the parsed arguments (``Trainer.build_options``)
and hands it to every trainer method. argparse checks values given on the command line;
values from a YAML config bypass argparse's types, so :func:`check_options` checks them all
again before training starts.

The launcher's options (``global_batch_utts`` etc.) are not here: the trainer never reads
them (see :mod:`espnet_ext.tasks.launcher`).
"""

import argparse
import dataclasses
import math
from typing import Any, Optional

from espnet2.train.trainer import TrainerOptions
from espnet2.utils.types import int_or_none, str2bool

from espnet_ext.train.amp import AMP_DTYPES
from espnet_ext.train.compile import COMPILE_MODES, add_compile_arguments
from espnet_ext.train.stats import STATS_REDUCE


@dataclasses.dataclass
class ExtTrainerOptions(TrainerOptions):
    """ESPnet's trainer options plus no-sync accumulation, mixed precision, per-rank seeds,
    fewer collectives and crash safety."""

    accum_no_sync: bool = False
    amp_dtype: str = "auto"
    seed_per_rank: bool = True
    stats_reduce: str = "update"
    save_every_steps: Optional[int] = None
    save_every_minutes: Optional[float] = 5.0
    keep_step_checkpoints: int = 3
    max_nonfinite_steps: Optional[int] = 100
    nonfinite_window: Optional[int] = 2000
    watchdog_minutes: Optional[float] = 10.0
    torch_compile: str = "none"
    torch_compile_backend: str = "inductor"


def check_options(options) -> None:
    """Reject bad resilience settings (also those from a YAML config, which argparse does
    not type-check) before training starts."""

    def bad(name: str, value: Any, rule: str) -> None:
        raise ValueError(f"--{name} {value!r}: {rule}")

    def number(name: str, value: Any, kind: type) -> bool:
        if value is None:
            return False
        if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
            bad(name, value, f"must be {'a number' if kind is float else 'an integer'} or null")
        return True

    if number("save_every_steps", options.save_every_steps, int) and options.save_every_steps < 1:
        bad("save_every_steps", options.save_every_steps, "must be >= 1 (or null: off)")
    if number("save_every_minutes", options.save_every_minutes, float) and not options.save_every_minutes > 0:
        bad("save_every_minutes", options.save_every_minutes, "must be > 0 (or null: off)")
    if (
        not number("keep_step_checkpoints", options.keep_step_checkpoints, int)
        or options.keep_step_checkpoints < 1
    ):
        bad("keep_step_checkpoints", options.keep_step_checkpoints, "must be an integer >= 1")
    if number("max_nonfinite_steps", options.max_nonfinite_steps, int) and options.max_nonfinite_steps < 0:
        bad("max_nonfinite_steps", options.max_nonfinite_steps, "must be >= 0 (or null: no limit)")
    if number("nonfinite_window", options.nonfinite_window, int) and options.nonfinite_window < 1:
        bad("nonfinite_window", options.nonfinite_window, "must be >= 1 (or null: the whole run)")
    if options.amp_dtype not in AMP_DTYPES:
        bad("amp_dtype", options.amp_dtype, f"must be one of {', '.join(AMP_DTYPES)}")
    if options.stats_reduce not in STATS_REDUCE:
        bad("stats_reduce", options.stats_reduce, f"must be one of {', '.join(STATS_REDUCE)}")
    if options.torch_compile not in COMPILE_MODES:
        bad("torch_compile", options.torch_compile, f"must be one of {', '.join(COMPILE_MODES)}")
    if not isinstance(options.seed_per_rank, bool):
        bad("seed_per_rank", options.seed_per_rank, "must be true or false")
    if number("watchdog_minutes", options.watchdog_minutes, float) and not options.watchdog_minutes > 0:
        bad("watchdog_minutes", options.watchdog_minutes, "must be > 0 (or null: off)")
    saving = options.save_every_steps is not None or options.save_every_minutes is not None
    if saving and getattr(options, "sharded_ddp", False):
        raise ValueError("step checkpoints do not support --sharded_ddp (sharded optimizer states)")


# -- argparse types ------------------------------------------------------------------------


def _positive_int_or_none(value: str) -> Optional[int]:
    number = int_or_none(value)
    if number is not None and number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1 or none, got {value}")
    return number


def _nonnegative_int_or_none(value: str) -> Optional[int]:
    number = int_or_none(value)
    if number is not None and number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 or none, got {value}")
    return number


def _positive_float_or_none(value: str) -> Optional[float]:
    if value.strip().lower() in ("none", "null", "nil"):
        return None
    number = float(value)
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be > 0 or none, got {value}")
    return number


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return number


def add_trainer_arguments(parser: argparse.ArgumentParser) -> None:
    """The command-line arguments of :class:`ExtTrainerOptions`'s own fields."""
    group = parser.add_argument_group("espnet_ext trainer")
    group.add_argument(
        "--accum_no_sync",
        type=str2bool,
        default=False,
        help="With DDP and accum_grad > 1, all-reduce gradients only on the last "
        "micro-batch of each accumulation window (same result, 1/accum_grad of the traffic)",
    )
    group.add_argument(
        "--amp_dtype",
        choices=AMP_DTYPES,
        default="auto",
        help="With --use_amp true: bf16 autocasts to bf16 with no loss scaler (CUDA with bf16 "
        "support, or CPU); fp16 autocasts to fp16 with a GradScaler (CUDA only, only when asked "
        "for); auto = bf16 where supported, else float32 (see espnet_ext.train.amp)",
    )
    group.add_argument(
        "--seed_per_rank",
        type=str2bool,
        default=True,
        help="Each DDP rank draws its own random numbers (masks, noise, SpecAugment, dropout) "
        "from (seed, epoch, rank); rank 0 keeps ESPnet's seed + epoch. false: every rank "
        "draws the same, as stock ESPnet",
    )
    group.add_argument(
        "--stats_reduce",
        choices=STATS_REDUCE,
        default="update",
        help="With DDP: reduce the reported statistics across ranks once per optimizer update "
        "(update) or log interval (log_interval), in one all-reduce, and drop ESPnet's "
        "per-micro-batch stop flag (epoch lengths are checked equal once per epoch); "
        "micro_batch: ESPnet's per-micro-batch collectives. The update is the same",
    )
    add_compile_arguments(parser)
    group = parser.add_argument_group("espnet_ext crash safety")
    group.add_argument(
        "--save_every_steps",
        type=_positive_int_or_none,
        default=None,
        help="Write a step checkpoint every N optimizer updates (none: off)",
    )
    group.add_argument(
        "--save_every_minutes",
        type=_positive_float_or_none,
        default=5.0,
        help="Write a step checkpoint at the first update boundary M minutes after the "
        "previous one (none: off). Bounds the work a crash loses to about M minutes",
    )
    group.add_argument(
        "--keep_step_checkpoints",
        type=_positive_int,
        default=3,
        help="Step checkpoints kept in <output_dir>/step_checkpoints (newest first)",
    )
    group.add_argument(
        "--max_nonfinite_steps",
        type=_nonnegative_int_or_none,
        default=100,
        help="Stop with an error once more than this many of the last --nonfinite_window "
        "optimizer updates (counted across resumes) were skipped for a NaN/inf loss or "
        "gradient (none: no limit)",
    )
    group.add_argument(
        "--nonfinite_window",
        type=_positive_int_or_none,
        default=2000,
        help="The window of --max_nonfinite_steps: the last N optimizer updates (none: the "
        "whole run). The default 2000 is an fp16 GradScaler's growth interval; 100 in 2000 "
        "is a 5%% skip rate",
    )
    group.add_argument(
        "--watchdog_minutes",
        type=_positive_float_or_none,
        default=10.0,
        help="Exit a rank (code 124, rank named in the log) when no micro-batch "
        "completes for this long during training or validation (none: off)",
    )
