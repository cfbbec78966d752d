"""Mixed precision: which autocast dtype, and whether a loss scaler is used.

ESPnet (``espnet2/train/trainer.py``) builds a ``GradScaler`` whenever ``use_amp`` is set
and autocasts to bf16 on GPUs that support it (module-level ``autocast_args``). A loss
scaler exists for fp16's narrow exponent range; bf16 has fp32's, so with bf16 the scaler
only does harm: its scale doubles every 2,000 clean updates until it overflows fp32
(about 220k updates), then it skips about one update in 2,000 as non-finite.

The project's rule (:func:`amp_plan`), from ``--use_amp`` and ``--amp_dtype``:

* ``bf16`` (and ``auto`` where bf16 is supported: CUDA GPUs that report it, and CPUs):
  autocast to bf16, **no scaler**;
* ``fp16``: autocast to fp16 with a scaler, only on CUDA and only when asked for
  explicitly;
* ``auto`` on a GPU without bf16 (e.g. V100): no autocast (fp32), with a warning that
  fp16 must be asked for (``--amp_dtype fp16``).

ESPnet's loop autocasts only when its ``scaler`` argument is not None, so "no scaler"
is handed to it as a disabled ``GradScaler`` (:class:`UnscaledGradScaler`): autocast stays
on, ``scale()`` returns the loss as is, ``get_scale()`` is 1.0, and ``step()`` is
``optimizer.step()`` except on non-finite gradients, which it skips (a plain disabled
scaler would apply them: ESPnet calls ``scaler.step`` on its skip path too).
The dtype ESPnet autocasts to is its module's ``autocast_args``, set for the duration
of the epoch by :func:`espnet_autocast_dtype`. On CPU, ESPnet's ``autocast("cuda")`` is a
no-op and the training forward runs under :class:`espnet_ext.train.hooks.CpuAutocast`.
"""

import contextlib
import dataclasses
import logging
from typing import Iterator, Optional

import torch

AMP_DTYPES = ("auto", "bf16", "fp16")


@dataclasses.dataclass(frozen=True)
class AmpPlan:
    """dtype: the autocast dtype (None: no autocast, fp32); use_scaler: a real GradScaler."""

    dtype: Optional[torch.dtype]
    use_scaler: bool
    note: str = ""

    def describe(self) -> str:
        if self.dtype is None:
            what = "float32 (no autocast), no grad scaler"
        else:
            name = {torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]
            what = f"autocast {name}, " + ("with a GradScaler" if self.use_scaler else "no grad scaler")
        return what + (f" ({self.note})" if self.note else "")


def amp_plan(use_amp: bool, amp_dtype: str, device_type: str, cuda_bf16_supported: bool) -> AmpPlan:
    """The autocast dtype and whether to scale the loss.

    Args:
        use_amp: ``--use_amp``.
        amp_dtype: ``--amp_dtype``: auto, bf16 or fp16.
        device_type: "cuda" or "cpu" (where the training forward runs).
        cuda_bf16_supported: ``torch.cuda.is_bf16_supported()`` of the GPU (ignored on CPU).
    """
    if amp_dtype not in AMP_DTYPES:
        raise ValueError(f"--amp_dtype {amp_dtype!r}: must be one of {', '.join(AMP_DTYPES)}")
    if not use_amp:
        return AmpPlan(None, False, "use_amp false")
    if device_type == "cpu":
        if amp_dtype == "fp16":
            raise ValueError("--amp_dtype fp16 needs a CUDA GPU (on CPU use bf16 or auto)")
        return AmpPlan(torch.bfloat16, False, "CPU bf16 autocast: ESPnet autocasts only CUDA")
    if device_type != "cuda":
        raise ValueError(f"unknown device type {device_type!r}")
    if amp_dtype == "fp16":
        return AmpPlan(torch.float16, True, "asked for with --amp_dtype fp16")
    if cuda_bf16_supported:
        return AmpPlan(torch.bfloat16, False, "GPU supports bf16")
    if amp_dtype == "bf16":
        raise ValueError("--amp_dtype bf16: this GPU does not support bf16 (ask for fp16 explicitly)")
    return AmpPlan(None, False, "GPU without bf16; --amp_dtype fp16 would autocast to fp16 with a scaler")


def plan_for(options) -> AmpPlan:
    """The plan for this process's trainer options and device."""
    device = "cuda" if options.ngpu > 0 else "cpu"
    bf16 = device == "cuda" and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return amp_plan(bool(options.use_amp), getattr(options, "amp_dtype", "auto"), device, bf16)


def epoch_scaler(plan: AmpPlan, espnet_scaler):
    """The scaler to hand to ESPnet's ``train_one_epoch``: ESPnet's own (fp16), a disabled
    one (autocast on, nothing scaled), or None (no autocast)."""
    if plan.dtype is None:
        return None
    if plan.use_scaler:
        if espnet_scaler is None:
            raise RuntimeError("fp16 autocast needs ESPnet's GradScaler (use_amp true)")
        return espnet_scaler
    return _disabled_scaler()


try:
    from torch.amp import GradScaler as _GradScaler
except ImportError:  # older torch
    from torch.cuda.amp import GradScaler as _GradScaler


class UnscaledGradScaler(_GradScaler):
    """A disabled GradScaler (autocast on, nothing scaled) that still skips a non-finite
    update. ESPnet's loop, on a NaN/inf gradient norm, calls ``scaler.step(optimizer)`` and
    relies on the scaler to skip; a plain disabled scaler's ``step`` is ``optimizer.step()``
    and would write the NaNs into the parameters. The finiteness test is the one ESPnet's
    own skip decision uses (``torch._foreach_norm``, as in ``clip_grad_norm_``)."""

    def __init__(self):
        super().__init__("cuda", enabled=False)

    def step(self, optimizer, *args, **kwargs):
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        if grads:
            norms = torch._foreach_norm(grads)
            if not bool(torch.isfinite(torch.stack([n.to(norms[0].device) for n in norms])).all()):
                return None  # skipped, as an enabled GradScaler skips
        return optimizer.step(*args, **kwargs)


def _disabled_scaler():
    return UnscaledGradScaler()


@contextlib.contextmanager
def espnet_autocast_dtype(plan: AmpPlan) -> Iterator[None]:
    """Sets the dtype ESPnet's training loop autocasts CUDA to (its module-level
    ``autocast_args``) for the duration, and restores it."""
    import espnet2.train.trainer as espnet_trainer

    saved = espnet_trainer.autocast_args
    if plan.dtype is not None:
        espnet_trainer.autocast_args = dict(dtype=plan.dtype)
    try:
        yield
    finally:
        espnet_trainer.autocast_args = saved


def log_every_rank(message: str, level: int = logging.INFO) -> None:
    """Log on every rank: ESPnet sets non-zero ranks' root logger to ERROR, so the record
    goes straight to the root handlers (which carry the rank in their format)."""
    root = logging.getLogger()
    record = root.makeRecord(root.name, level, __file__, 0, message, None, None)
    if root.handlers:
        for handler in root.handlers:
            handler.handle(record)
    else:
        logging.log(level, message)
