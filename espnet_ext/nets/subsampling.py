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


def _zero_padding_(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero, in place, frames >= lengths of a (B, C, T, F) conv output.

    In place is safe on a conv output (the conv's backward does not need it) and
    saves a full copy of the largest activation in the encoder.
    """
    return x.masked_fill_(~valid_mask(lengths, x.size(2))[:, None, :, None], 0.0)


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
        x = torch.relu_(_zero_padding_(x, lengths))
        x = self.conv2(x)  # (B, C, ceil(T/4), ceil(F/4))
        lengths = ceil_div(lengths, 2)
        x = torch.relu_(_zero_padding_(x, lengths))
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return x, lengths
