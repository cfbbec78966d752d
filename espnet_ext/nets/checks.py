"""Validation of ``ssl_conformer``'s configuration and forward inputs.

Each check raises ValueError naming the offending option or argument, so a wrong
``encoder_conf`` fails when the model is built, not deep inside a forward.
:func:`require_positive` also serves the BEST-RQ loss and masking configs.

Checks of tensor *values* in a forward go through :func:`check_values`, which
never makes the host wait for an accelerator: a ValueError on CPU, an
asynchronous device-side assert on GPU and inside ``torch.compile`` graphs.
"""

import math
from typing import Callable, Optional

import torch

from espnet_ext.nets.conformer_blocks import _ACTIVATIONS
from espnet_ext.nets.lengths import valid_mask


def require_positive(owner: str, **values: int) -> None:
    """Raise ValueError for the first of ``values`` below 1.

    Args:
        owner: config name the message starts with (``"best_rq"``, ...).
        **values: option name -> integer value, checked in the order given.
    """
    for name, value in values.items():
        if value < 1:
            raise ValueError(f"{owner}: {name} must be >= 1, got {value}")


def check_values(ok: torch.Tensor, message: Callable[[], str]) -> None:
    """Fail unless every element of the bool tensor ``ok`` is True, without a host sync.

    * eager on CPU: the values are host memory already, so read them and raise
      ``ValueError(message())`` (the message may format tensor values);
    * on an accelerator (CUDA, ...): ``torch._assert_async``, a device-side
      assert; a violation fails a later synchronizing call with a RuntimeError,
      but a correct batch never stalls the device queue;
    * while ``torch.compile`` traces (any device): ``torch._assert_async`` too,
      so the check stays in the graph instead of breaking it.

    Args:
        ok: bool tensor of any shape, True where the input is valid.
        message: builds the error text; called only on failure (CPU eager).
    """
    if torch.compiler.is_compiling() or ok.device.type != "cpu":
        torch._assert_async(ok.all())
    elif not bool(ok.all()):
        raise ValueError(message())


def check_config(
    *,
    input_size: int,
    output_size: int,
    attention_heads: int,
    linear_units: int,
    num_blocks: int,
    dropout_rate: float,
    positional_dropout_rate: float,
    attention_dropout_rate: float,
    input_layer: Optional[str],
    normalize_before: bool,
    activation_type: str,
    cnn_module_kernel: int,
    cnn_module_norm: str,
    subsampling_channels: int,
    rotary_base: float,
    unsupported: dict,
) -> None:
    """Raise ValueError naming the first invalid or unsupported option."""
    require_positive(
        "ssl_conformer",
        input_size=input_size,
        output_size=output_size,
        attention_heads=attention_heads,
        linear_units=linear_units,
        num_blocks=num_blocks,
        subsampling_channels=subsampling_channels,
    )
    if output_size % attention_heads != 0:
        raise ValueError(
            f"ssl_conformer: output_size ({output_size}) must be divisible by "
            f"attention_heads ({attention_heads})"
        )
    if (output_size // attention_heads) % 2 != 0:
        raise ValueError(
            f"ssl_conformer: head dimension output_size / attention_heads = "
            f"{output_size // attention_heads} must be even for rotary embeddings"
        )
    for name, value in (
        ("dropout_rate", dropout_rate),
        ("positional_dropout_rate", positional_dropout_rate),
        ("attention_dropout_rate", attention_dropout_rate),
    ):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"ssl_conformer: {name} must be in [0, 1), got {value}")
    if input_layer != "conv2d":
        raise ValueError(f"ssl_conformer: input_layer must be 'conv2d' (4x subsampling), got {input_layer!r}")
    if not normalize_before:
        raise ValueError("ssl_conformer: normalize_before must be true (pre-LN residual units)")
    if activation_type not in _ACTIVATIONS:
        raise ValueError(
            f"ssl_conformer: activation_type must be one of {sorted(_ACTIVATIONS)}, got {activation_type!r}"
        )
    if cnn_module_kernel < 1 or cnn_module_kernel % 2 == 0:
        raise ValueError(
            f"ssl_conformer: cnn_module_kernel must be odd and >= 1 for 'same' "
            f"padding, got {cnn_module_kernel}"
        )
    if cnn_module_norm not in ("layer_norm", "batch_norm"):
        raise ValueError(
            f"ssl_conformer: cnn_module_norm must be 'layer_norm' or 'batch_norm', got {cnn_module_norm!r}"
        )
    if not (rotary_base > 1.0 and math.isfinite(rotary_base)):
        raise ValueError(f"ssl_conformer: rotary_base must be > 1, got {rotary_base}")
    for name, (value, neutral) in unsupported.items():
        if value != neutral:
            raise ValueError(
                f"ssl_conformer: {name}={value!r} is not supported "
                f"(only {neutral!r}); use encoder: conformer for this feature"
            )


def input_lengths(
    xs_pad: torch.Tensor,
    ilens: Optional[torch.Tensor],
    masks: Optional[torch.Tensor],
    input_size: int,
) -> torch.Tensor:
    """Check ``SSLConformerEncoder.forward``'s inputs, return the valid lengths.

    Args:
        xs_pad: (B, T, input_size) features.
        ilens: (B,) integer valid frame counts, or None.
        masks: (B, T') bool with T' <= T, True at padding frames, or None.
        input_size: F, the encoder's feature dimension.

    Returns:
        (B,) long lengths on ``xs_pad``'s device, each in [1, T].

    Raises:
        ValueError: on a wrong shape or dtype, neither ``ilens`` nor ``masks``,
            ``masks`` that are not right padding, or the two disagreeing. The
            value checks (the last three) raise only for CPU tensors in eager
            mode; on an accelerator or under ``torch.compile`` they are
            asynchronous device-side asserts (:func:`check_values`).
    """
    if xs_pad.dim() != 3 or xs_pad.size(-1) != input_size:
        raise ValueError(f"xs_pad must be (batch, frames, {input_size}), got shape {tuple(xs_pad.shape)}")
    batch, frames = xs_pad.shape[:2]
    if ilens is None and masks is None:
        raise ValueError("give ilens or masks: neither was given")
    if ilens is not None and (
        ilens.shape != (batch,) or ilens.dtype.is_floating_point or ilens.dtype == torch.bool
    ):
        raise ValueError(
            f"ilens must be an integer tensor of shape ({batch},), got {ilens.dtype} {tuple(ilens.shape)}"
        )
    if masks is not None:
        if masks.dim() != 2 or masks.size(0) != batch or masks.size(1) > frames or masks.dtype != torch.bool:
            raise ValueError(
                f"masks must be bool of shape ({batch}, <= {frames}) with True "
                f"at padding, got {masks.dtype} {tuple(masks.shape)}"
            )
        mask_lengths = (~masks).sum(-1)
        check_values(
            masks == ~valid_mask(mask_lengths, masks.size(1)),
            lambda: "masks must mark padding only at the end of each utterance (like make_pad_mask(ilens))",
        )
        if ilens is not None:
            check_values(
                mask_lengths == ilens.to(mask_lengths),
                lambda: (
                    f"masks and ilens disagree: masks give lengths "
                    f"{mask_lengths.tolist()}, ilens {ilens.tolist()}"
                ),
            )
        lengths = mask_lengths
    else:
        lengths = ilens
    lengths = lengths.to(device=xs_pad.device, dtype=torch.long)
    check_values(
        (lengths >= 1) & (lengths <= frames),
        lambda: f"every length must be in [1, {frames}] (frames in xs_pad), got {lengths.tolist()}",
    )
    return lengths
