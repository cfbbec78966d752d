"""4x convolutional subsampling of ``ssl_conformer`` (package-private block).

Subsampled length is exactly ``ceil(T / 4) = (T + 3) // 4`` and output frame
``t`` sees input frames ``4t-2 .. 4t+4`` (it always covers ``4t .. 4t+3``): the
frame alignment BEST-RQ targets use (:mod:`espnet_ext.ssl.best_rq`).
"""

from typing import Tuple

import torch
import torch.nn.functional as F

from espnet_ext.nets.lengths import ceil_div, valid_mask


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
    """``conv2d(x, w, b, stride=2, padding=1)`` run channels-last on the CPU.

    On the CPU, oneDNN runs this convolution about 1.5x faster with channels-last
    (NHWC) operands than with ATen's default NCHW, and its input gradient 1.6x
    faster, while its weight gradient is 3.9x slower channels-last
    (bench/subsampling_conv.py prints all three at the encoder's size). So the
    forward and the input gradient run channels-last, and the weight and bias
    gradients run in NCHW, converting the saved input once. The input arrives
    channels-last from ``_FirstConvMaskedReLU`` (an NCHW input is converted), and
    the output is channels-last; the next ops are elementwise and a reshape.
    Exact up to float summation order (tests/test_ssl_conformer.py).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        cl = torch.channels_last
        return F.conv2d(
            x.contiguous(memory_format=cl), weight.contiguous(memory_format=cl), bias, stride=2, padding=1
        )

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        # Under autocast the forward ran in grad's dtype; the backward follows it.
        xc, wc = x.to(grad.dtype), weight.to(grad.dtype)
        need_x, need_w, need_b = ctx.needs_input_grad
        conv = ([wc.size(0)], [2, 2], [1, 1], [1, 1], False, [0, 0], 1)
        grad_x = grad_w = grad_b = None
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad.contiguous(), xc.contiguous(), wc.contiguous(), *conv, [False, need_w, need_b]
            )
            grad_w = grad_w.to(weight.dtype) if need_w else None
            grad_b = grad_b.to(weight.dtype) if need_b else None
        if need_x:
            cl = torch.channels_last
            # The input gradient reads only the input's shape and layout, not its values.
            shape_only = torch.empty(x.shape, dtype=grad.dtype, memory_format=cl)
            grad_x, _, _ = torch.ops.aten.convolution_backward(
                grad.contiguous(memory_format=cl),
                shape_only,
                wc.contiguous(memory_format=cl),
                *conv,
                [True, False, False],
            )
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_w, grad_b


class _FirstConvMaskedReLU(torch.autograd.Function):
    """The first conv (1 -> C channels, 3x3, stride 2, no padding), then frames >=
    lengths zeroed and ReLU, on the CPU, for an input that needs no gradient.

    The conv is one matrix product of the 9 taps of every output pixel with the
    (C, 9) weight, so its output is written straight in the channels-last layout
    the second conv runs in (oneDNN would write NCHW, and converting to channels-last
    is a full copy of the largest activation); mask and ReLU run in place on it,
    inside this function, so autograd sees no in-place op on a view. The weight
    gradient is the product of the masked output gradient with the taps
    (bench/subsampling_conv.py times the whole block).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, lengths: torch.Tensor):
        b, _, rows, cols = x.shape
        out_rows, out_cols = (rows - 3) // 2 + 1, (cols - 3) // 2 + 1
        s_b, _, s_r, s_c = x.stride()
        taps = x.as_strided((b, out_rows, out_cols, 3, 3), (s_b, 2 * s_r, 2 * s_c, s_r, s_c)).reshape(-1, 9)
        channels = weight.size(0)
        y = torch.addmm(bias.to(taps.dtype), taps, weight.reshape(channels, 9).t().to(taps.dtype))
        y = y.view(b, out_rows, out_cols, channels)
        y.masked_fill_(~valid_mask(lengths, out_rows)[:, :, None, None], 0.0).relu_()
        ctx.save_for_backward(taps, y)
        ctx.weight_dtype = weight.dtype
        return y.permute(0, 3, 1, 2)  # (B, C, H', W'), channels-last

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        taps, y = ctx.saved_tensors
        channels = y.size(-1)
        grad = torch.ops.aten.threshold_backward(grad.permute(0, 2, 3, 1).to(y.dtype), y, 0.0)
        grad = grad.reshape(-1, channels)  # (B H' W', C)
        grad_w = torch.mm(taps.t(), grad).t().reshape(channels, 1, 3, 3).to(ctx.weight_dtype)
        grad_b = grad.sum(0).to(ctx.weight_dtype)
        return None, grad_w, grad_b, None


def _conv_first_masked_relu(conv: torch.nn.Conv2d, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """First conv of (B, 1, H, W), frames >= lengths zeroed, ReLU: channels-last on the CPU."""
    if x.device.type == "cpu" and not x.requires_grad:
        if torch.is_autocast_enabled("cpu"):
            x = x.to(torch.get_autocast_dtype("cpu"))
        return _FirstConvMaskedReLU.apply(x, conv.weight, conv.bias, lengths)
    return _masked_relu_(conv(x), lengths)


def _conv_stride2(conv: torch.nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """Apply a stride-2, padding-1, 3x3 ``conv``: channels-last on the CPU, ATen's default elsewhere."""
    if x.device.type == "cpu":
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
        lengths = ceil_div(lengths, 2)
        x = _conv_first_masked_relu(self.conv1, x, lengths)  # (B, C, ceil(T/2), ceil(F/2))
        x = _conv_stride2(self.conv2, x)  # (B, C, ceil(T/4), ceil(F/4))
        lengths = ceil_div(lengths, 2)
        x = _masked_relu_(x, lengths)
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return x, lengths
