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


def _reflect_index(positions: torch.Tensor, n) -> torch.Tensor:
    """Map signal positions (any integers) into [0, n) by repeated reflection.

    ``n``: the signal length, an int or a tensor that broadcasts with ``positions``
    (one length per row of a batch). A length of 1 maps everything to 0.
    """
    period = (2 * (n - 1)).clamp(min=1) if isinstance(n, torch.Tensor) else max(2 * (n - 1), 1)
    m = torch.remainder(positions, period)
    return torch.where(m >= n, period - m, m)


def _reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """(N,) -> (N + 2 * pad,), mirrored at both ends without repeating the edge.

    Same as ``numpy.pad(x, pad, mode="reflect")``, also for N <= pad.
    """
    n = x.numel()
    if pad == 0:
        return x
    if n > pad:
        return torch.cat([x[1 : pad + 1].flip(0), x, x[n - 1 - pad : n - 1].flip(0)])
    positions = torch.arange(-pad, n + pad, device=x.device)
    return x[_reflect_index(positions, n)]


def _log_mel_one(
    x: torch.Tensor, window: torch.Tensor, melmat: torch.Tensor, options: LogMelOptions
) -> torch.Tensor:
    """Log-Mel of one utterance.

    Args:
        x: (N,) float32 waveform, N >= 1.
        window: (n_fft,) analysis window (zero outside the centered win_length).
        melmat: (n_fft // 2 + 1, n_mels) filterbank.

    Returns:
        (1 + N // hop_length, n_mels) float32.
    """
    padded = _reflect_pad(x, options.n_fft // 2)  # (N + n_fft,)
    t = num_frames(x.numel(), options.hop_length)
    # (T, n_fft): a strided view, then one windowed contiguous copy
    frames = padded.unfold(0, options.n_fft, options.hop_length)[:t]
    spec = torch.fft.rfft(frames * window)  # (T, n_fft//2+1) complex
    power = spec.real.square() + spec.imag.square()  # (T, n_fft//2+1)
    mel = power.new_empty(t, options.n_mels)  # (T, n_mels)
    for m0, m1, k0, k1 in _mel_bands(options):
        torch.matmul(power[:, k0:k1], melmat[k0:k1, m0:m1], out=mel[:, m0:m1])
    return mel.clamp_(min=options.log_floor).log_()


def _mvn_one(feats: torch.Tensor, std_floor: float) -> torch.Tensor:
    """(T, D) -> (T, D) with zero mean and unit (floored) std per channel."""
    mean = feats.mean(0, keepdim=True)
    centered = feats - mean
    std = centered.square().mean(0, keepdim=True).sqrt_().clamp_(min=std_floor)
    return centered.div_(std)


def _features_one(
    x: torch.Tensor,
    *,
    options: LogMelOptions,
    normalize: bool,
    window: torch.Tensor,
    melmat: torch.Tensor,
) -> torch.Tensor:
    feats = _log_mel_one(x.to(torch.float32), window, melmat, options)
    return _mvn_one(feats, options.std_floor) if normalize else feats


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


def _reflect_pad_rows(
    waves: torch.Tensor, lengths: torch.Tensor, pad: int, width: int, *, shortest: int
) -> torch.Tensor:
    """Reflect-pad each row of a padded batch at ITS OWN ends, as :func:`_reflect_pad`.

    The body is one copy; the left edge is the same slice of every row; the right
    edges (``pad`` samples before each row's own end, mirrored) are one small gather
    and one scatter of (B, pad). A batch with a row of ``pad`` samples or fewer is
    reflected by index instead (:func:`_reflect_index`, repeated reflection).

    Args:
        waves: (B, N) float32; lengths: (B,) valid samples, on ``waves.device``.
        pad: samples of reflection before (and after) each row.
        width: samples per output row (the frames' reach).
        shortest: ``min(lengths)``, from the host copy of the lengths (no device sync).

    Returns:
        (B, width): row b holds ``_reflect_pad(waves[b, :lengths[b]], pad)`` first;
        what follows it is unspecified (the frames that read it are masked).
    """
    b, n = waves.shape
    if pad == 0 or shortest <= pad:
        positions = torch.arange(width, device=waves.device) - pad  # (W,)
        return torch.gather(waves, 1, _reflect_index(positions[None, :], lengths[:, None]))
    out = waves.new_zeros(b, max(width, n + 2 * pad))
    out[:, pad : pad + n] = waves
    out[:, :pad] = waves[:, 1 : pad + 1].flip(1)
    j = torch.arange(pad, device=waves.device)[None, :]  # (1, pad)
    mirrored = torch.gather(waves, 1, lengths[:, None] - 2 - j)  # x[n-2], x[n-3], ... (B, pad)
    return out.scatter_(1, lengths[:, None] + pad + j, mirrored)[:, :width]


def _valid_frames(frames: torch.Tensor, t_max: int) -> torch.Tensor:
    """(B,) frame counts -> (B, t_max, 1) bool, True on each utterance's own frames."""
    return (torch.arange(t_max, device=frames.device)[None, :] < frames[:, None])[..., None]


def _log_mel_batch(
    waves: torch.Tensor,
    lengths: torch.Tensor,
    frames: torch.Tensor,
    t_max: int,
    window: torch.Tensor,
    melmat: torch.Tensor,
    options: LogMelOptions,
) -> torch.Tensor:
    """Log-Mel of a padded batch in one pass, the operations of :func:`_log_mel_one`.

    Each row is reflect-padded at its own ends (:func:`_reflect_pad_rows`); the frames are strided
    views of it, windowed into one contiguous copy, ``rfft``-ed and projected to Mel
    over the filters' bands. No per-utterance loop: on a GPU the micro-batch is a few
    kernels whatever its size.

    Args:
        waves: (B, N) waveforms; lengths: (B,) valid samples; frames: (B,) their frames.

    Returns:
        (B, t_max, n_mels) float32, zero beyond each row's frames.
    """
    width = (t_max - 1) * options.hop_length + options.n_fft  # samples the frames read
    padded = _reflect_pad_rows(
        waves.to(torch.float32),
        lengths.to(waves.device),
        options.n_fft // 2,
        width,
        shortest=int(lengths.min()),  # ``lengths`` is the host copy (_check_batch)
    )
    frames_view = padded.unfold(1, options.n_fft, options.hop_length)  # (B, t_max, n_fft)
    spec = torch.fft.rfft(frames_view * window)  # (B, t_max, n_fft//2+1) complex
    power = spec.real.square() + spec.imag.square()
    mel = power.new_empty(*power.shape[:2], options.n_mels)  # (B, t_max, n_mels)
    for m0, m1, k0, k1 in _mel_bands(options):
        torch.matmul(power[..., k0:k1], melmat[k0:k1, m0:m1], out=mel[..., m0:m1])
    mel = mel.clamp_(min=options.log_floor).log_()
    return mel.masked_fill_(~_valid_frames(frames, t_max), 0.0)


def _mvn_batch(feats: torch.Tensor, frames: torch.Tensor, std_floor: float) -> torch.Tensor:
    """(B, T, D) zero-padded -> (B, T, D): :func:`_mvn_one` over each row's frames, zero beyond."""
    valid = _valid_frames(frames, feats.size(1))
    count = frames.to(feats.dtype)[:, None, None]  # (B, 1, 1)
    mean = feats.sum(1, keepdim=True) / count  # the padding is zero
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
    ``compute_features(waves[b, :lengths[b]])`` (what stage 2 writes to
    ``feats.scp``) whatever else is in the batch, up to float32 summation order
    (batched FFT and reductions; within 1e-5, tests/test_features.py). There is no
    per-utterance Python loop: this is the ``logmel`` frontend's path on the
    training device. The one host read is the batch's frame count (the output's
    shape). Stage 2 keeps the single-utterance path, which is faster on a CPU core
    for one utterance (bench/features.py).

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
    feats = _log_mel_batch(waves, lengths, frames, t_max, window, melmat, options)
    if normalize:
        feats = _mvn_batch(feats, frames, options.std_floor)
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
    feats = feats.masked_fill(~_valid_frames(frames, feats.size(1)), 0.0)
    return _mvn_batch(feats, frames, std_floor)


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
    window, melmat = _cached_tensors(options)
    with torch.no_grad():
        feats = _features_one(
            x,
            options=options,
            normalize=normalize,
            window=window.to(x.device),
            melmat=melmat.to(x.device),
        )
    return feats.numpy() if is_numpy else feats
