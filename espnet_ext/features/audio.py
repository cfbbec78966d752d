"""Reading audio as the recipe's features expect it: float32 mono at 16 kHz."""

from __future__ import annotations

from typing import Optional

import numpy as np
import soundfile

from espnet_ext.features.logmel import SAMPLE_RATE

__all__ = ["AudioError", "read_audio"]


class AudioError(RuntimeError):
    """An audio file (or a segment of it) cannot be turned into a waveform."""


def read_audio(
    path: str,
    start: Optional[float] = None,
    end: Optional[float] = None,
    *,
    sample_rate: int = SAMPLE_RATE,
) -> np.ndarray:
    """Read a (segment of a) sound file as float32 mono at ``sample_rate``.

    Several channels are averaged; other rates are resampled with soxr (HQ).
    ``start``/``end`` are seconds in the file (Kaldi ``segments``); ``end``
    past the end of the file is clipped to it.

    Returns:
        (N,) float32 waveform, nominally in [-1, 1].

    Raises:
        AudioError: naming the file and the reason.
    """
    try:
        info = soundfile.info(path)
    except Exception as exc:  # soundfile raises LibsndfileError / RuntimeError
        raise AudioError(f"{path}: cannot open audio: {exc}") from exc
    rate, total = int(info.samplerate), int(info.frames)
    first, last = 0, total
    if start is not None or end is not None:
        s = 0.0 if start is None else float(start)
        e = total / rate if end is None else float(end)
        if s < 0 or e <= s:
            raise AudioError(f"{path}: bad segment [{s}, {e}] s")
        first = int(round(s * rate))
        last = min(total, int(round(e * rate)))
        if first >= total:
            raise AudioError(
                f"{path}: segment starts at {s:.3f} s, past the end of the file ({total / rate:.3f} s)"
            )
    try:
        data = soundfile.read(path, start=first, stop=last, dtype="float32", always_2d=True)[0]
    except Exception as exc:
        raise AudioError(f"{path}: cannot decode audio: {exc}") from exc
    if data.shape[0] == 0:
        raise AudioError(f"{path}: no samples in [{first}, {last})")
    if data.shape[0] != last - first:
        raise AudioError(f"{path}: truncated or corrupt: decoded {data.shape[0]} of {last - first} samples")
    wave = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1, dtype=np.float32)
    if not np.isfinite(wave).all():
        raise AudioError(f"{path}: audio contains NaN or infinite samples")
    if rate != sample_rate:
        import soxr  # only needed for off-rate audio

        wave = soxr.resample(wave, rate, sample_rate)
    return np.ascontiguousarray(wave, dtype=np.float32)
