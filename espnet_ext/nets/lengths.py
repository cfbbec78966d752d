"""Length arithmetic shared by the encoder, the BEST-RQ loss and its masking.

Every mask here is built from per-utterance lengths of right-padded batches
(ESPnet's convention: utterance b holds frames ``0 .. lengths[b] - 1``).
"""

import torch


def valid_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """Valid-frame mask, the complement of ESPnet's ``make_pad_mask``.

    Args:
        lengths: (B,) integer valid frame counts.
        length: T, frames of the padded batch.

    Returns:
        (B, T) bool, True at valid (non-padding) frames.
    """
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


def ceil_div(lengths: torch.Tensor, factor: int) -> torch.Tensor:
    """Frames left after grouping ``factor`` frames: ``ceil(L / factor)``.

    Args:
        lengths: (B,) integer lengths L.
        factor: group size (a stride or a stacking factor), >= 1.

    Returns:
        (B,) integer ``(L + factor - 1) // factor``.
    """
    return torch.div(lengths + (factor - 1), factor, rounding_mode="floor")
