"""Synthesis: one utterance of the plan to 16 kHz 16-bit audio with espeak-ng.

For each utterance: espeak-ng (``-v voice+variant -s rate -p pitch -g gap --stdout``) at
22,050 Hz; resampled to 16 kHz with soxr (HQ); scaled to the planned RMS level; the
planned lead-in and extra tail added to espeak-ng's own trailing pause; seeded Gaussian
noise with the planned spectral tilt added over the whole file at the planned SNR;
peak-limited to 0.97; rounded to 16 bits. Nothing is trimmed.

Guarantees: the samples are a function of the utterance, its speaker and the espeak-ng
version only (every random number was drawn by the plan; the noise has its own seed), so
they do not depend on ``--nj`` or on the order of synthesis; each FLAC file is written
atomically (atomic.py); ``espeak_info`` refuses an espeak-ng that lacks a voice or variant
the corpus uses (espeak-ng would silently fall back to its default timbre).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Sequence

import numpy as np

from .atomic import write_atomic
from .common import SAMPLE_RATE, CorpusError
from .plan import Utterance
from .voices import VARIANT_SEX, VOICES, Speaker

ESPEAK_RATE = 22050  # espeak-ng's output sample rate

# One synthesis job: the FLAC path, the utterance, its speaker.
Job = tuple[str, Utterance, Speaker]


class SynthesisError(CorpusError):
    """espeak-ng failed or returned no usable audio for an utterance."""


def _parse_wav(raw: bytes, what: str) -> np.ndarray:
    """int16 samples of espeak-ng's --stdout WAV (its size fields may be 'streaming')."""
    if raw[:4] != b"RIFF" or raw[8:12] != b"WAVE":
        raise SynthesisError(f"{what}: espeak-ng did not return a WAV stream")
    pos, fmt = 12, None
    while pos + 8 <= len(raw):
        cid, size = raw[pos : pos + 4], int.from_bytes(raw[pos + 4 : pos + 8], "little")
        if cid == b"fmt ":
            fmt = (
                int.from_bytes(raw[pos + 10 : pos + 12], "little"),
                int.from_bytes(raw[pos + 12 : pos + 16], "little"),
                int.from_bytes(raw[pos + 22 : pos + 24], "little"),
            )
        elif cid == b"data":
            if fmt != (1, ESPEAK_RATE, 16):
                raise SynthesisError(
                    f"{what}: unexpected WAV format (channels, rate, bits)"
                    f" = {fmt}, wanted (1, {ESPEAK_RATE}, 16)"
                )
            data = raw[pos + 8 :]
            return np.frombuffer(data[: len(data) // 2 * 2], dtype="<i2")
        pos += 8 + size + (size & 1)
    raise SynthesisError(f"{what}: no audio data in espeak-ng output")


def _espeak(utt: Utterance, spk: Speaker) -> np.ndarray:
    """espeak-ng's int16 samples of the utterance at ESPEAK_RATE."""
    cmd = [
        "espeak-ng",
        "-v",
        spk.combo,
        "-s",
        str(utt.rate),
        "-p",
        str(spk.pitch),
        "-g",
        str(spk.word_gap),
        "--stdout",
        "--stdin",
    ]
    what = f"utterance {utt.uid} ({spk.combo})"
    proc = subprocess.run(cmd, input=utt.text.encode(), capture_output=True)
    if proc.returncode != 0:
        raise SynthesisError(
            f"{what}: espeak-ng failed ({proc.returncode}): {proc.stderr.decode(errors='replace').strip()}"
        )
    pcm = _parse_wav(proc.stdout, what)
    if len(pcm) < ESPEAK_RATE // 4 or not np.any(pcm):
        raise SynthesisError(f"{what}: espeak-ng returned {len(pcm)} samples of silence")
    return pcm


def _noise(n: int, tilt: float, seed: int) -> np.ndarray:
    """Unit-RMS Gaussian noise, spectrum ~ f^-tilt (0 white, 1 pink), seeded."""
    noise = np.random.default_rng(seed).standard_normal(n)
    if tilt > 0:
        spec = np.fft.rfft(noise)
        freq = np.maximum(np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE), 50.0)
        noise = np.fft.irfft(spec * (freq / 1000.0) ** (-tilt / 2), n)
    return noise / np.sqrt(np.mean(noise**2))


def render_utterance(utt: Utterance, spk: Speaker) -> np.ndarray:
    """Audio of one utterance: (samples,) int16 at 16 kHz."""
    import soxr

    speech = soxr.resample(
        _espeak(utt, spk).astype(np.float64) / 32768.0, ESPEAK_RATE, SAMPLE_RATE, quality="HQ"
    )
    speech *= 10 ** (utt.level_dbfs / 20) / np.sqrt(np.mean(speech**2))
    lead = np.zeros(round(utt.lead_sec * SAMPLE_RATE))
    trail = np.zeros(round(utt.trail_sec * SAMPLE_RATE))
    signal = np.concatenate([lead, speech, trail])
    noise_rms = 10 ** ((utt.level_dbfs - utt.snr_db) / 20)
    signal += noise_rms * _noise(len(signal), utt.noise_tilt, utt.noise_seed)
    peak = np.max(np.abs(signal))
    if peak > 0.97:
        signal *= 0.97 / peak
    return np.clip(np.round(signal * 32767), -32768, 32767).astype(np.int16)


def _write_flac_atomic(path: Path, audio: np.ndarray) -> None:
    import soundfile as sf

    write_atomic(path, lambda tmp: sf.write(tmp, audio, SAMPLE_RATE, format="FLAC", subtype="PCM_16"))


def _synthesize(job: Job) -> tuple[str, int]:
    path, utt, spk = job
    audio = render_utterance(utt, spk)
    _write_flac_atomic(Path(path), audio)
    return utt.uid, len(audio)


def espeak_info() -> str:
    """espeak-ng's version; raise if it or a voice/variant this corpus needs is missing."""
    if shutil.which("espeak-ng") is None:
        raise CorpusError("espeak-ng is not installed (Debian/Ubuntu: sudo apt-get install espeak-ng)")

    def run(*args: str) -> str:
        return subprocess.run(["espeak-ng", *args], capture_output=True, text=True, check=True).stdout

    m = re.search(r"text-to-speech:\s*(\S+)", run("--version"))
    version = m.group(1) if m else "unknown"
    languages = {line.split()[1] for line in run("--voices=en").splitlines()[1:] if len(line.split()) > 1}
    variant_files = set(re.findall(r"!v/(\S+)", run("--voices=variant")))
    missing = [v for v in VOICES if v not in languages]
    missing += [f"variant {v}" for v in VARIANT_SEX if v not in variant_files]
    if missing:
        raise CorpusError(f"espeak-ng {version} lacks voices this corpus needs: {', '.join(missing)}")
    return version


def run_jobs(jobs: Sequence[Job], nj: int) -> None:
    """Synthesize and write every job with ``nj`` processes, with a progress bar."""
    from tqdm import tqdm

    bar = tqdm(
        total=len(jobs),
        unit="utt",
        desc="espeak-ng",
        file=sys.stderr,
        mininterval=1.0 if sys.stderr.isatty() else 15.0,
    )
    if nj == 1 or len(jobs) <= 1:
        for job in jobs:
            _synthesize(job)
            bar.update()
    else:
        import multiprocessing as mp

        with mp.get_context("fork").Pool(nj) as pool:
            for _ in pool.imap_unordered(_synthesize, jobs, chunksize=4):
                bar.update()
    bar.close()
