"""Normalized log-Mel features: the computation (see :mod:`espnet_ext.features`)."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Optional, Tuple, Union

import numpy as np
import torch

__all__ = [
    "LogMelOptions",
    "DEFAULT_OPTIONS",
    "SAMPLE_RATE",
    "num_frames",
    "slaney_mel_filterbank",
    "analysis_tensors",
    "utterance_mvn",
    "compute_features",
    "compute_features_batch",
]

SAMPLE_RATE = 16000


@dataclasses.dataclass(frozen=True)
class LogMelOptions:
    """Feature options. The defaults are the recipe's features."""

    sample_rate: int = SAMPLE_RATE
    n_fft: int = 512
    win_length: int = 400
    hop_length: int = 160
    n_mels: int = 80
    fmin: float = 0.0
    fmax: Optional[float] = None
    log_floor: float = 1e-10
    std_floor: float = 1e-5

    def __post_init__(self):
        problems = []
        if self.sample_rate <= 0:
            problems.append(f"sample_rate must be > 0, got {self.sample_rate}")
        if self.n_fft <= 0 or self.hop_length <= 0 or self.win_length <= 0:
            problems.append(
                "n_fft, win_length and hop_length must be > 0, got "
                f"{self.n_fft}, {self.win_length}, {self.hop_length}"
            )
        if self.win_length > self.n_fft:
            problems.append(f"win_length ({self.win_length}) must be <= n_fft ({self.n_fft})")
        if self.n_mels <= 0:
            problems.append(f"n_mels must be > 0, got {self.n_mels}")
        top = self.sample_rate / 2.0
        fmax = top if self.fmax is None else self.fmax
        if not 0.0 <= self.fmin < fmax <= top:
            problems.append(
                f"need 0 <= fmin < fmax <= sample_rate/2 = {top:g}, got fmin={self.fmin}, fmax={self.fmax}"
            )
        if self.log_floor <= 0 or self.std_floor <= 0:
            problems.append("log_floor and std_floor must be > 0")
        if problems:
            raise ValueError("LogMelOptions: " + "; ".join(problems))

    @property
    def fmax_hz(self) -> float:
        return self.sample_rate / 2.0 if self.fmax is None else float(self.fmax)

    def num_frames(self, n_samples: int) -> int:
        """Frames for ``n_samples`` samples with centered framing."""
        return num_frames(n_samples, hop_length=self.hop_length)


DEFAULT_OPTIONS = LogMelOptions()


def num_frames(n_samples: int, hop_length: int = 160) -> int:
    """Number of frames of a centered STFT: ``1 + n_samples // hop_length``."""
    return 1 + int(n_samples) // hop_length


# ---------------------------------------------------------------------------
# Filterbank and window
# ---------------------------------------------------------------------------

# Slaney's Auditory Toolbox Mel scale: linear below 1 kHz (200/3 Hz per Mel),
# logarithmic above (27 Mel per factor 6.4).
_F_SP = 200.0 / 3.0
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    hz = np.asarray(hz, dtype=np.float64)
    linear = hz / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, linear)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    linear = mel * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(mel, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(mel >= _MIN_LOG_MEL, log, linear)


def slaney_mel_filterbank(
    *, sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float
) -> np.ndarray:
    """Triangular Mel filters on the Slaney scale with area normalization.

    Same definition as ``librosa.filters.mel(htk=False, norm="slaney")``.

    Returns:
        (n_fft // 2 + 1, n_mels) float32 matrix: ``power @ matrix`` is Mel power.
    """
    fft_hz = np.linspace(0.0, sample_rate / 2.0, 1 + n_fft // 2)
    edges_hz = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)  # (n_mels + 1,)
    dist = edges_hz[:, None] - fft_hz[None, :]  # (n_mels + 2, n_freq)
    rising = -dist[:-2] / widths[:-1, None]
    falling = dist[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))  # (n_mels, n_freq)
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return np.ascontiguousarray(weights.T, dtype=np.float32)


@functools.lru_cache(maxsize=8)
def _cached_tensors(options: LogMelOptions) -> Tuple[torch.Tensor, torch.Tensor]:
    # Hann window of win_length centered in n_fft zeros, as torch.stft pads it
    left = (options.n_fft - options.win_length) // 2
    window = torch.zeros(options.n_fft, dtype=torch.float32)
    window[left : left + options.win_length] = torch.hann_window(
        options.win_length, periodic=True, dtype=torch.float32
    )
    melmat = torch.from_numpy(
        slaney_mel_filterbank(
            sample_rate=options.sample_rate,
            n_fft=options.n_fft,
            n_mels=options.n_mels,
            fmin=options.fmin,
            fmax=options.fmax_hz,
        )
    )
    return window, melmat


@functools.lru_cache(maxsize=8)
def _mel_bands(options: LogMelOptions, groups: int = 4) -> Tuple[Tuple[int, int, int, int], ...]:
    """Split the Mel filters into ``groups`` runs of adjacent filters, each with
    the range of FFT bins where any of them is non-zero: the Mel projection is
    then a few small matmuls over those bins instead of one over all bins
    (the skipped weights are exact zeros). Returns (m0, m1, k0, k1) tuples."""
    _, melmat = _cached_tensors(options)
    nonzero = melmat > 0  # (n_freq, n_mels)
    edges = np.linspace(0, options.n_mels, min(groups, options.n_mels) + 1).round().astype(int)
    bands = []
    for m0, m1 in zip(edges[:-1].tolist(), edges[1:].tolist()):
        bins = nonzero[:, m0:m1].any(dim=1).nonzero().flatten()
        k0, k1 = (int(bins.min()), int(bins.max()) + 1) if bins.numel() else (0, 1)
        bands.append((m0, m1, k0, k1))
    return tuple(bands)


def analysis_tensors(options: LogMelOptions = DEFAULT_OPTIONS) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fresh copies of (window (n_fft,), melmat (n_fft//2+1, n_mels)).

    The window is the ``win_length`` periodic Hann window centered in ``n_fft``
    zeros.
    """
    window, melmat = _cached_tensors(options)
    return window.clone(), melmat.clone()


# ---------------------------------------------------------------------------
# Compute
# ---------------------------------------------------------------------------


def _reflect_indices(lengths: torch.Tensor, pad: int, width: int) -> torch.Tensor:
    """Gather indices that reflect-pad each row of a padded batch at its own ends.

    Row b of the result maps output positions 0 .. width-1 (signal positions
    -pad .. width-pad-1) into [0, lengths[b]) by repeated reflection without
    repeating the edge sample, as ``numpy.pad(mode="reflect")`` does, also for
    lengths[b] <= pad.

    Args:
        lengths: (B,) valid samples per row, >= 1.
        pad: samples of reflection before the signal.
        width: positions per row.

    Returns:
        (B, width) int64 indices on ``lengths.device``.
    """
    positions = torch.arange(width, device=lengths.device) - pad  # (W,)
    n = lengths[:, None]  # (B, 1)
    period = (2 * (n - 1)).clamp(min=1)
    m = torch.remainder(positions[None, :], period)
    return torch.where(n == 1, 0, torch.where(m >= n, period - m, m))


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(N,) -> (N + 2 * pad,), mirrored at both ends: ``numpy.pad(x, pad, mode="reflect")``."""
    n = x.numel()
    return x[_reflect_indices(torch.tensor([n], device=x.device), pad, n + 2 * pad)[0]]


def _check_batch(waves: torch.Tensor, lengths) -> torch.Tensor:
    if waves.dim() != 2:
        raise ValueError(f"waves must be (B, N), got shape {tuple(waves.shape)}")
    lengths = torch.as_tensor(lengths).to("cpu", torch.long)
    if lengths.dim() != 1 or lengths.numel() != waves.size(0):
        raise ValueError(f"lengths must be (B,) = ({waves.size(0)},), got {tuple(lengths.shape)}")
    if waves.size(0) == 0:
        raise ValueError("empty batch")
    if int(lengths.min()) < 1 or int(lengths.max()) > waves.size(1):
        raise ValueError(f"lengths must lie in [1, {waves.size(1)}], got {lengths.tolist()}")
    return lengths


def _batch_log_mel(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    frames: torch.Tensor,
    t_max: int,
    window: torch.Tensor,
    melmat: torch.Tensor,
    options: LogMelOptions,
) -> torch.Tensor:
    """Log-Mel of a padded batch in one pass: (B, N) -> (B, t_max, n_mels), zero past ``frames``.

    Each row is reflect-padded at ITS OWN ends (one gather, ``_reflect_indices``);
    512-sample frames are strided views of it, multiplied by the zero-padded window
    into one contiguous copy, ``rfft``-ed, squared (real^2 + imag^2) and projected
    to Mel as four small matmuls over the bands of FFT bins where each quarter of
    the filters is non-zero. No per-utterance loop: on a GPU the batch is a handful
    of kernels whatever its size.
    """
    width = (t_max - 1) * options.hop_length + options.n_fft  # samples the frames read
    index = _reflect_indices(lengths.to(waves.device), options.n_fft // 2, width)  # (B, W)
    padded = torch.gather(waves.to(torch.float32), 1, index)  # (B, W)
    spec = torch.fft.rfft(padded.unfold(1, options.n_fft, options.hop_length) * window)  # (B, T, K)
    power = spec.real.square() + spec.imag.square()  # (B, T, n_fft//2+1)
    mel = power.new_empty(*power.shape[:2], options.n_mels)  # (B, T, n_mels)
    for m0, m1, k0, k1 in _mel_bands(options):
        torch.matmul(power[..., k0:k1], melmat[k0:k1, m0:m1], out=mel[..., m0:m1])
    mel = mel.clamp_(min=options.log_floor).log_()
    valid = torch.arange(t_max, device=waves.device)[None, :] < frames.to(waves.device)[:, None]
    return mel.masked_fill_(~valid[..., None], 0.0)


def _batch_mvn(feats: torch.Tensor, frames: torch.Tensor, std_floor: float) -> torch.Tensor:
    """Per-utterance, per-channel MVN over valid frames of (B, T, D) zero-padded features."""
    valid = (torch.arange(feats.size(1), device=feats.device)[None, :] < frames[:, None])[..., None]
    count = frames.to(feats.dtype)[:, None, None]  # (B, 1, 1)
    mean = feats.sum(1, keepdim=True) / count  # padding is zero
    centered = (feats - mean).masked_fill_(~valid, 0.0)
    std = (centered.square().sum(1, keepdim=True) / count).sqrt_().clamp_(min=std_floor)
    return centered.div_(std)


def compute_features_batch(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    *,
    options: LogMelOptions = DEFAULT_OPTIONS,
    normalize: bool = True,
    window: Optional[torch.Tensor] = None,
    melmat: Optional[torch.Tensor] = None,
) -> Tuple[torch.Tensor, torch.Tensor]:
    """The recipe's features for a padded batch of waveforms, in one batched pass.

    Each utterance is computed on its own samples only (the reflection of its own
    ends, normalization statistics over its own frames), so row b equals
    ``compute_features(waves[b, :lengths[b]])`` whatever else is in the batch, up
    to float32 rounding (batched FFT and reductions may sum in another order;
    tests/test_features.py bounds the difference). There is no per-utterance
    Python loop: on the training device (a GPU at scale) the whole micro-batch is
    a few kernels. The one host read is the batch's frame count (the output's
    shape).

    Args:
        waves: (B, N) waveforms at ``options.sample_rate``; values beyond
            ``lengths`` are ignored.
        lengths: (B,) valid samples per row, 1 <= lengths[b] <= N.
        options: feature options.
        normalize: apply per-utterance mean/variance normalization (the recipe
            always does).
        window: (n_fft,) analysis window; default from ``options``.
        melmat: (n_fft // 2 + 1, n_mels) filterbank; default from ``options``
            (the Mel projection skips its zero band structure, derived from
            ``options``).

    Returns:
        feats: (B, T, n_mels) float32 with T = 1 + max(lengths) // hop_length;
            zero at frames beyond an utterance's own frame count.
        frames: (B,) int64, ``1 + lengths // hop_length``, on ``waves.device``.
    """
    lengths = _check_batch(waves, lengths)
    if window is None or melmat is None:
        default_window, default_melmat = _cached_tensors(options)
        window = default_window.to(waves.device) if window is None else window
        melmat = default_melmat.to(waves.device) if melmat is None else melmat
    frames = 1 + lengths // options.hop_length
    t_max = int(frames.max())
    frames = frames.to(waves.device)
    feats = _batch_log_mel(waves, lengths, frames, t_max, window, melmat, options)
    if normalize:
        feats = _batch_mvn(feats, frames, options.std_floor)
    return feats, frames


def utterance_mvn(feats: torch.Tensor, frames: torch.Tensor, *, std_floor: float = 1e-5) -> torch.Tensor:
    """Per-utterance, per-channel mean/variance normalization over valid frames.

    Args:
        feats: (B, T, D).
        frames: (B,) valid frames per utterance (>= 1).

    Returns:
        (B, T, D) float: ``(x - mean) / max(std, std_floor)`` on each utterance's
        first ``frames[b]`` frames (population std), zero beyond.
    """
    frames = torch.as_tensor(frames, device=feats.device)
    valid = torch.arange(feats.size(1), device=feats.device)[None, :] < frames[:, None]
    return _batch_mvn(feats.masked_fill(~valid[..., None], 0.0), frames, std_floor)


ArrayLike = Union[np.ndarray, torch.Tensor]


def compute_features(
    wave: ArrayLike,
    *,
    options: LogMelOptions = DEFAULT_OPTIONS,
    normalize: bool = True,
) -> ArrayLike:
    """The recipe's features for one utterance.

    Args:
        wave: (N,) waveform at ``options.sample_rate``, N >= 1.
        options: feature options.
        normalize: apply per-utterance mean/variance normalization.

    Returns:
        (1 + N // hop_length, n_mels) float32: a numpy array for numpy input,
        a tensor (on the input's device) for tensor input.
    """
    is_numpy = not isinstance(wave, torch.Tensor)
    x = torch.from_numpy(np.ascontiguousarray(wave, dtype=np.float32)) if is_numpy else wave
    if x.dim() != 1:
        raise ValueError(f"wave must be 1-D (N,), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError("wave is empty")
    with torch.no_grad():
        feats, _ = compute_features_batch(
            x[None], torch.tensor([x.numel()]), options=options, normalize=normalize
        )
    return feats[0].numpy() if is_numpy else feats[0]
