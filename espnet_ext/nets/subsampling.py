"""4x convolutional subsampling of ``ssl_conformer`` (package-private block).

Subsampled length is exactly ``ceil(T / 4) = (T + 3) // 4`` and output frame
``t`` sees input frames ``4t-2 .. 4t+4`` (it always covers ``4t .. 4t+3``): the
frame alignment BEST-RQ targets use (:mod:`espnet_ext.ssl.best_rq`).
"""

from typing import Tuple

import torch
import torch.nn.functional as F

from espnet_ext.nets.lengths import ceil_div, valid_mask

# Taps of a stride-2, padding-1, 3x3 kernel that reach input rows (or columns) of
# each parity: an even row 2m only through tap 1 (from output m); an odd row
# 2m+1 through tap 2 (from output m) and tap 0 (from output m+1).
_PHASE_TAPS = ((1,), (2, 0))


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frame count after the 4x subsampling: ``ceil(T / 4) = (T + 3) // 4``.

    Args:
        lengths: (B,) integer input lengths.

    Returns:
        (B,) integer output lengths.
    """
    return ceil_div(lengths, 4)


class _MaskedReLU(torch.autograd.Function):
    """In place on a conv output: zero frames >= lengths, then ReLU.

    One backward op instead of two: the output is 0 wherever the mask or the
    ReLU zeroed it, so ReLU's own backward (``grad * (out > 0)``) already zeroes
    the padded frames, and the mask's backward would only copy the gradient.
    In place is safe on a conv output (a conv's backward does not read its
    output) and saves a full copy of the largest activation in the encoder.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        x.masked_fill_(~valid_mask(lengths, x.size(2))[:, None, :, None], 0.0).relu_()
        ctx.mark_dirty(x)
        ctx.save_for_backward(x)
        return x

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (out,) = ctx.saved_tensors
        return torch.ops.aten.threshold_backward(grad, out, 0.0), None


def _masked_relu_(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero, in place, frames >= lengths of a (B, C, T, F) conv output, then ReLU."""
    if x.requires_grad and torch.is_grad_enabled():
        return _MaskedReLU.apply(x, lengths)
    return x.masked_fill_(~valid_mask(lengths, x.size(2))[:, None, :, None], 0.0).relu_()


class _Stride2Conv3x3(torch.autograd.Function):
    """``conv2d(x, w, b, stride=2, padding=1)`` with a polyphase input gradient.

    On the CPU, oneDNN's backward-data kernel for a stride-2 3x3 convolution
    costs about 2.4x its forward and, inside a model, adds a reorder copy of the
    (B, C, 2T', 2F') input. The input gradient of a stride-2 convolution
    splits into four stride-1 convolutions of the output gradient, one per
    (row, column) parity of the input, with 1, 2, 2 and 4 of the 9 taps
    (``_PHASE_TAPS``): the same multiply-adds as the forward, through the fast
    forward kernel. The weight and bias gradients stay with ATen. Exact up to
    float summation order (tests/test_ssl_conformer.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.conv2d(x, weight, bias, stride=2, padding=1)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        # Under autocast the forward ran in grad's dtype; the backward follows it.
        grad = grad.contiguous()
        xc, wc = x.to(grad.dtype), weight.to(grad.dtype)
        need_x, need_w, need_b = ctx.needs_input_grad
        grad_x = grad_w = grad_b = None
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, xc, wc, [wc.size(0)], [2, 2], [1, 1], [1, 1], False, [0, 0], 1, [False, need_w, need_b]
            )
            grad_w = grad_w.to(weight.dtype) if need_w else None
            grad_b = grad_b.to(weight.dtype) if need_b else None
        if need_x:
            rows, cols = x.shape[2:]
            flipped = wc.transpose(0, 1)  # (C_in, C_out, 3, 3)
            grad_x = grad.new_empty(x.shape)
            # One zero row and column after the end stand for output m+1 of the
            # last odd row and column; every phase reads the same contiguous
            # tensor (a sliced input would be copied by oneDNN) and drops what
            # it does not need.
            padded = F.pad(grad, (0, 1, 0, 1))
            for r in (0, 1):
                for c in (0, 1):
                    kernel = flipped[:, :, _PHASE_TAPS[r]][:, :, :, _PHASE_TAPS[c]].contiguous()
                    phase = F.conv2d(padded, kernel)
                    grad_x[:, :, r::2, c::2] = phase[:, :, : (rows - r + 1) // 2, : (cols - c + 1) // 2]
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_w, grad_b


def _conv_stride2(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a stride-2, padding-1, 3x3 ``conv``: polyphase backward on the CPU, ATen's elsewhere."""
    if x.device.type == "cpu" and x.requires_grad and torch.is_grad_enabled():
        return _Stride2Conv3x3.apply(x, conv.weight, conv.bias)
    return conv(x)


class _Conv2dSubsampling4(torch.nn.Module):
    """Two stride-2 3x3 Conv2d + ReLU, then Linear to d_model (Gulati 2020, sec. 2).

    Time padding is (0, 2) for the first conv and (1, 1) for the second, frequency
    padding (1, 1) for both. Each conv then maps L frames to ceil(L / 2), so the
    output has exactly ceil(T / 4) frames, and output frame t sees input frames
    4t-2 .. 4t+4, centred on the 4 frames 4t .. 4t+3 it stands for (BEST-RQ,
    Chiu et al. 2022, sec. 2: one target per 4 stacked frames). Frames past each
    utterance's length are zeroed after each conv, so padding never leaks in.

    Args:
        input_size: F, feature dimension.
        output_size: D, model dimension.
        channels: C, channels of both convs.
    """

    def __init__(self, input_size: int, output_size: int, channels: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=0)
        self.conv2 = torch.nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=1)
        freq = ((input_size + 1) // 2 + 1) // 2
        self.out = torch.nn.Linear(channels * freq, output_size)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Subsample.

        Args:
            x: (B, T, F) features, zero at frames >= lengths.
            lengths: (B,) valid frame counts.

        Returns:
            (B, ceil(T/4), D) subsampled features and (B,) lengths ceil(lengths/4).
        """
        x = F.pad(x.unsqueeze(1), (1, 1, 0, 2))  # (B, 1, T + 2, F + 2)
        x = self.conv1(x)  # (B, C, ceil(T/2), ceil(F/2))
        lengths = ceil_div(lengths, 2)
        x = _masked_relu_(x, lengths)
        x = _conv_stride2(self.conv2, x)  # (B, C, ceil(T/4), ceil(F/4))
        lengths = ceil_div(lengths, 2)
        x = _masked_relu_(x, lengths)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return x, lengths
