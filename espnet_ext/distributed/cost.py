"""What a training run costs: model FLOPs per update from a config's dimensions, and the
wall-clock time of the whole schedule on a GPU count at a given MFU.

The dry run cannot build a 0.6B-parameter model, so :func:`flops_per_utterance` counts the
training FLOPs (forward + backward) of the project's models analytically from the config:
the ``ssl_conformer`` encoder (:mod:`espnet_ext.nets`), the BEST-RQ loss
(:mod:`espnet_ext.ssl.best_rq`), and ESPnet's CTC + Transformer decoder for fine-tuning.
It counts what :class:`torch.utils.flop_counter.FlopCounterMode` counts (matmuls,
convolutions, attention; 2 FLOPs per multiply-add; not normalizations, activations or the
losses' softmax), with backward = 2 x forward for every op whose input needs a gradient
(the first subsampling conv: weight gradient only, 1 x; BEST-RQ's frozen target quantizer:
forward only). ``bench/full_scale_step.py`` and ``tests/test_cost.py`` compare it with
``FlopCounterMode`` on the real models.

Per utterance of ``T`` input frames (100 per second), ``T' = ceil(T / 4)`` encoder frames,
model width ``D``, FFN width ``F``, ``N`` blocks, depthwise kernel ``K``, ``C`` subsampling
channels, forward::

    subsampling  2 (T/2) 40 9 C  +  2 T' 20 9 C^2  +  2 T' 20 C D
    per block    2 x 4 T' D F (macaron FFNs)  +  8 T' D^2 (qkv, out)  +  4 T'^2 D (attention)
                 +  6 T' D^2 + 2 T' D K (conv module)

plus, pre-training, the BEST-RQ head ``2 T' D V`` (on an accelerator it scores every frame and the loss keeps
the masked ones: no data-dependent shape) and the frozen quantizer; fine-tuning, CTC ``2 T' D V`` and the decoder over ``L`` tokens (self- and
source-attention, FFN, output layer ``2 L D V``).

Attention is counted as computed once (no flash-attention recompute), the usual convention
for model FLOPs utilization (MFU).
"""

import dataclasses
import math
from typing import Dict, Mapping, Optional, Sequence

FRAMES_PER_SECOND = 100  # 10 ms hop (espnet_ext.features)
A100_BF16_PEAK_FLOPS = 312e12  # dense bf16 tensor-core peak of one A100
MFUS = (0.3, 0.4, 0.5)
# Tokens per second of speech for the decoder of a fine-tuning (LibriSpeech read speech:
# ~2.7 words/s, ~1.2 BPE-5000 pieces per word). The decoder is ~3% of the update.
TOKENS_PER_SECOND = 3.3
SECONDS_PER_DAY = 86400.0


@dataclasses.dataclass(frozen=True)
class ModelShape:
    """The dimensions of a training config's model that its FLOPs depend on."""

    task: str  # "ssl" or "asr"
    input_size: int
    d_model: int
    linear_units: int
    num_blocks: int
    kernel: int
    macaron: bool
    use_conv: bool
    subsampling_channels: int
    # pre-training (BEST-RQ)
    codebook_size: int = 0
    codebook_dim: int = 0
    num_codebooks: int = 0
    stack_frames: int = 4
    # fine-tuning
    vocab_size: int = 0
    vocab_assumed: bool = False
    decoder_blocks: int = 0
    decoder_units: int = 0
    ctc: bool = True
    decoder: bool = True


def model_shape(conf: Mapping, task: str, vocab_size: Optional[int] = None) -> Optional[ModelShape]:
    """The shape of ``conf``'s model (a training config as loaded from YAML), or None when
    the encoder is not ``ssl_conformer`` (the only one the formula knows).

    ``vocab_size``: the fine-tuning token list's length; None assumes 5000 (the recipe's
    ``--nbpe``), marked ``vocab_assumed``.
    """
    if conf.get("encoder") != "ssl_conformer":
        return None
    enc = dict(conf.get("encoder_conf") or {})
    common = dict(
        task=task,
        input_size=int(conf.get("input_size") or 80),
        d_model=int(enc.get("output_size", 256)),
        linear_units=int(enc.get("linear_units", 2048)),
        num_blocks=int(enc.get("num_blocks", 6)),
        kernel=int(enc.get("cnn_module_kernel", 31)),
        macaron=bool(enc.get("macaron_style", True)),
        use_conv=bool(enc.get("use_cnn_module", True)),
        subsampling_channels=int(enc.get("subsampling_channels", 64)),
    )
    if task == "ssl":
        losses = {x.get("name"): dict(x.get("conf") or {}) for x in conf.get("loss") or []}
        if "best_rq" not in losses:
            return None
        rq = losses["best_rq"]
        stack = int(rq.get("stack_frames", 4))
        return ModelShape(
            **common,
            codebook_size=int(rq.get("codebook_size", 8192)),
            codebook_dim=int(rq.get("codebook_dim", 16)),
            num_codebooks=int(rq.get("num_codebooks", 1)),
            stack_frames=stack,
        )
    dec = dict(conf.get("decoder_conf") or {})
    ctc_weight = float((conf.get("model_conf") or {}).get("ctc_weight", 0.5))
    return ModelShape(
        **common,
        vocab_size=int(vocab_size or 5000),
        vocab_assumed=vocab_size is None,
        decoder_blocks=int(dec.get("num_blocks", 6)) if conf.get("decoder") else 0,
        decoder_units=int(dec.get("linear_units", 2048)),
        ctc=ctc_weight > 0.0,
        decoder=bool(conf.get("decoder")) and ctc_weight < 1.0,
    )


def encoder_frames(frames: int) -> int:
    return -(-frames // 4)


def flops_per_utterance(
    shape: ModelShape, seconds: float, tokens: Optional[int] = None, scored_frames: Optional[int] = None
) -> float:
    """Training FLOPs (forward + backward) of one utterance of ``seconds`` of speech.

    ``tokens``: its transcript's length (fine-tuning; default ``TOKENS_PER_SECOND``).
    ``scored_frames``: encoder frames the BEST-RQ heads score (pre-training). The default,
    every frame, is the accelerator's path; on the CPU in eager mode the heads score only
    the masked frames (``espnet_ext.ssl.best_rq``)."""
    s = shape
    T = max(1, round(seconds * FRAMES_PER_SECOND))
    Tp = encoder_frames(T)
    D, Fh, C, K = s.d_model, s.linear_units, s.subsampling_channels, s.kernel
    freq1 = (s.input_size + 1) // 2
    freq2 = (freq1 + 1) // 2
    conv1 = 2.0 * -(-T // 2) * freq1 * 9 * C  # input needs no gradient: weight grad only
    rest = 2.0 * Tp * freq2 * 9 * C * C + 2.0 * Tp * freq2 * C * D
    block = (2 if s.macaron else 1) * 4.0 * Tp * D * Fh + 8.0 * Tp * D * D + 4.0 * Tp * Tp * D
    if s.use_conv:
        block += 6.0 * Tp * D * D + 2.0 * Tp * D * K
    trained = rest + s.num_blocks * block
    frozen = 0.0
    if s.task == "ssl":
        scored = Tp if scored_frames is None else scored_frames
        trained += s.num_codebooks * 2.0 * scored * D * s.codebook_size
        groups = -(-T // s.stack_frames)
        frozen = (
            s.num_codebooks
            * 2.0
            * groups
            * (s.stack_frames * s.input_size + s.codebook_size)
            * s.codebook_dim
        )
    else:
        V = s.vocab_size
        if s.ctc:
            trained += 2.0 * Tp * D * V
        if s.decoder:
            L = (tokens if tokens is not None else max(1, round(seconds * TOKENS_PER_SECOND))) + 1  # <sos>
            layer = (
                8.0 * L * D * D
                + 4.0 * L * L * D  # self-attention
                + 4.0 * L * D * D
                + 4.0 * Tp * D * D
                + 4.0 * L * Tp * D  # source attention
                + 4.0 * L * D * s.decoder_units  # FFN
            )
            trained += s.decoder_blocks * layer + 2.0 * L * D * V
    return 3.0 * trained + 2.0 * conv1 + frozen


@dataclasses.dataclass(frozen=True)
class CostProjection:
    """The wall-clock time of ``total_steps`` updates of ``flops_per_update`` on ``gpus``
    accelerators of ``peak_flops`` each, at each MFU of ``mfus``."""

    flops_per_update: float
    total_steps: int
    gpus: int
    peak_flops: float
    utts_per_update: int
    utt_seconds: float
    mfus: Sequence[float] = MFUS

    @property
    def total_flops(self) -> float:
        return self.flops_per_update * self.total_steps

    def seconds_per_update(self, mfu: float) -> float:
        return self.flops_per_update / (self.gpus * self.peak_flops * mfu)

    def days(self, mfu: float) -> float:
        return self.total_steps * self.seconds_per_update(mfu) / SECONDS_PER_DAY

    def days_by_mfu(self) -> Dict[float, float]:
        return {m: self.days(m) for m in self.mfus}


def project_cost(
    shape: ModelShape,
    *,
    total_steps: int,
    utts_per_update: int,
    utt_seconds: float,
    gpus: int,
    peak_flops: float = A100_BF16_PEAK_FLOPS,
    flops_per_update: Optional[float] = None,
) -> CostProjection:
    """The projection for a config; ``flops_per_update`` overrides the formula (the bench
    passes its FlopCounterMode count)."""
    if flops_per_update is None:
        flops_per_update = utts_per_update * flops_per_utterance(shape, utt_seconds)
    return CostProjection(
        flops_per_update=flops_per_update,
        total_steps=total_steps,
        gpus=gpus,
        peak_flops=peak_flops,
        utts_per_update=utts_per_update,
        utt_seconds=utt_seconds,
    )


def count_training_flops(step) -> Dict[str, int]:
    """FlopCounterMode's count of ``step()`` (a forward + backward), raw and corrected.

    ``raw``: torch's own count. Its formula for a convolution's weight gradient ignores
    ``groups`` (torch 2.14 ``conv_backward_flop``), so a depthwise conv's weight gradient is
    counted as a dense conv's, ``groups`` times too many (x1024 for the full-scale conv
    module: +30% on the whole update). ``flops``: the same count with that term divided
    by ``groups``, the FLOPs the kernels do; the formula above counts these.
    """
    import torch
    from torch.utils import flop_counter as fc

    excess = [0]

    def t(shape):
        return [shape[1], shape[0], *shape[2:]]

    def conv_backward(
        grad_out_shape,
        x_shape,
        w_shape,
        bias,
        stride,
        padding,
        dilation,
        transposed,
        output_padding,
        groups,
        output_mask,
        out_shape=None,
        **kwargs,
    ):
        # torch's conv_backward_flop, with the weight gradient divided by groups
        flops = 0
        if output_mask[0]:
            flops += fc.conv_flop_count(grad_out_shape, w_shape, out_shape[0], not transposed)
        if output_mask[1]:
            if transposed:
                weight = fc.conv_flop_count(t(grad_out_shape), t(x_shape), t(out_shape[1]))
            else:
                weight = fc.conv_flop_count(t(x_shape), t(grad_out_shape), t(out_shape[1]))
            excess[0] += weight - weight // groups
            flops += weight // groups
        return flops

    with fc.FlopCounterMode(
        display=False, custom_mapping={torch.ops.aten.convolution_backward: conv_backward}
    ) as counter:
        step()
    return {"raw": counter.get_total_flops() + excess[0], "flops": counter.get_total_flops()}


def fmt_flops(x: float) -> str:
    exp = int(math.floor(math.log10(abs(x)))) if x else 0
    return f"{x / 10**exp:.2f}e{exp:+03d}" if x else "0"
