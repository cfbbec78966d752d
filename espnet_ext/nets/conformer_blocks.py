"""Conformer block with rotary self-attention (package-private blocks of ``ssl_conformer``).

One block (Gulati et al. 2020, "Conformer", sec. 2.4, eq. 1), pre-LN throughout::

    x -> + 1/2 FFN -> + MHSA (rotary q/k) -> + Conv -> + 1/2 FFN -> LN

Every module maps (B, T, D) -> (B, T, D) and leaves the residual to the block.
Padded frames are described once per batch by two masks built in
``SSLConformerEncoder.forward``: ``key_mask`` (B, 1, 1, T), True at keys that may
be attended, and ``pad`` (B, T, 1), True at padding frames. The encoder always
passes both (deciding that a batch is unpadded would need a host sync); None
means no padding.
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

_ACTIVATIONS = {
    "swish": torch.nn.SiLU,
    "silu": torch.nn.SiLU,
    "relu": torch.nn.ReLU,
    "gelu": torch.nn.GELU,
}

Rotary = Tuple[torch.Tensor, torch.Tensor]  # cos, sin: each (T, head_dim)


def _activation(name: str) -> torch.nn.Module:
    return _ACTIVATIONS[name]()


def _rotary_tables(length: int, head_dim: int, base: float, device: torch.device) -> Rotary:
    """Rotary cos/sin tables, theta_i = base^(-2i/d) (Su et al. 2021, sec. 3.2).

    Returns:
        cos, sin: (length, head_dim) float32, each half-dimension repeated twice
        (the "rotate half" pairing of dimension i with i + head_dim/2).
    """
    inv_freq = base ** (-torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)
    positions = torch.arange(length, device=device, dtype=torch.float32)
    angles = torch.outer(positions, inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def _apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, dh) queries or keys by position (Su et al. 2021, sec. 3.4.2)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin


class _FeedForward(torch.nn.Module):
    """LN -> Linear -> act -> dropout -> Linear -> dropout (Gulati 2020, sec. 2.3).

    Args:
        d_model: D, input and output dimension.
        hidden: hidden dimension.
        dropout_rate: dropout after the activation and after the output Linear.
        activation: a key of ``_ACTIVATIONS``.
    """

    def __init__(self, d_model: int, hidden: int, dropout_rate: float, activation: str):
        super().__init__()
        self.norm = torch.nn.LayerNorm(d_model)
        self.w_1 = torch.nn.Linear(d_model, hidden)
        self.activation = _activation(activation)
        self.dropout = torch.nn.Dropout(dropout_rate)
        self.w_2 = torch.nn.Linear(hidden, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, D) -> (B, T, D), without the residual."""
        x = self.dropout(self.activation(self.w_1(self.norm(x))))
        return self.dropout(self.w_2(x))


class _RotarySelfAttention(torch.nn.Module):
    """Pre-LN MHSA with rotary q/k (Gulati 2020, sec. 2.1; Su et al. 2021, sec. 3.2).

    Relative position enters only through the rotation of q and k, so attention
    runs through ``scaled_dot_product_attention`` with a boolean key-padding mask
    and no (B, H, T, T) position bias.

    Args:
        d_model: D, input and output dimension.
        heads: H, attention heads; D / H must be even.
        dropout_rate: dropout on the output projection.
        attention_dropout_rate: dropout on the attention weights (training only).
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

    def forward(self, x: torch.Tensor, rotary: Rotary, key_mask: Optional[torch.Tensor]) -> torch.Tensor:
        """Attend.

        Args:
            x: (B, T, D).
            rotary: cos, sin (T, head_dim) tables from ``_rotary_tables``.
            key_mask: (B, 1, 1, T) bool, True at keys that may be attended, or
                None (no padding).

        Returns:
            (B, T, D), without the residual.
        """
        b, t, d = x.shape
        qkv = self.qkv(self.norm(x)).view(b, t, 3, self.heads, self.head_dim)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (B, H, T, dh)
        cos, sin = (table.to(q.dtype) for table in rotary)
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

    Args:
        d_model: D, input and output dimension (= conv channels).
        kernel_size: depthwise kernel size, odd (``same`` padding).
        dropout_rate: dropout on the output.
        activation: a key of ``_ACTIVATIONS``.
        norm: ``"layer_norm"`` or ``"batch_norm"``.
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
        self.conv_norm = torch.nn.BatchNorm1d(d_model) if self.batch_norm else torch.nn.LayerNorm(d_model)
        self.activation = _activation(activation)
        self.pointwise_out = torch.nn.Linear(d_model, d_model)
        self.dropout = torch.nn.Dropout(dropout_rate)

    def forward(self, x: torch.Tensor, pad: Optional[torch.Tensor]) -> torch.Tensor:
        """Convolve.

        Args:
            x: (B, T, D).
            pad: (B, T, 1) bool, True at padding frames, or None.

        Returns:
            (B, T, D), without the residual.
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
    step, as in ESPnet's ``macaron_style: false``. With ``use_conv=False`` the
    convolution module is dropped.

    Args:
        d_model: D, model dimension.
        heads: attention heads.
        linear_units: hidden dimension of the feed-forward modules.
        dropout_rate: dropout of every module's output.
        attention_dropout_rate: dropout on the attention weights.
        activation: a key of ``_ACTIVATIONS`` (FFN and conv module).
        macaron: two half-step FFNs (True) or one full-step FFN (False).
        use_conv: include the convolution module.
        kernel_size: depthwise kernel size of the convolution module.
        conv_norm: ``"layer_norm"`` or ``"batch_norm"`` in the convolution module.
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
        self.ff_macaron = _FeedForward(d_model, linear_units, dropout_rate, activation) if macaron else None
        self.ff_scale = 0.5 if macaron else 1.0
        self.attn = _RotarySelfAttention(d_model, heads, dropout_rate, attention_dropout_rate)
        self.conv = (
            _ConvModule(d_model, kernel_size, dropout_rate, activation, conv_norm) if use_conv else None
        )
        self.ff = _FeedForward(d_model, linear_units, dropout_rate, activation)
        self.norm_out = torch.nn.LayerNorm(d_model)

    def forward(
        self,
        x: torch.Tensor,
        rotary: Rotary,
        key_mask: Optional[torch.Tensor],
        pad: Optional[torch.Tensor],
    ) -> torch.Tensor:
        """Apply the block.

        Args:
            x: (B, T, D).
            rotary: cos, sin (T, head_dim) tables from ``_rotary_tables``.
            key_mask: (B, 1, 1, T) bool, True at keys that may be attended, or None.
            pad: (B, T, 1) bool, True at padding frames, or None.

        Returns:
            (B, T, D).
        """
        if self.ff_macaron is not None:
            x = x + self.ff_scale * self.ff_macaron(x)
        x = x + self.attn(x, rotary, key_mask)
        if self.conv is not None:
            x = x + self.conv(x, pad)
        x = x + self.ff_scale * self.ff(x)
        return self.norm_out(x)
