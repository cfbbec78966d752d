"""The frozen-encoder probe during pre-training: every N updates, :func:`run_probe` on the
encoder being trained, logged next to the masked loss (``--probe_every_steps``, off by
default).

    [probe] updates=400 probe_cer=61.20 (64 train / 32 dev utterances, 200 head updates, 3.1 CPU s)

Options (registered by :func:`add_probe_arguments` on the SSL task):
``--probe_every_steps N`` (0: off), ``--probe_train_data`` / ``--probe_dev_data``
(``feats.scp`` with ``text`` next to it, or a data dir), ``--probe_steps`` (head updates per
probe), ``--probe_max_train_utts`` / ``--probe_max_dev_utts``, ``--probe_layers``.

The probe changes nothing of the training run: the encoder is frozen for its duration and
restored (values, train mode, ``requires_grad``), and the global RNG state is restored, so
dropout masks and data order are as without it. Only rank 0 probes (the others wait at the
next gradient all-reduce). Updates are counted by the SSL model's ``global_step`` buffer
(training forwards, checkpointed), so the schedule survives a resume.
"""

import argparse
import logging
from typing import List, Optional

import torch

from espnet_ext.train.hooks import IterationHook

logger = logging.getLogger(__name__)


def add_probe_arguments(parser: argparse.ArgumentParser) -> None:
    from espnet2.utils.types import int_or_none, str_or_none

    g = parser.add_argument_group("frozen-encoder probe during pre-training (espnet_ext.probe)")
    g.add_argument(
        "--probe_every_steps",
        type=int,
        default=0,
        help="Run the CTC probe every N optimizer updates (0: never)",
    )
    g.add_argument(
        "--probe_train_data",
        type=str_or_none,
        default=None,
        help="feats.scp (text next to it) the probe's head trains on",
    )
    g.add_argument(
        "--probe_dev_data",
        type=str_or_none,
        default=None,
        help="feats.scp (text next to it) the probe's CER is measured on",
    )
    g.add_argument("--probe_steps", type=int, default=200, help="Head updates per probe")
    g.add_argument("--probe_max_train_utts", type=int_or_none, default=64)
    g.add_argument("--probe_max_dev_utts", type=int_or_none, default=32)
    g.add_argument("--probe_layers", type=str, default="all", help="1,2,3 | out | all")


class ProbeHook(IterationHook):
    """Runs :func:`run_probe` after every ``every`` optimizer updates (``accum_grad`` batches)."""

    def __init__(
        self,
        model: torch.nn.Module,
        every: int,
        accum_grad: int,
        train_batches,
        dev_batches,
        steps: int,
        layers: str,
        rank: int = 0,
    ):
        self.core = getattr(model, "module", model)
        self.every = every
        self.accum_grad = accum_grad
        self.train_batches = train_batches
        self.dev_batches = dev_batches
        self.steps = steps
        self.layers = layers
        self.rank = rank
        self.last: Optional[int] = None
        self.results: List[tuple] = []

    def updates(self) -> int:
        return int(self.core.global_step) // self.accum_grad

    def after_batch(self, iiter: int) -> None:
        if self.rank != 0 or int(self.core.global_step) % self.accum_grad:
            return
        n = self.updates()
        if n == 0 or n % self.every or n == self.last:
            return
        self.last = n
        from espnet_ext.probe.probe import ProbeBudget, run_probe

        out = run_probe(
            self.core.encoder,
            self.train_batches,
            self.dev_batches,
            ProbeBudget(steps=self.steps),
            layers=self.layers,
            return_details=True,
        )
        self.results.append((n, out["cer"]))
        logger.info(
            f"[probe] updates={n} probe_cer={out['cer']:.2f} ({sum(len(b[2]) for b in self.train_batches)} "
            f"train / {out['n_dev']} dev utterances, {self.steps} head updates, "
            f"{out['cpu_seconds']:.1f} CPU s)"
        )


_DATA_CACHE = {}


def probe_hook_from_args(
    args: argparse.Namespace, model: torch.nn.Module, accum_grad: int, rank: int = 0
) -> Optional[ProbeHook]:
    """The hook the options ask for, or None (``--probe_every_steps 0``). The probe data is
    read once per process."""
    every = getattr(args, "probe_every_steps", 0) or 0
    if every <= 0:
        return None
    if not args.probe_train_data or not args.probe_dev_data:
        raise ValueError("--probe_every_steps needs --probe_train_data and --probe_dev_data")
    from espnet_ext.probe.probe import load_probe_batches

    key = (args.probe_train_data, args.probe_dev_data, args.probe_max_train_utts, args.probe_max_dev_utts)
    if key not in _DATA_CACHE:
        _DATA_CACHE[key] = (
            load_probe_batches(args.probe_train_data, max_utts=args.probe_max_train_utts),
            load_probe_batches(args.probe_dev_data, max_utts=args.probe_max_dev_utts),
        )
    train, dev = _DATA_CACHE[key]
    return ProbeHook(model, every, accum_grad, train, dev, args.probe_steps, args.probe_layers, rank)


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def probing_trainer(base):
    """``base`` (the project's trainer class) with the probe hook added to its iteration
    hooks. The call site is these two overrides: ``build_options`` keeps the parsed
    arguments (the probe options are not trainer options), ``build_hooks`` appends the hook."""

    class ProbingTrainer(base):
        _probe_args: Optional[argparse.Namespace] = None

        @classmethod
        def build_options(cls, args):
            cls._probe_args = args
            return super().build_options(args)

        @classmethod
        def build_hooks(cls, model, options, distributed):
            hooks = super().build_hooks(model, options, distributed)
            hook = (
                probe_hook_from_args(cls._probe_args, model, options.accum_grad, _rank())
                if cls._probe_args is not None
                else None
            )
            return hooks + [hook] if hook is not None else hooks

    ProbingTrainer.__name__ = ProbingTrainer.__qualname__ = f"Probing{base.__name__}"
    return ProbingTrainer
