"""The embedded corpus's own augmentation sets: non-speech noise in MUSAN's layout and
simulated room impulse responses in RIRS_NOISES' layout, so that stage 1 prepares them with
the same code as the real sets (``espnet_ext.data.augment``) and the default run can
exercise waveform augmentation without downloading anything.

    <out>/musan/noise/embedded/noise-embedded-<k:04d>.wav                    16 kHz mono PCM_16
    <out>/RIRS_NOISES/simulated_rirs/embedded/Room<r:03d>/Room<r:03d>-<k:05d>.wav
    <out>/RIRS_NOISES/simulated_rirs/embedded/rir_list   "--rir-id .. --room-id .. <path>"
    <out>/noise_rirs.json   written last: parameters and counts (a complete set is not rewritten)

Noise: white, pink, brown, mains hum with harmonics, a fan (low-passed noise with a slow
amplitude modulation) and rain (sparse filtered clicks); never speech, so no sentence or
voice of the corpus can leak through it. RIRs: a direct path, a few early reflections and an
exponentially decaying diffuse tail with RT60 drawn per room (the image-source model's
shape, reduced to what a 16 kHz ASR front-end sees; Habets 2006, "Room impulse response
generator", sec. 2). Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile

from .atomic import write_atomic, write_text_atomic
from .common import SAMPLE_RATE

NOISE_VERSION = 1
DONE = "noise_rirs.json"
N_NOISES = 24
N_ROOMS = 8
RIRS_PER_ROOM = 4
_KINDS = ("white", "pink", "brown", "hum", "fan", "rain")


def _colored(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    """Noise with a power spectrum ~ 1 / f**exponent (0 white, 1 pink, 2 brown)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    return np.fft.irfft(spec / f ** (exponent / 2), n)


def _noise(rng: np.random.Generator, kind: str, n: int) -> np.ndarray:
    t = np.arange(n) / SAMPLE_RATE
    if kind == "white":
        x = rng.standard_normal(n)
    elif kind == "pink":
        x = _colored(rng, n, 1.0)
    elif kind == "brown":
        x = _colored(rng, n, 2.0)
    elif kind == "hum":
        base = rng.choice([50.0, 60.0])
        x = sum(
            rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3))
            for k in range(1, 8)
        )
        x = x + 0.05 * rng.standard_normal(n)
    elif kind == "fan":
        low = np.cumsum(rng.standard_normal(n))  # low-passed
        low -= np.convolve(low, np.ones(400) / 400, mode="same")
        x = low * (1.0 + 0.3 * np.sin(2 * np.pi * rng.uniform(0.2, 2.0) * t))
    else:  # rain: sparse clicks through a short resonance
        clicks = (rng.random(n) < 0.002) * rng.standard_normal(n)
        x = np.convolve(
            clicks, np.exp(-np.arange(160) / 20.0) * np.sin(np.arange(160) * rng.uniform(0.3, 1.5))
        )[:n]
    x = x - x.mean()
    return 0.5 * x / max(np.abs(x).max(), 1e-9)


def _rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    n = int(min(1.2 * rt60, 1.0) * SAMPLE_RATE)
    h = np.zeros(n)
    direct = int(rng.uniform(0.001, 0.005) * SAMPLE_RATE)
    h[direct] = 1.0
    for _ in range(6):  # early reflections, 5-40 ms after the direct path
        d = direct + int(rng.uniform(0.005, 0.04) * SAMPLE_RATE)
        if d < n:
            h[d] += rng.choice([-1.0, 1.0]) * rng.uniform(0.2, 0.6)
    start = direct + int(0.01 * SAMPLE_RATE)
    t = np.arange(n - start) / SAMPLE_RATE
    h[start:] += (
        rng.uniform(0.05, 0.2) * rng.standard_normal(t.size) * np.exp(-6.9 * t / rt60)
    )  # -60 dB at rt60
    return h / np.abs(h).max()


def make_noise_sets(out: Path, *, seed: int) -> dict:
    """Write both sets under ``out`` (skipped when complete); returns the summary."""
    done = out / DONE
    params = {"version": NOISE_VERSION, "seed": seed, "noises": N_NOISES, "rooms": N_ROOMS}
    if done.is_file():
        summary = json.loads(done.read_text())
        if summary.get("params") == params:
            return summary
    rng = np.random.default_rng([seed, 7919])
    noise_dir = out / "musan" / "noise" / "embedded"
    noise_dir.mkdir(parents=True, exist_ok=True)
    noise_seconds = 0.0
    for k in range(N_NOISES):
        n = int(rng.uniform(3.0, 8.0) * SAMPLE_RATE)
        x = _noise(rng, _KINDS[k % len(_KINDS)], n)
        noise_seconds += n / SAMPLE_RATE
        path = noise_dir / f"noise-embedded-{k:04d}.wav"
        write_atomic(path, lambda p, x=x: soundfile.write(p, x, SAMPLE_RATE, subtype="PCM_16", format="WAV"))
    rir_root = out / "RIRS_NOISES" / "simulated_rirs" / "embedded"
    lines, rt60s = [], []
    for r in range(1, N_ROOMS + 1):
        rt60 = float(rng.uniform(0.2, 0.8))
        rt60s.append(round(rt60, 3))
        room = rir_root / f"Room{r:03d}"
        room.mkdir(parents=True, exist_ok=True)
        for k in range(1, RIRS_PER_ROOM + 1):
            h = _rir(rng, rt60)
            path = room / f"Room{r:03d}-{k:05d}.wav"
            write_atomic(
                path, lambda p, h=h: soundfile.write(p, h, SAMPLE_RATE, subtype="PCM_16", format="WAV")
            )
            rel = path.relative_to(out)
            lines.append(f"--rir-id embedded-Room{r:03d}-{k:05d} --room-id embedded-Room{r:03d} {rel}\n")
    write_text_atomic(rir_root / "rir_list", "".join(lines))
    summary = {"params": params, "noise_files": N_NOISES, "noise_seconds": round(noise_seconds, 2),
               "rirs": len(lines), "rt60_s": rt60s}  # fmt: skip
    write_text_atomic(done, json.dumps(summary, indent=1) + "\n")
    return summary
