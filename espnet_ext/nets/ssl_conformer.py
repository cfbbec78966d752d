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

Layout: :mod:`espnet_ext.nets.subsampling` (the 4x conv2d front),
:mod:`espnet_ext.nets.conformer_blocks` (FFN, rotary MHSA, conv module, block),
:mod:`espnet_ext.nets.checks` (config and input validation) and
:mod:`espnet_ext.nets.lengths` (length masks shared with the BEST-RQ loss).
"""

import logging
from typing import List, Optional, Tuple, Union

import torch
from espnet2.asr.encoder.abs_encoder import AbsEncoder
from typeguard import typechecked

from espnet_ext.nets.checks import check_config, input_lengths
from espnet_ext.nets.conformer_blocks import _ConformerBlock, _rotary_tables
from espnet_ext.nets.lengths import valid_mask
from espnet_ext.nets.subsampling import _Conv2dSubsampling4, subsampled_lengths

__all__ = ["SSLConformerEncoder", "subsampled_lengths"]

logger = logging.getLogger(__name__)


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
        check_config(
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
        lengths = input_lengths(xs_pad, ilens, masks, self.input_size)
        x = xs_pad.masked_fill(~valid_mask(lengths, xs_pad.size(1))[..., None], 0.0)
        x, olens = self.embed(x, lengths)
        x = self.embed_dropout(x)

        # The masks are built even if no utterance is padded: finding that out
        # would read olens on the host, a device sync on every forward.
        t = x.size(1)
        valid = valid_mask(olens, t)
        key_mask = valid[:, None, None, :]  # (B, 1, 1, T')
        pad = ~valid[:, :, None]  # (B, T', 1)
        rotary = _rotary_tables(t, self.head_dim, self.rotary_base, x.device)

        hidden = []
        for block in self.encoders:
            x = block(x, rotary, key_mask, pad).masked_fill(pad, 0.0)
            if return_all_hs:
                hidden.append(x)
        x = self.after_norm(x).masked_fill(pad, 0.0)
        if return_all_hs:
            return (x, hidden), olens, None
        return x, olens, None
