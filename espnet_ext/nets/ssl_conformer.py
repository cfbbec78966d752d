"""Conformer encoder with rotary self-attention for BEST-RQ pre-training and ASR.

``SSLConformerEncoder`` is an ESPnet ``AbsEncoder``: the same class and the same
state-dict keys serve the SSL task (pre-training) and the ASR task (fine-tuning),
so pretrained weights load into the ASR model's encoder without renaming.

Architecture (Gulati et al. 2020, "Conformer"), on log-Mel features:

    conv2d 4x subsampling -> dropout -> N x [ 1/2 FFN -> MHSA -> Conv -> 1/2 FFN -> LN ]
    -> LayerNorm

Differences from ESPnet's ``conformer`` encoder, each deliberate:

* Self-attention carries relative position through rotary embeddings applied to
  queries and keys (Su et al. 2021) and runs through
  ``torch.nn.functional.scaled_dot_product_attention`` with a boolean key-padding
  mask, so no (B, H, T, T) position bias is materialized and fused kernels apply.
* Subsampled length is exactly ``ceil(T / 4) = (T + 3) // 4`` and encoder frame
  ``t`` sees input frames ``4t-2 .. 4t+4`` (it always covers ``4t .. 4t+3``), the
  frame alignment BEST-RQ targets use. Frames past each utterance's length are
  zeroed after every subsampling conv.
* The convolution module zeroes padded frames before the depthwise conv and uses
  LayerNorm by default, so an utterance's output does not depend on what it is
  batched with.
"""

import logging
import math
from typing import List, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from typeguard import typechecked

from espnet2.asr.encoder.abs_encoder import AbsEncoder

logger = logging.getLogger(__name__)

_ACTIVATIONS = {
    "swish": torch.nn.SiLU,
    "silu": torch.nn.SiLU,
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
}


def _activation(name: str) -> torch.nn.Module:
    return _ACTIVATIONS[name]()


def _valid_mask(lengths: torch.Tensor, length: int) -> torch.Tensor:
    """(B,) lengths -> (B, length) bool, True at valid (non-padding) frames."""
    return torch.arange(length, device=lengths.device)[None, :] < lengths[:, None]


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frame count after the 4x subsampling: ``ceil(T / 4) = (T + 3) // 4``.

    Args:
        lengths: (B,) integer input lengths.

    Returns:
        (B,) integer output lengths.
    """
    return torch.div(lengths + 3, 4, rounding_mode="floor")


def _zero_padding_(x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Zero, in place, frames >= lengths of a (B, C, T, F) conv output.

    In place is safe on a conv output (the conv's backward does not need it) and
    saves a full copy of the largest activation in the encoder.
    """
    return x.masked_fill_(~_valid_mask(lengths, x.size(2))[:, None, :, None], 0.0)


class _Conv2dSubsampling4(torch.nn.Module):
    """Two stride-2 3x3 Conv2d + ReLU, then Linear to d_model (Gulati 2020, sec. 2).

    Time padding is (0, 2) for the first conv and (1, 1) for the second, frequency
    padding (1, 1) for both. Each conv then maps L frames to ceil(L / 2), so the
    output has exactly ceil(T / 4) frames, and output frame t sees input frames
    4t-2 .. 4t+4, centred on the 4 frames 4t .. 4t+3 it stands for (BEST-RQ,
    Chiu et al. 2022, sec. 2: one target per 4 stacked frames). Frames past each
    utterance's length are zeroed after each conv, so padding never leaks in.
    """

    def __init__(self, input_size: int, output_size: int, channels: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(1, channels, kernel_size=3, stride=2, padding=0)
        self.conv2 = torch.nn.Conv2d(
            channels, channels, kernel_size=3, stride=2, padding=1
        )
        freq = ((input_size + 1) // 2 + 1) // 2
        self.out = torch.nn.Linear(channels * freq, output_size)

    def forward(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> Tuple[torch.Tensor, torch.Tensor]:
        """Subsample.

        Args:
            x: (B, T, F) features, zero at frames >= lengths.
            lengths: (B,) valid frame counts.

        Returns:
            (B, ceil(T/4), D) subsampled features and (B,) lengths ceil(lengths/4).
        """
        x = F.pad(x.unsqueeze(1), (1, 1, 0, 2))  # (B, 1, T + 2, F + 2)
        x = self.conv1(x)  # (B, C, ceil(T/2), ceil(F/2))
        lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        x = torch.relu_(_zero_padding_(x, lengths))
        x = self.conv2(x)  # (B, C, ceil(T/4), ceil(F/4))
        lengths = torch.div(lengths + 1, 2, rounding_mode="floor")
        x = torch.relu_(_zero_padding_(x, lengths))
        b, c, t, f = x.shape
        x = self.out(x.transpose(1, 2).reshape(b, t, c * f))  # (B, T', D)
        return x, lengths


def _rotary_tables(
    length: int, head_dim: int, base: float, device: torch.device
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Rotary cos/sin tables, theta_i = base^(-2i/d) (Su et al. 2021, sec. 3.2).

    Returns:
        cos, sin: (length, head_dim) float32, each half-dimension repeated twice
        (the "rotate half" pairing of dimension i with i + head_dim/2).
    """
    inv_freq = base ** (
        -torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim
    )
    positions = torch.arange(length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _apply_rotary(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> torch.Tensor:
    """Rotate (B, H, T, dh) queries or keys by position (Su et al. 2021, sec. 3.4.2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class _FeedForward(torch.nn.Module):
    """LN -> Linear -> act -> dropout -> Linear -> dropout (Gulati 2020, sec. 2.3).

    (B, T, D) -> (B, T, D); the caller adds the (half-step) residual.
    """

    def __init__(
        self, d_model: int, hidden: int, dropout_rate: float, activation: str
    ):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_model)
        self.w_1 = torch.nn.Linear(d_model, hidden)
        self.activation = _activation(activation)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.w_2 = torch.nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.activation(self.w_1(self.norm(x))))
        return self.dropout(self.w_2(x))


class _RotarySelfAttention(torch.nn.Module):
    """Pre-LN MHSA with rotary q/k (Gulati 2020, sec. 2.1; Su et al. 2021, sec. 3.2).

    Relative position enters only through the rotation of q and k, so attention
    runs through ``scaled_dot_product_attention`` with a boolean key-padding mask
    and no (B, H, T, T) position bias. (B, T, D) -> (B, T, D), residual added by
    the caller.
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        dropout_rate: float,
        attention_dropout_rate: float,
    ):
        super().__init__()
        self.heads = heads
        self.head_dim = d_model // heads
        self.attention_dropout_rate = attention_dropout_rate
        self.norm = torch.nn.LayerNorm(d_model)
        self.qkv = torch.nn.Linear(d_model, 3 * d_model)
        self.out = torch.nn.Linear(d_model, d_model)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, T, D).
            cos, sin: (T, head_dim) rotary tables.
            key_mask: (B, 1, 1, T) bool, True at keys that may be attended, or
                None when no utterance in the batch is padded.

        Returns:
            (B, T, D).
        """
        b, t, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, dh)
        cos, sin = cos.to(q.dtype), sin.to(q.dtype)
        q = _apply_rotary(q, cos, sin)
        k = _apply_rotary(k, cos, sin)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=key_mask,
            dropout_p=self.attention_dropout_rate if self.training else 0.0,
        )  # (B, H, T, dh)
        y = y.transpose(1, 2).reshape(b, t, d)
        return self.dropout(self.out(y))


class _ConvModule(torch.nn.Module):
    """LN -> pointwise+GLU -> depthwise -> norm -> act -> pointwise (Gulati, sec. 2.2).

    Padded frames are zeroed before the depthwise conv so they cannot leak into
    valid frames. ``norm="layer_norm"`` (default) keeps utterances independent;
    ``"batch_norm"`` (the paper's choice) shares statistics across the batch,
    padding included, so it is padding-invariant only in eval mode.
    (B, T, D) -> (B, T, D), residual added by the caller.
    """

    def __init__(
        self,
        d_model: int,
        kernel_size: int,
        dropout_rate: float,
        activation: str,
        norm: str,
    ):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_model)
        self.pointwise_in = torch.nn.Linear(d_model, 2 * d_model)
        self.depthwise = torch.nn.Conv1d(
            d_model,
            d_model,
            kernel_size,
            padding=(kernel_size - 1) // 2,
            groups=d_model,
        )
        self.batch_norm = norm == "batch_norm"
        self.conv_norm = (
            torch.nn.BatchNorm1d(d_model)
            if self.batch_norm
            else torch.nn.LayerNorm(d_model)
        )
        self.activation = _activation(activation)
        self.pointwise_out = torch.nn.Linear(d_model, d_model)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, pad: Optional[torch.Tensor]) -> torch.Tensor:
        """Convolve.

        Args:
            x: (B, T, D).
            pad: (B, T, 1) bool, True at padding frames, or None.

        Returns:
            (B, T, D).
        """
        x = F.glu(self.pointwise_in(self.norm(x)), dim=-1)  # (B, T, D)
        if pad is not None:
            x = x.masked_fill(pad, 0.0)
        x = self.depthwise(x.transpose(1, 2))  # (B, D, T)
        if self.batch_norm:
            x = self.conv_norm(x).transpose(1, 2)
        else:
            x = self.conv_norm(x.transpose(1, 2))
        return self.dropout(self.pointwise_out(self.activation(x)))


class _ConformerBlock(torch.nn.Module):
    """x + 1/2 FFN, + MHSA, + Conv, + 1/2 FFN, then LN (Gulati 2020, sec. 2.4, eq. 1).

    With ``macaron=False`` the first FFN is dropped and the last takes a full
    step, as in ESPnet's ``macaron_style: false``. (B, T, D) -> (B, T, D).
    """

    def __init__(
        self,
        d_model: int,
        heads: int,
        linear_units: int,
        dropout_rate: float,
        attention_dropout_rate: float,
        activation: str,
        macaron: bool,
        use_conv: bool,
        kernel_size: int,
        conv_norm: str,
    ):
        super().__init__()
        self.ff_macaron = (
            _FeedForward(d_model, linear_units, dropout_rate, activation)
            if macaron
            else None
        )
        self.ff_scale = 0.5 if macaron else 1.0
        self.attn = _RotarySelfAttention(
            d_model, heads, dropout_rate, attention_dropout_rate
        )
        self.conv = (
            _ConvModule(d_model, kernel_size, dropout_rate, activation, conv_norm)
            if use_conv
            else None
        )
        self.ff = _FeedForward(d_model, linear_units, dropout_rate, activation)
        self.norm_out = torch.nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        cos: torch.Tensor,
        sin: torch.Tensor,
        key_mask: Optional[torch.Tensor],
        pad: Optional[torch.Tensor],
    ) -> torch.Tensor:
        if self.ff_macaron is not None:
            x = x + self.ff_scale * self.ff_macaron(x)
        x = x + self.attn(x, cos, sin, key_mask)
        if self.conv is not None:
            x = x + self.conv(x, pad)
        x = x + self.ff_scale * self.ff(x)
        return self.norm_out(x)


class SSLConformerEncoder(AbsEncoder):
    """Conformer encoder with rotary self-attention (ESPnet ``AbsEncoder``).

    Keyword names follow ESPnet's ``ConformerEncoder`` so an ``encoder_conf``
    written for ``encoder: conformer`` works unchanged with ``ssl_conformer``.

    Args:
        input_size: Feature dimension of the input (80 log-Mel channels).
        output_size: Model dimension d_model.
        attention_heads: Number of attention heads; d_model / heads must be even.
        linear_units: Hidden size of each feed-forward module.
        num_blocks: Number of Conformer blocks (>= 1).
        dropout_rate: Dropout in the FFN, attention output and conv modules.
        positional_dropout_rate: Dropout on the subsampled input (where ESPnet
            applies it together with the positional encoding).
        attention_dropout_rate: Dropout on attention weights. On CPU a non-zero
            value makes PyTorch use its unfused attention kernel in training.
        input_layer: Only ``"conv2d"`` (4x subsampling).
        normalize_before: Must be True (pre-LN residual units, Gulati sec. 2.1).
        macaron_style: Two half-step FFNs (True, the paper's block) or one
            full-step FFN after the conv module (False).
        activation_type: ``"swish"`` (= ``"silu"``), ``"relu"`` or ``"gelu"``.
        use_cnn_module: Include the convolution module.
        cnn_module_kernel: Depthwise kernel size, odd (``same`` padding).
        cnn_module_norm: ``"layer_norm"`` (default, padding-invariant in
            training) or ``"batch_norm"``.
        subsampling_channels: Channels C of the two subsampling convs. Default
            64, independent of d_model: the flattened conv output (64 x 20 =
            1280 values per output frame) is already 4x the 4 x 80 = 320 input
            values it summarizes, while the second conv costs 9 C^2 x 5
            multiply-adds per input frame. With C = d_model = 144, as in
            ESPnet's Conv2dSubsampling, that is ~0.9M, about as much as six
            144-dim blocks together; with C = 64 it is ~0.18M.
        rotary_base: Base of the rotary frequencies (10000 in Su et al. 2021).
        pos_enc_layer_type, selfattention_layer_type, rel_pos_type, zero_triu,
        max_pos_emb_len, use_flash_attn, use_sdpa, padding_idx,
        positionwise_conv_kernel_size: accepted for config compatibility;
            ssl_conformer always uses rotary attention through
            scaled_dot_product_attention. Given values are logged as ignored.
        concat_after, positionwise_layer_type, interctc_layer_idx,
        interctc_use_conditioning, ctc_trim, stochastic_depth_rate,
        layer_drop_rate, qk_norm: ESPnet options that ssl_conformer does not
            implement; only their neutral values (False, "linear", [], 0.0)
            are accepted.

    Raises:
        ValueError: on an invalid or unsupported configuration.
    """

    @typechecked
    def __init__(
        self,
        input_size: int,
        output_size: int = 256,
        attention_heads: int = 4,
        linear_units: int = 2048,
        num_blocks: int = 6,
        dropout_rate: float = 0.1,
        positional_dropout_rate: float = 0.1,
        attention_dropout_rate: float = 0.0,
        input_layer: Optional[str] = "conv2d",
        normalize_before: bool = True,
        macaron_style: bool = True,
        activation_type: str = "swish",
        use_cnn_module: bool = True,
        cnn_module_kernel: int = 31,
        cnn_module_norm: str = "layer_norm",
        subsampling_channels: int = 64,
        rotary_base: float = 10000.0,
        # Accepted for config compatibility; ssl_conformer always uses rotary attention.
        pos_enc_layer_type: Optional[str] = None,
        selfattention_layer_type: Optional[str] = None,
        rel_pos_type: Optional[str] = None,
        zero_triu: Optional[bool] = None,
        max_pos_emb_len: Optional[int] = None,
        use_flash_attn: Optional[bool] = None,
        use_sdpa: Optional[bool] = None,
        padding_idx: Optional[int] = None,
        positionwise_conv_kernel_size: Optional[int] = None,
        # ESPnet options not implemented here: only neutral values are accepted.
        concat_after: bool = False,
        positionwise_layer_type: str = "linear",
        interctc_layer_idx: Optional[List[int]] = None,
        interctc_use_conditioning: bool = False,
        ctc_trim: bool = False,
        stochastic_depth_rate: Union[float, List[float]] = 0.0,
        layer_drop_rate: float = 0.0,
        qk_norm: bool = False,
    ):
        super().__init__()
        _check_config(
            input_size=input_size,
            output_size=output_size,
            attention_heads=attention_heads,
            linear_units=linear_units,
            num_blocks=num_blocks,
            dropout_rate=dropout_rate,
            positional_dropout_rate=positional_dropout_rate,
            attention_dropout_rate=attention_dropout_rate,
            input_layer=input_layer,
            normalize_before=normalize_before,
            activation_type=activation_type,
            cnn_module_kernel=cnn_module_kernel,
            cnn_module_norm=cnn_module_norm,
            subsampling_channels=subsampling_channels,
            rotary_base=rotary_base,
            unsupported={
                "concat_after": (concat_after, False),
                "positionwise_layer_type": (positionwise_layer_type, "linear"),
                "interctc_layer_idx": (interctc_layer_idx or [], []),
                "interctc_use_conditioning": (interctc_use_conditioning, False),
                "ctc_trim": (ctc_trim, False),
                "stochastic_depth_rate": (
                    stochastic_depth_rate
                    if isinstance(stochastic_depth_rate, float)
                    else max(stochastic_depth_rate, default=0.0),
                    0.0,
                ),
                "layer_drop_rate": (layer_drop_rate, 0.0),
                "qk_norm": (qk_norm, False),
            },
        )
        ignored = {
            "pos_enc_layer_type": pos_enc_layer_type,
            "selfattention_layer_type": selfattention_layer_type,
            "rel_pos_type": rel_pos_type,
            "zero_triu": zero_triu,
            "max_pos_emb_len": max_pos_emb_len,
            "use_flash_attn": use_flash_attn,
            "use_sdpa": use_sdpa,
            "padding_idx": padding_idx,
            "positionwise_conv_kernel_size": positionwise_conv_kernel_size,
        }
        ignored = {k: v for k, v in ignored.items() if v is not None}
        if ignored:
            logger.info(
                "ssl_conformer always uses rotary attention through "
                "scaled_dot_product_attention; ignoring %s",
                ", ".join(f"{k}={v!r}" for k, v in ignored.items()),
            )

        self._output_size = output_size
        self.input_size = input_size
        self.head_dim = output_size // attention_heads
        self.rotary_base = float(rotary_base)
        self.embed = _Conv2dSubsampling4(input_size, output_size, subsampling_channels)
        self.embed_dropout = torch.nn.Dropout(positional_dropout_rate)
        self.encoders = torch.nn.ModuleList(
            _ConformerBlock(
                d_model=output_size,
                heads=attention_heads,
                linear_units=linear_units,
                dropout_rate=dropout_rate,
                attention_dropout_rate=attention_dropout_rate,
                activation=activation_type,
                macaron=macaron_style,
                use_conv=use_cnn_module,
                kernel_size=cnn_module_kernel,
                conv_norm=cnn_module_norm,
            )
            for _ in range(num_blocks)
        )
        self.after_norm = torch.nn.LayerNorm(output_size)

    def output_size(self) -> int:
        return self._output_size

    def forward(
        self,
        xs_pad: torch.Tensor,
        ilens: Optional[torch.Tensor],
        prev_states: Optional[torch.Tensor] = None,
        masks: Optional[torch.Tensor] = None,
        ctc: Optional[torch.nn.Module] = None,
        return_all_hs: bool = False,
    ) -> Tuple[
        Union[torch.Tensor, Tuple[torch.Tensor, List[torch.Tensor]]],
        torch.Tensor,
        None,
    ]:
        """Encode a padded batch.

        Args:
            xs_pad: (B, T, input_size) features; values at padded frames are ignored.
            ilens: (B,) valid frame counts, 1 <= ilens <= T. May be None if
                ``masks`` is given.
            prev_states: Unused (ESPnet interface).
            masks: (B, T') bool with T' <= T, True at padding input frames
                (``make_pad_mask(ilens)``, as ESPnet's SSL model passes it), or
                None. If given with ``ilens``, both must describe the same lengths.
            ctc: Unused (ESPnet interface; no intermediate CTC).
            return_all_hs: Also return every block's output.

        Returns:
            out: (B, (T + 3) // 4, D) after the final LayerNorm, or with
                ``return_all_hs`` the tuple ``(out, [h_1, ..., h_N])`` where h_i
                is block i's (B, (T + 3) // 4, D) output before the final norm.
                Frames at or beyond ``olens`` are zero.
            olens: (B,) ``(lengths + 3) // 4``.
            None.
        """
        lengths = self._lengths(xs_pad, ilens, masks)
        x = xs_pad.masked_fill(~_valid_mask(lengths, xs_pad.size(1))[..., None], 0.0)
        x, olens = self.embed(x, lengths)
        x = self.embed_dropout(x)

        t = x.size(1)
        if bool((olens < t).any()):
            valid = _valid_mask(olens, t)
            key_mask = valid[:, None, None, :]  # (B, 1, 1, T')
            pad = ~valid[:, :, None]  # (B, T', 1)
        else:
            key_mask = pad = None
        cos, sin = _rotary_tables(t, self.head_dim, self.rotary_base, x.device)

        hidden = []
        for block in self.encoders:
            x = block(x, cos, sin, key_mask, pad)
            if pad is not None:
                x = x.masked_fill(pad, 0.0)
            if return_all_hs:
                hidden.append(x)
        x = self.after_norm(x)
        if pad is not None:
            x = x.masked_fill(pad, 0.0)
        if return_all_hs:
            return (x, hidden), olens, None
        return x, olens, None

    def _lengths(
        self,
        xs_pad: torch.Tensor,
        ilens: Optional[torch.Tensor],
        masks: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Check the inputs and return the (B,) valid input lengths."""
        if xs_pad.dim() != 3 or xs_pad.size(-1) != self.input_size:
            raise ValueError(
                f"xs_pad must be (batch, frames, {self.input_size}), "
                f"got shape {tuple(xs_pad.shape)}"
            )
        batch, frames = xs_pad.shape[:2]
        if ilens is None and masks is None:
            raise ValueError("give ilens or masks: neither was given")
        if ilens is not None and (
            ilens.shape != (batch,)
            or ilens.dtype.is_floating_point
            or ilens.dtype == torch.bool
        ):
            raise ValueError(
                f"ilens must be an integer tensor of shape ({batch},), "
                f"got {ilens.dtype} {tuple(ilens.shape)}"
            )
        if masks is not None:
            if (
                masks.dim() != 2
                or masks.size(0) != batch
                or masks.size(1) > frames
                or masks.dtype != torch.bool
            ):
                raise ValueError(
                    f"masks must be bool of shape ({batch}, <= {frames}) with True "
                    f"at padding, got {masks.dtype} {tuple(masks.shape)}"
                )
            mask_lengths = (~masks).sum(-1)
            if not torch.equal(masks, ~_valid_mask(mask_lengths, masks.size(1))):
                raise ValueError(
                    "masks must mark padding only at the end of each utterance "
                    "(like make_pad_mask(ilens))"
                )
            if ilens is not None and not torch.equal(
                mask_lengths, ilens.to(mask_lengths)
            ):
                raise ValueError(
                    f"masks and ilens disagree: masks give lengths "
                    f"{mask_lengths.tolist()}, ilens {ilens.tolist()}"
                )
            lengths = mask_lengths
        else:
            lengths = ilens
        lengths = lengths.to(device=xs_pad.device, dtype=torch.long)
        if bool(((lengths < 1) | (lengths > frames)).any()):
            raise ValueError(
                f"every length must be in [1, {frames}] (frames in xs_pad), "
                f"got {lengths.tolist()}"
            )
        return lengths


def _check_config(
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
    for name, value in (
        ("input_size", input_size),
        ("output_size", output_size),
        ("attention_heads", attention_heads),
        ("linear_units", linear_units),
        ("num_blocks", num_blocks),
        ("subsampling_channels", subsampling_channels),
    ):
        if value < 1:
            raise ValueError(f"ssl_conformer: {name} must be >= 1, got {value}")
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
        raise ValueError(
            f"ssl_conformer: input_layer must be 'conv2d' (4x subsampling), "
            f"got {input_layer!r}"
        )
    if not normalize_before:
        raise ValueError(
            "ssl_conformer: normalize_before must be true (pre-LN residual units)"
        )
    if activation_type not in _ACTIVATIONS:
        raise ValueError(
            f"ssl_conformer: activation_type must be one of {sorted(_ACTIVATIONS)}, "
            f"got {activation_type!r}"
        )
    if cnn_module_kernel < 1 or cnn_module_kernel % 2 == 0:
        raise ValueError(
            f"ssl_conformer: cnn_module_kernel must be odd and >= 1 for 'same' "
            f"padding, got {cnn_module_kernel}"
        )
    if cnn_module_norm not in ("layer_norm", "batch_norm"):
        raise ValueError(
            f"ssl_conformer: cnn_module_norm must be 'layer_norm' or 'batch_norm', "
            f"got {cnn_module_norm!r}"
        )
    if not (rotary_base > 1.0 and math.isfinite(rotary_base)):
        raise ValueError(f"ssl_conformer: rotary_base must be > 1, got {rotary_base}")
    for name, (value, neutral) in unsupported.items():
        if value != neutral:
            raise ValueError(
                f"ssl_conformer: {name}={value!r} is not supported "
                f"(only {neutral!r}); use encoder: conformer for this feature"
            )
