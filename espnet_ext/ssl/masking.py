"""BEST-RQ span masking of input features (an ESPnet SSL util, key ``block_mask``).

``ESPnetSSLModel.encode`` calls the util registered as ``block_mask`` on the
normalized input features just before the encoder::

    masked_feats, mask_info = util(feats, pad_masks)

Spans are aligned to the encoder's subsampling: a span starts only on a multiple
of ``stride`` input frames and covers whole ``stride``-frame groups, so input
group ``g`` (frames ``stride*g .. stride*g + stride - 1``) is exactly encoder
frame ``g``, and a masked encoder frame never sees an unmasked input frame of its
own group.

Masking is applied in train AND eval mode: the SSL validation loss is the masked
prediction loss and needs masks. ESPnet's ``inference_encode`` only calls the
util when ``self.training and use_mask``, so feature extraction for downstream
use is not masked. Randomness comes from torch's global RNG, which ESPnet seeds
(``--seed``), so a run is reproducible.
"""

import math
from typing import Dict, Optional, Tuple, Union

import torch
from typeguard import typechecked

from espnet_ext.nets.checks import require_positive


def _sample_span_starts(
    num_groups: int,
    full_groups: torch.Tensor,
    span_groups: int,
    start_prob: float,
    min_one_span: bool,
) -> torch.Tensor:
    """Draw span starts per utterance.

    Args:
        num_groups: G, number of stride groups of the padded batch.
        full_groups: (B,) number of groups whose frames are all valid.
        span_groups: L, span length in groups.
        start_prob: probability that a given allowed group starts a span.
        min_one_span: force one uniformly placed span into an utterance that
            drew none (only if the utterance has room for a whole span).

    Returns:
        (B, G) bool, True where a span starts.
    """
    device = full_groups.device
    batch = full_groups.shape[0]
    group_idx = torch.arange(num_groups, device=device)
    # A span [g, g + L) must lie inside the fully valid groups.
    last_start = full_groups - span_groups  # (B,), negative: no room
    allowed = group_idx[None, :] <= last_start[:, None]  # (B, G)
    starts = (torch.rand(batch, num_groups, device=device) < start_prob) & allowed
    if min_one_span:
        need = (~starts.any(dim=1)) & (last_start >= 0)  # (B,)
        # Uniform start in [0, last_start], one draw per utterance. Drawn for
        # every batch, used only where ``need``: skipping the draw when no
        # utterance needs it would read ``need`` on the host (a device sync).
        pos = torch.rand(batch, device=device) * (last_start + 1).clamp(min=1)
        pos = pos.long().clamp(max=num_groups - 1)
        forced = group_idx[None, :] == pos[:, None]  # (B, G), one True per row
        starts = starts | (forced & need[:, None])
    return starts


def _expand_spans(starts: torch.Tensor, span_groups: int) -> torch.Tensor:
    """(B, G) span starts -> (B, G) masked groups: any start in [g - L + 1, g]."""
    csum = torch.cumsum(starts.long(), dim=1)  # (B, G)
    shifted = torch.nn.functional.pad(csum, (span_groups, 0))[:, : csum.shape[1]]
    return (csum - shifted) > 0


class BestRQMasking(torch.nn.Module):
    """Fixed-length span masking with noise replacement (BEST-RQ, sec. 3.2).

    Args:
        mask_prob: probability that an input frame starts a span (paper sec. 4:
            0.01). Starts are only allowed on group boundaries, so each group
            starts a span with probability ``min(1, stride * mask_prob)``: the
            same expected number of starts per second.
        span_ms: span length in milliseconds (paper sec. 4: 400 ms); rounded to
            a whole number of ``stride``-frame groups (at least one).
        frame_shift_ms: hop of the input features in milliseconds.
        stride: the encoder's subsampling factor (4 for ``ssl_conformer``);
            must equal the BEST-RQ loss's ``stack_frames``.
        noise_std: masked frames are replaced by N(0, noise_std^2) noise
            (paper sec. 3.2: 0.1).
        min_one_span: give every utterance that can hold a whole span at least
            one span (a short utterance often draws none at p = 0.01).
    """

    @typechecked
    def __init__(
        self,
        mask_prob: float = 0.01,
        span_ms: float = 400.0,
        frame_shift_ms: float = 10.0,
        stride: int = 4,
        noise_std: float = 0.1,
        min_one_span: bool = True,
    ):
        super().__init__()
        if not 0.0 <= mask_prob <= 1.0:
            raise ValueError(f"block_mask: mask_prob must be in [0, 1], got {mask_prob}")
        if span_ms <= 0 or frame_shift_ms <= 0:
            raise ValueError(
                f"block_mask: span_ms and frame_shift_ms must be > 0, got {span_ms} and {frame_shift_ms}"
            )
        require_positive("block_mask", stride=stride)
        if noise_std < 0:
            raise ValueError(f"block_mask: noise_std must be >= 0, got {noise_std}")
        self.mask_prob = float(mask_prob)
        self.stride = stride
        self.noise_std = float(noise_std)
        self.min_one_span = min_one_span
        span_frames = span_ms / frame_shift_ms
        self.span_groups = max(1, int(round(span_frames / stride)))
        self.group_start_prob = min(1.0, stride * self.mask_prob)

    def extra_repr(self) -> str:
        return (
            f"mask_prob={self.mask_prob}, span_frames={self.span_groups * self.stride}, "
            f"stride={self.stride}, noise_std={self.noise_std}, "
            f"min_one_span={self.min_one_span}"
        )

    def forward(
        self, feats: torch.Tensor, pad_masks: Optional[torch.Tensor] = None
    ) -> Tuple[torch.Tensor, Dict[str, Union[torch.Tensor, int]]]:
        """Mask spans of ``feats``.

        Args:
            feats: (B, T, F) normalized input features.
            pad_masks: (B, T) bool, True at padded frames (ESPnet's
                ``make_pad_mask``); None means every frame is valid.

        Returns:
            masked feats (B, T, F), a new tensor (the input is not modified);
            mask_info dict:
                ``input_mask`` (B, T) bool, True at masked input frames;
                ``encoder_mask`` (B, ceil(T / stride)) bool, True at masked
                encoder frames (= masked groups);
                ``stride`` int.
        """
        if feats.dim() != 3:
            raise ValueError(f"block_mask: feats must be (batch, frames, dim), got {tuple(feats.shape)}")
        batch, frames, _ = feats.shape
        if pad_masks is None:
            lengths = torch.full((batch,), frames, dtype=torch.long, device=feats.device)
        else:
            if pad_masks.shape != (batch, frames):
                raise ValueError(
                    f"block_mask: pad_masks {tuple(pad_masks.shape)} does not match "
                    f"feats {tuple(feats.shape)}"
                )
            lengths = (~pad_masks).sum(dim=1)
        num_groups = math.ceil(frames / self.stride)
        full_groups = torch.div(lengths, self.stride, rounding_mode="floor")

        if self.group_start_prob > 0.0:
            starts = _sample_span_starts(
                num_groups,
                full_groups,
                self.span_groups,
                self.group_start_prob,
                self.min_one_span,
            )
            encoder_mask = _expand_spans(starts, self.span_groups)
        else:
            encoder_mask = torch.zeros(batch, num_groups, dtype=torch.bool, device=feats.device)
        input_mask = encoder_mask.repeat_interleave(self.stride, dim=1)[:, :frames]

        noise = torch.randn_like(feats) * self.noise_std
        masked = torch.where(input_mask.unsqueeze(-1), noise, feats)
        return masked, {
            "input_mask": input_mask,
            "encoder_mask": encoder_mask,
            "stride": self.stride,
        }
