"""BEST-RQ masked prediction loss with a random-projection quantizer.

Chiu et al., "Self-supervised Learning with Random-projection Quantizer for
Speech Recognition", ICML 2022 (arXiv 2202.01855).

Plugs into ``espnet2.ssl.espnet_model.ESPnetSSLModel`` as the loss ``best_rq``;
it requests the util ``block_mask`` (``espnet_ext.ssl.masking.BestRQMasking``)
and these model outputs:

* ``frontend`` / ``frontend_lengths``: input features before SpecAugment and
  normalization, (B, T, F); targets are computed from them.
* ``mask_info``: from ``block_mask``; ``encoder_mask`` (B, ceil(T / 4)) marks
  masked encoder frames.
* ``encoder_output`` (list of (B, T', D), one per layer) and
  ``encoder_output_lengths``.

Alignment rule: encoder frame t is predicted from targets of input frames
``stack*t .. stack*t + stack - 1``; target count is ``ceil(T / stack)``. If the
encoder yields a different number of frames (ESPnet's conv2d gives
``((T - 1) // 2 - 1) // 2``, up to 2 fewer), both sequences are aligned at
their first frame and frames beyond the shorter of the two are ignored. A
difference of more than ``_MAX_LENGTH_MISMATCH`` frames means the encoder's
subsampling is not ``stack_frames`` and raises ValueError.
"""

import math
from typing import Dict, List, Tuple

import torch
import torch.nn.functional as F
from espnet2.ssl.loss.abs_loss import AbsSSLLoss
from typeguard import typechecked

from espnet_ext.nets.checks import check_values, require_positive
from espnet_ext.nets.lengths import ceil_div, valid_mask

_MAX_LENGTH_MISMATCH = 2
# Frames per chunk of the nearest-code search, bounds the (frames, codebook)
# similarity matrix to about 128 MB at codebook size 8192.
_CHUNK_ELEMENTS = 1 << 25


def _stack_normalized(
    feats: torch.Tensor, lengths: torch.Tensor, stack: int, eps: float = 1e-5
) -> torch.Tensor:
    """Per-utterance mean/variance normalize valid frames, then stack.

    Normalized inputs keep the random projection from collapsing onto a few
    codes (paper sec. 3.1).

    Args:
        feats: (B, T, F) features.
        lengths: (B,) valid frames.
        stack: frames per target.

    Returns:
        (B, ceil(T / stack), stack * F) float32; padded frames are zero.
    """
    feats = feats.float()
    batch, frames, dim = feats.shape
    valid = valid_mask(lengths, frames).unsqueeze(-1)  # (B, T, 1)
    count = lengths.clamp(min=1).to(feats.dtype)[:, None, None]  # (B, 1, 1)
    mean = (feats * valid).sum(dim=1, keepdim=True) / count
    centered = (feats - mean) * valid
    var = (centered * centered).sum(dim=1, keepdim=True) / count
    normed = centered * torch.rsqrt(var + eps)
    groups = math.ceil(frames / stack)
    normed = F.pad(normed, (0, 0, 0, groups * stack - frames))
    return normed.reshape(batch, groups, stack * dim)


def _codebook_perplexity(
    targets: torch.Tensor, valid: torch.Tensor, codebook_size: int
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Perplexity exp(H) and number of distinct codes of the valid code ids.

    Counts are a weighted scatter over all frames instead of a ``bincount`` of
    the selected ones, whose shape would depend on the data (a host sync).

    Args:
        targets: (B, T) long code ids.
        valid: (B, T) bool, frames to count.
        codebook_size: K.

    Returns:
        perplexity and distinct-code count as float32 0-dim tensors; both 0
        if no frame is valid.
    """
    counts = torch.zeros(codebook_size, dtype=torch.float32, device=targets.device)
    counts = counts.scatter_add(0, targets.reshape(-1), valid.reshape(-1).float())
    total = counts.sum()
    probs = counts / total.clamp(min=1.0)
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum()
    nonempty = total > 0
    ppl = torch.where(nonempty, torch.exp(entropy), torch.zeros_like(entropy))
    return ppl, (counts > 0).sum().float()


class BestRQLoss(AbsSSLLoss):
    """Masked prediction of frozen random-projection codes (BEST-RQ, sec. 3).

    Args:
        encoder_output_size: D, encoder output dimension (given by ESPnet).
        input_size: F, feature dimension (80 log-Mel channels).
        stack_frames: input frames per target; equals the encoder's
            subsampling factor (paper sec. 4: 4 frames).
        codebook_size: codes per codebook (paper sec. 4: 8192).
        codebook_dim: dimension of the projection and codes (paper: 16).
        num_codebooks: independent (projection, codebook, softmax head)
            triples; their losses are averaged (paper sec. 3, multiple
            codebooks).
        seed: seed of the local generator that draws the frozen projection and
            codebooks, so every rank and every resume sees the same quantizer.
        layer: index into the list of encoder layer outputs (-1: last).
    """

    @typechecked
    def __init__(
        self,
        encoder_output_size: int,
        input_size: int = 80,
        stack_frames: int = 4,
        codebook_size: int = 8192,
        codebook_dim: int = 16,
        num_codebooks: int = 1,
        seed: int = 0,
        layer: int = -1,
    ):
        super().__init__()
        require_positive(
            "best_rq",
            encoder_output_size=encoder_output_size,
            input_size=input_size,
            stack_frames=stack_frames,
            codebook_size=codebook_size,
            codebook_dim=codebook_dim,
            num_codebooks=num_codebooks,
        )
        self.input_size = input_size
        self.stack_frames = stack_frames
        self.codebook_size = codebook_size
        self.codebook_dim = codebook_dim
        self.num_codebooks = num_codebooks
        self.seed = seed
        self.layer = layer

        self.util_attributes = {"block_mask"}
        self.required_inputs = {
            "encoder_output",
            "encoder_output_lengths",
            "frontend",
            "frontend_lengths",
            "mask_info",
        }

        projection, codebooks = self._draw_quantizer()
        # Frozen, persistent buffers: saved in checkpoints, never trained.
        self.register_buffer("projection", projection)  # (N, stack*F, dim)
        self.register_buffer("codebooks", codebooks)  # (N, K, dim), unit rows
        self.heads = torch.nn.ModuleList(
            torch.nn.Linear(encoder_output_size, codebook_size) for _ in range(num_codebooks)
        )

    def _draw_quantizer(self) -> Tuple[torch.Tensor, torch.Tensor]:
        """Xavier-uniform projections, standard-normal L2-normalized codebooks
        (paper sec. 3.1), drawn from a local generator (global RNG untouched)."""
        gen = torch.Generator(device="cpu").manual_seed(self.seed)
        in_dim = self.stack_frames * self.input_size
        projection = torch.empty(self.num_codebooks, in_dim, self.codebook_dim)
        for proj in projection:
            torch.nn.init.xavier_uniform_(proj, generator=gen)
        codebooks = torch.randn(self.num_codebooks, self.codebook_size, self.codebook_dim, generator=gen)
        return projection, F.normalize(codebooks, dim=-1)

    @torch.no_grad()
    def compute_targets(self, feats: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Code ids of every stacked frame.

        Args:
            feats: (B, T, F) input features.
            lengths: (B,) valid frames.

        Returns:
            (N, B, ceil(T / stack)) long; entries at padded frames are
            meaningless.
        """
        if feats.dim() != 3 or feats.shape[-1] != self.input_size:
            raise ValueError(
                f"best_rq: features must be (batch, frames, {self.input_size}), "
                f"got {tuple(feats.shape)}; set input_size to the feature dimension"
            )
        with torch.autocast(device_type=feats.device.type, enabled=False):
            stacked = _stack_normalized(feats, lengths, self.stack_frames)
            batch, groups, in_dim = stacked.shape
            flat = stacked.reshape(1, batch * groups, in_dim)
            # One batched matmul for all codebooks: (N, B*T', dim).
            proj = torch.matmul(flat, self.projection.float())
            proj = F.normalize(proj, dim=-1)
            # Nearest unit code == largest cosine (paper sec. 3.1).
            codes_t = self.codebooks.float().transpose(1, 2)  # (N, dim, K)
            chunk = max(1, _CHUNK_ELEMENTS // self.codebook_size)
            targets = torch.cat(
                [
                    torch.matmul(proj[:, i : i + chunk], codes_t).argmax(dim=-1)
                    for i in range(0, proj.shape[1], chunk)
                ],
                dim=1,
            )
        return targets.reshape(self.num_codebooks, batch, groups)

    def forward(
        self,
        encoder_output: List[torch.Tensor],
        encoder_output_lengths: torch.Tensor,
        frontend: torch.Tensor,
        frontend_lengths: torch.Tensor,
        mask_info: Dict,
    ) -> Tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        """Cross-entropy on masked, valid encoder frames (paper sec. 3.2).

        Args:
            encoder_output: per-layer outputs, each (B, T', D).
            encoder_output_lengths: (B,).
            frontend: (B, T, F) input features before augmentation.
            frontend_lengths: (B,).
            mask_info: dict from ``block_mask`` with ``encoder_mask``
                (B, ceil(T / stride)) bool.

        Returns:
            scalar float32 loss; stats, detached float32 0-dim tensors on the
            loss's device (no host sync; ESPnet's reporter converts them when it
            records them): bestrq_loss, bestrq_acc (masked-frame accuracy),
            bestrq_mask_frac (masked share of valid encoder frames), bestrq_ppl
            and bestrq_codes (perplexity and distinct codes of the targets of
            all valid frames, averaged over codebooks).

        A length mismatch beyond ``_MAX_LENGTH_MISMATCH`` frames raises
        ValueError on CPU; on an accelerator it is an asynchronous device-side
        assert (:func:`espnet_ext.nets.checks.check_values`).
        """
        stride = mask_info.get("stride", self.stack_frames)
        if stride != self.stack_frames:
            raise ValueError(
                f"best_rq: block_mask stride {stride} differs from "
                f"stack_frames {self.stack_frames}; set both to the encoder's "
                "subsampling factor"
            )
        hidden = encoder_output[self.layer]  # (B, T_enc, D)
        enc_frames = hidden.shape[1]

        targets = self.compute_targets(frontend, frontend_lengths)  # (N, B, T_tgt)
        target_lengths = ceil_div(frontend_lengths, self.stack_frames)
        enc_lengths = encoder_output_lengths.to(target_lengths.device)
        check_values(
            (target_lengths - enc_lengths).abs() <= _MAX_LENGTH_MISMATCH,
            lambda: (
                f"best_rq: encoder output lengths {enc_lengths.tolist()} do not "
                f"match ceil(feature lengths / {self.stack_frames}) = "
                f"{target_lengths.tolist()}; stack_frames must equal the "
                "encoder's subsampling factor"
            ),
        )
        # Align at the first frame; keep frames present in both sequences.
        frames = min(enc_frames, targets.shape[-1])
        lengths = torch.minimum(target_lengths, enc_lengths).to(hidden.device)
        valid = valid_mask(lengths, frames)
        encoder_mask = mask_info["encoder_mask"]
        if encoder_mask.shape[1] < frames:
            raise ValueError(
                f"best_rq: mask_info['encoder_mask'] has {encoder_mask.shape[1]} "
                f"frames, fewer than the {frames} aligned frames; the masking util "
                "must see the same frames as the frontend output"
            )
        masked = encoder_mask[:, :frames].to(hidden.device) & valid  # (B, T)
        targets = targets[..., :frames].to(hidden.device)

        # Every count stays on the device: no .item(), no data-dependent shape.
        num_valid = valid.sum()
        num_masked = masked.sum()
        ppls, codes = zip(*(_codebook_perplexity(t, valid, self.codebook_size) for t in targets))

        # On an accelerator, and whenever torch.compile traces, the heads score
        # every aligned frame and the loss keeps the masked ones: selecting them
        # first (hidden[masked]) has a data-dependent shape, a host sync. On the
        # CPU in eager mode there is no device queue to stall, so the masked
        # frames are selected first and the heads do ~1/3 of the work (the same
        # loss up to summation order; tests/test_best_rq.py). Either way a batch
        # without masked frames gives a zero loss that still reaches every head (DDP).
        flat_mask = masked.reshape(-1)
        selected = hidden[:, :frames].reshape(-1, hidden.shape[-1])  # (B*T, D)
        select_first = selected.device.type == "cpu" and not torch.compiler.is_compiling()
        if select_first:
            index = flat_mask.nonzero().squeeze(1)  # (M,)
            selected = selected.index_select(0, index)  # (M, D)
        denominator = num_masked.clamp(min=1).float()
        loss = hidden.new_zeros((), dtype=torch.float32)
        correct = torch.zeros((), dtype=torch.long, device=hidden.device)
        for head, target in zip(self.heads, targets):
            logits = head(selected)  # (B*T, K), or (M, K) selected first
            goal = target.reshape(-1)
            if select_first:
                goal = goal.index_select(0, index)
                loss = loss + F.cross_entropy(logits.float(), goal, reduction="sum") / denominator
                correct = correct + (logits.argmax(dim=-1) == goal).sum()
                continue
            frame_loss = F.cross_entropy(logits.float(), goal, reduction="none")
            frame_loss = torch.where(flat_mask, frame_loss, torch.zeros_like(frame_loss))
            loss = loss + frame_loss.sum() / denominator
            correct = correct + ((logits.argmax(dim=-1) == goal) & flat_mask).sum()
        loss = loss / self.num_codebooks
        # Detached 0-dim float32 tensors; the reporter reads them at logging.
        stats = {
            "bestrq_loss": loss.detach(),
            "bestrq_acc": correct.float() / (denominator * self.num_codebooks),
            "bestrq_mask_frac": num_masked.float() / num_valid.clamp(min=1).float(),
            "bestrq_ppl": torch.stack(ppls).mean(),
            "bestrq_codes": torch.stack(codes).mean(),
        }
        return loss, stats
