"""Benchmark: the recipe's log-Mel vs ESPnet DefaultFrontend vs torchaudio kaldi.fbank.

On the same real audio (espeak-ng speech written as 16 kHz FLAC in a temp
dir), one torch thread, throughput in audio-seconds per CPU-second for

  (a) our stage 2 end to end: FLAC -> ark on disk (``extract_feats.run``, nj=1,
      the same code path as the recipe's stage 2),
  (b) our compute alone (``compute_features``: log-Mel + per-utterance MVN),
  (c) ESPnet ``DefaultFrontend(n_fft=512, win_length=400, hop_length=160)``,
  (d) torchaudio ``compliance.kaldi.fbank`` (80 bins, 25/10 ms, no dither).

(b)-(d) run one utterance at a time on waveforms already in memory; and the
frontend's path, the same audio as zero-padded micro-batches of ``--batch``
utterances (length-sorted, as the trainer's buckets are), for

  (e) ours, ``compute_features_batch``: one batched pass (the ``logmel`` frontend),
  (f) ours, the same micro-batches one utterance at a time (the per-utterance loop
      the frontend ran before; what stage 2 still runs),
  (g) ESPnet ``DefaultFrontend`` on the same padded micro-batches,

with the ATen operations each launches per micro-batch (kernel launches on a
GPU, where the loop's count grows with the batch). Each figure is the best of
``--repeats`` samples of >= 0.5 CPU s each.

    .venv/bin/python bench/features.py [--minutes 3] [--repeats 5]
"""

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile
import soxr
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from espnet_ext import features as F  # noqa: E402
from espnet_ext.features import extract as extract_feats  # noqa: E402

WORDS = (
    "the quick brown fox jumps over a lazy dog while seven silver spoons sit on "
    "an old wooden table near the open window and a conformer encoder listens to "
    "eighty channels of log mel features computed every ten milliseconds"
).split()
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3"]


def make_corpus(root: Path, minutes: float) -> Path:
    """Write espeak-ng utterances (~4-9 s each) as 16 kHz FLAC; returns a data dir."""
    rng = np.random.default_rng(0)
    data = root / "data"
    data.mkdir()
    lines, total, i = [], 0.0, 0
    while total < minutes * 60:
        text = " ".join(rng.choice(WORDS, size=int(rng.integers(12, 26))))
        raw = root / "tmp.wav"
        subprocess.run(
            ["espeak-ng", "-v", VOICES[i % len(VOICES)], "-w", str(raw), text],
            check=True,
            capture_output=True,
        )
        wave, rate = soundfile.read(raw, dtype="float32")
        wave = soxr.resample(wave, rate, 16000)
        path = root / f"utt{i:04d}.flac"
        soundfile.write(path, wave, 16000, subtype="PCM_16")
        lines.append(f"utt{i:04d} {path}\n")
        total += wave.size / 16000
        i += 1
    (data / "wav.scp").write_text("".join(lines))
    return data


def best_cpu(fn, repeats: int, min_sample: float = 0.5) -> float:
    """CPU seconds per call: the best of ``repeats`` samples, each sample
    looping ``fn`` long enough (>= ``min_sample`` CPU s) to be measurable on a
    shared machine."""
    t = time.process_time()
    fn()  # warm-up, and calibration
    loops = max(1, int(min_sample / max(time.process_time() - t, 1e-6)) + 1)
    best = float("inf")
    for _ in range(repeats):
        t = time.process_time()
        for _ in range(loops):
            fn()
        best = min(best, (time.process_time() - t) / loops)
    return best


def count_ops(fn, *args) -> int:
    """ATen operations ``fn(*args)`` launches (kernel launches on a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Count(TorchDispatchMode):
        n = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            _Count.n += 1
            return func(*args, **(kwargs or {}))

    with torch.no_grad(), _Count():
        fn(*args)
    return _Count.n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=3.0, help="audio to synthesize")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=16, help="utterances per micro-batch in (e)-(g)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)

    from espnet2.asr.frontend.default import DefaultFrontend
    from torchaudio.compliance.kaldi import fbank

    root = Path(tempfile.mkdtemp(prefix="bench_features_"))
    try:
        data = make_corpus(root, args.minutes)
        paths = [line.split()[1] for line in (data / "wav.scp").read_text().splitlines()]
        waves = [F.read_audio(p) for p in paths]
        seconds = sum(w.size for w in waves) / 16000
        print(f"audio: {len(waves)} utterances, {seconds:.1f} s (espeak-ng, 16 kHz FLAC)")

        runs = iter(range(10**6))

        def stage():
            out = root / f"dump{next(runs)}"
            result = extract_feats.run(str(data), str(out), nj=1, chunk_size=10**6, progress=False)
            assert result["written"] == len(waves), result
            shutil.rmtree(out)

        def ours():
            for w in waves:
                F.compute_features(w)

        default = DefaultFrontend(fs=16000, n_fft=512, win_length=400, hop_length=160, n_mels=80).eval()
        tensors = [torch.from_numpy(w) for w in waves]

        def espnet():
            with torch.no_grad():
                for x in tensors:
                    default(x[None], torch.tensor([x.numel()]))

        def kaldi():
            for x in tensors:
                fbank(x[None] * 32768, num_mel_bins=80, sample_frequency=16000.0, dither=0.0)

        order = sorted(range(len(tensors)), key=lambda i: tensors[i].numel())
        micro = [order[i : i + args.batch] for i in range(0, len(order), args.batch)]
        padded = []
        for rows_ in micro:
            lengths = torch.tensor([tensors[i].numel() for i in rows_])
            batch = torch.zeros(len(rows_), int(lengths.max()))
            for r, i in enumerate(rows_):
                batch[r, : tensors[i].numel()] = tensors[i]
            padded.append((batch, lengths))

        def one_pass(batch, lengths):
            F.compute_features_batch(batch, lengths)

        def per_utterance(batch, lengths):
            for r, n in enumerate(lengths.tolist()):
                F.compute_features(batch[r, :n])

        def batched():
            with torch.no_grad():
                for batch, lengths in padded:
                    one_pass(batch, lengths)

        def looped():
            with torch.no_grad():
                for batch, lengths in padded:
                    per_utterance(batch, lengths)

        def espnet_batched():
            with torch.no_grad():
                for batch, lengths in padded:
                    default(batch, lengths)

        rows = [
            ("(a) ours, stage end to end (FLAC -> ark)", stage),
            ("(b) ours, compute (log-Mel + MVN)", ours),
            ("(c) ESPnet DefaultFrontend", espnet),
            ("(d) torchaudio kaldi.fbank", kaldi),
            (f"(e) ours, micro-batches of {args.batch}, one pass", batched),
            (f"(f) ours, micro-batches of {args.batch}, per utterance", looped),
            (f"(g) ESPnet DefaultFrontend, micro-batches of {args.batch}", espnet_batched),
        ]
        speed = {}
        print(f"\n{'component (1 thread)':44s} {'CPU s':>8s} {'audio s / CPU s':>16s}")
        for name, fn in rows:
            cpu = best_cpu(fn, args.repeats)
            speed[name[:3]] = seconds / cpu
            print(f"{name:44s} {cpu:8.3f} {seconds / cpu:16.0f}")
        print()
        ratio = speed["(b)"] / speed["(c)"]
        print(f"ours / DefaultFrontend (compute):  {ratio:.2f}x  (goal >= 1.5x)")
        print(f"ours / kaldi.fbank (compute):      {speed['(b)'] / speed['(d)']:.2f}x")
        middle = padded[len(padded) // 2]
        ops = {"(e)": count_ops(one_pass, *middle), "(f)": count_ops(per_utterance, *middle)}
        print(
            f"frontend, one pass / per utterance:  {speed['(e)'] / speed['(f)']:.2f}x on 1 CPU thread; "
            f"ATen ops per micro-batch {ops['(e)']} vs {ops['(f)']} "
            f"({ops['(f)'] / ops['(e)']:.1f}x fewer launches)"
        )
        print(
            f"frontend, one pass / DefaultFrontend:  {speed['(e)'] / speed['(g)']:.2f}x (same padded micro-batches)"
        )
        rtf = speed["(a)"]
        print(f"stage end to end:                  {rtf:.0f}x real time per core (goal >= 1000x)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
