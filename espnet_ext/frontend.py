"""``logmel`` frontend: the recipe's normalized log-Mel inside an ESPnet model.

The frontend calls :func:`espnet_ext.features.compute_features_batch`, the
same function stage 2 used to write ``feats.scp``, so a model trained on
pre-extracted features transcribes raw audio with identical input features
(see the module docstring of :mod:`espnet_ext.features`).

Input that is already features is passed through unchanged, so ONE model
config (``frontend: logmel``, ``normalize: null``) both trains on
``feats.scp`` (kaldi_ark, (T, 80) per utterance) and decodes wav files.
"""

from typing import Optional, Tuple

import torch
from espnet2.asr.frontend.abs_frontend import AbsFrontend
from typeguard import typechecked

from espnet_ext.features import LogMelOptions, analysis_tensors, compute_features_batch


class LogMelFrontend(AbsFrontend):
    """Waveform -> per-utterance normalized log-Mel; features pass through.

    Args:
        fs: sampling rate of the waveform input.
        n_fft: FFT size.
        win_length: analysis window (Hann) length in samples.
        hop_length: frame shift in samples.
        n_mels: Mel channels (= output size).
        fmin: lowest filter edge (Hz).
        fmax: highest filter edge (Hz); ``None`` for fs / 2.
        utterance_norm: per-utterance mean/variance normalization.
    """

    @typechecked
    def __init__(
        self,
        fs: int = 16000,
        n_fft: int = 512,
        win_length: int = 400,
        hop_length: int = 160,
        n_mels: int = 80,
        fmin: float = 0.0,
        fmax: Optional[float] = None,
        utterance_norm: bool = True,
    ):
        super().__init__()
        self.options = LogMelOptions(
            sample_rate=fs,
            n_fft=n_fft,
            win_length=win_length,
            hop_length=hop_length,
            n_mels=n_mels,
            fmin=fmin,
            fmax=fmax,
        )
        self.utterance_norm = utterance_norm
        window, melmat = analysis_tensors(self.options)
        # Derived from the options: not part of the model's state dict.
        self.register_buffer("window", window, persistent=False)
        self.register_buffer("melmat", melmat, persistent=False)

    def output_size(self) -> int:
        return self.options.n_mels

    def extra_repr(self) -> str:
        o = self.options
        return (
            f"fs={o.sample_rate}, n_fft={o.n_fft}, win_length={o.win_length}, "
            f"hop_length={o.hop_length}, n_mels={o.n_mels}, fmin={o.fmin}, "
            f"fmax={o.fmax}, utterance_norm={self.utterance_norm}"
        )

    def forward(self, input: torch.Tensor, input_lengths: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """Compute or pass through features.

        Args:
            input: (B, N) waveforms, (B, N, C) multi-channel waveforms (the
                channels are averaged, as ``read_audio`` does), or
                (B, T, n_mels) features, which are returned unchanged.
            input_lengths: (B,) valid samples (or frames) per row.

        Returns:
            feats: (B, T, n_mels), zero beyond each utterance's frames.
            feats_lengths: (B,) int64, ``1 + input_lengths // hop_length``
                for waveforms.
        """
        if input.dim() == 3 and input.size(-1) == self.options.n_mels:
            return input, input_lengths
        if input.dim() == 3:
            input = input.mean(dim=-1)
        if input.dim() != 2:
            raise ValueError(
                "LogMelFrontend expects (B, N) waveforms, (B, N, C) multi-channel "
                f"waveforms or (B, T, {self.options.n_mels}) features; got shape "
                f"{tuple(input.shape)}"
            )
        return compute_features_batch(
            input,
            input_lengths,
            options=self.options,
            normalize=self.utterance_norm,
            window=self.window,
            melmat=self.melmat,
        )
