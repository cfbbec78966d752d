#!/usr/bin/env python3
"""Benchmark: audio shards (``--feats_type raw``) against feature shards (``fbank``).

On one labeled Kaldi data dir (by default espeak-ng speech synthesized here, 16 kHz,
with its transcripts; ``--data_dir`` takes another, e.g. the embedded corpus's
``data/train_clean_100`` after stage 1), stage 2 is run both ways
(:func:`espnet_ext.features.extract.run`) and

* **storage**: the bytes of each layout's shards (arks + indexes) per hour of audio,
  their ratio, and the projection to the seed's 600,000 h;
* **training throughput**: ``espnet_ext.bin.asr_train`` with
  ``conf/finetune_conformer_transformer_embedded.yaml`` through ``--iterator_type
  sharded`` for ``--updates`` updates on each dump (the same batches: both plans bucket
  by the features' frames). With ``raw`` the model's ``logmel`` frontend computes the
  features of each micro-batch in the training process (on a GPU at scale: on the
  device); with ``fbank`` it passes the stored features through. Seconds per update from
  ESPnet's epoch log (validation excluded), median of ``--repeats`` alternated runs.

The synthesized speech compresses better than recorded speech (silence, no noise): the
FLAC figure of a real corpus is higher. LibriSpeech for reference (openslr's archive
sizes, FLAC: train-clean-100 6.3 GB for 100.6 h, train-other-500 30 GB for 496.7 h,
~61 MB/h; not measured here) against 115 MB/h of float32 features (100 frames/s x 80 x
4 bytes): a ratio of ~1.9.

    .venv/bin/python bench/audio_shards.py [--minutes 20] [--updates 40] [--repeats 2]

The last line: ``flac_mb_per_h=<a> fbank_mb_per_h=<b> storage_ratio=<b/a>
tb_600k_h_flac=<c> tb_600k_h_fbank=<d> s_per_update_raw=<e> s_per_update_fbank=<f>
throughput_ratio_raw_over_fbank=<f/e>``.
"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from espnet_ext.features import extract as X  # noqa: E402

CONFIG = REPO / "conf" / "finetune_conformer_transformer_embedded.yaml"
WORDS = (
    "the quick brown fox jumps over a lazy dog while seven silver spoons sit on an old "
    "wooden table near the open window and a conformer encoder listens to eighty "
    "channels of log mel features computed every ten milliseconds"
).split()
VOICES = ["en-us", "en-gb", "en-us+f3", "en-gb+m3"]
SEED_HOURS = 600_000


def synthesize(root: Path, minutes: float) -> Path:
    """espeak-ng utterances (~3-8 s) as 16 kHz 16-bit FLAC with transcripts; a data dir."""
    import soxr

    rng = np.random.default_rng(0)
    data = root / "data"
    (root / "audio").mkdir(parents=True)
    data.mkdir()
    scp, text, spk, total, i = [], [], [], 0.0, 0
    while total < minutes * 60:
        words = " ".join(rng.choice(WORDS, size=int(rng.integers(8, 22))))
        tmp = root / "tmp.wav"
        subprocess.run(
            ["espeak-ng", "-v", VOICES[i % 4], "-w", str(tmp), words], check=True, capture_output=True
        )
        wave, rate = soundfile.read(tmp, dtype="float32")
        wave = soxr.resample(wave, rate, 16000).astype(np.float32)
        utt = f"spk{i % 4}-u{i:05d}"
        path = root / "audio" / f"{utt}.flac"
        soundfile.write(path, wave, 16000, subtype="PCM_16")
        scp.append(f"{utt} {path}\n")
        text.append(f"{utt} {words.upper()}\n")
        spk.append(f"{utt} spk{i % 4}\n")
        total += wave.size / 16000
        i += 1
    (data / "wav.scp").write_text("".join(scp))
    (data / "text").write_text("".join(text))
    (data / "utt2spk").write_text("".join(spk))
    return data


def shard_bytes(dump: Path) -> int:
    """Bytes of the shards (arks and indexes) of a dump dir."""
    return sum(p.stat().st_size for p in (dump / "data").rglob("*") if p.suffix in (".ark", ".idx"))


def train(work: Path, dump: Path, name: str, updates: int, k: int) -> float:
    """Seconds per update of ``updates`` updates of the embedded fine-tuning on ``dump``."""
    scp = "wav.scp" if name == "raw" else "feats.scp"
    cmd = [
        sys.executable, "-m", "espnet_ext.bin.asr_train",
        "--config", str(CONFIG),
        "--token_type", "char", "--token_list", str(work / "tokens.txt"), "--ngpu", "0",
        "--iterator_type", "sharded", "--valid_iterator_type", "sharded",
        "--train_data_path_and_name_and_type", f"{dump}/{scp},speech,kaldi_ark",
        "--train_data_path_and_name_and_type", f"{dump}/text,text,text",
        "--train_shape_file", f"{dump}/{'speech_shape' if name == 'raw' else 'feats_shape'}",
        "--valid_data_path_and_name_and_type", f"{dump}/{scp},speech,kaldi_ark",
        "--valid_data_path_and_name_and_type", f"{dump}/text,text,text",
        "--valid_shape_file", f"{dump}/{'speech_shape' if name == 'raw' else 'feats_shape'}",
        "--output_dir", str(work / f"exp_{name}_{k}"),
        "--max_epoch", "1", "--num_iters_per_epoch", str(updates),
        "--save_every_minutes", "none", "--keep_nbest_models", "1",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    log = proc.stdout + proc.stderr
    if proc.returncode != 0:
        sys.exit(f"{name}: training failed:\n{log[-3000:]}")
    m = re.search(r"1epoch results: \[train\].*?time=((\d+) minutes? and )?([\d.]+) seconds", log)
    if not m:
        sys.exit(f"{name}: no epoch time in the log:\n{log[-2000:]}")
    return (float(m.group(3)) + 60 * float(m.group(2) or 0)) / updates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data_dir", type=Path, help="a labeled Kaldi data dir (default: synthesize)")
    p.add_argument("--minutes", type=float, default=20.0, help="audio to synthesize")
    p.add_argument("--updates", type=int, default=40, help="training updates per run (0: storage only)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--nj", type=int, default=2)
    args = p.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_audio_shards_"))
    try:
        data = args.data_dir or synthesize(work / "corpus", args.minutes)
        for line in (data / "wav.scp").read_text().splitlines():  # warm the page cache: both
            path = Path(line.split(maxsplit=1)[1])  # layouts then read the sources alike
            if path.is_file():
                path.read_bytes()
        dumps, wall = {}, {}
        for name in ("raw", "fbank"):
            t0 = time.perf_counter()
            result = X.run(
                str(data), str(work / name), nj=args.nj, chunk_size=200, progress=False, feats_type=name
            )
            wall[name] = time.perf_counter() - t0
            dumps[name] = work / name
        hours = result["seconds"] / 3600
        print(f"data: {data} ({result['written']} utterances, {hours:.2f} h; {result['rejected']} rejected)")
        mb = {name: shard_bytes(d) / 1e6 / hours for name, d in dumps.items()}
        print(f"\n{'layout':32s} {'MB per hour':>12s} {'TB at 600k h':>13s} {'stage 2 s':>10s}")
        for name, label in (("raw", "FLAC audio shards (raw)"), ("fbank", "float32 feature shards (fbank)")):
            print(f"{label:32s} {mb[name]:12.1f} {mb[name] * SEED_HOURS / 1e6:13.1f} {wall[name]:10.1f}")
        ratio = mb["fbank"] / mb["raw"]
        print(f"features / audio: {ratio:.2f}x the storage")

        if args.updates == 0:  # storage only
            print(
                f"flac_mb_per_h={mb['raw']:.1f} fbank_mb_per_h={mb['fbank']:.1f} storage_ratio={ratio:.2f} "
                f"tb_600k_h_flac={mb['raw'] * SEED_HOURS / 1e6:.1f} tb_600k_h_fbank={mb['fbank'] * SEED_HOURS / 1e6:.1f}"
            )
            return
        chars = sorted(
            {c for line in (dumps["fbank"] / "text").read_text().splitlines() for c in line.split(" ", 1)[1]}
        )
        tokens = ["<blank>", "<unk>", "<space>", *[c for c in chars if c != " "], "<sos/eos>"]
        (work / "tokens.txt").write_text("\n".join(tokens) + "\n")
        times = {"raw": [], "fbank": []}
        for k in range(args.repeats):
            for name in ("raw", "fbank") if k % 2 == 0 else ("fbank", "raw"):
                times[name].append(train(work, dumps[name], name, args.updates, k))
        spu = {name: statistics.median(t) for name, t in times.items()}
        print(
            f"\ntraining ({CONFIG.name}, sharded iterator, {args.updates} updates, "
            f"{os.cpu_count()} CPUs, median of {args.repeats}):"
        )
        for name in ("raw", "fbank"):
            print(f"  {name:6s} {spu[name]:.3f} s/update")
        print(
            f"flac_mb_per_h={mb['raw']:.1f} fbank_mb_per_h={mb['fbank']:.1f} storage_ratio={ratio:.2f} "
            f"tb_600k_h_flac={mb['raw'] * SEED_HOURS / 1e6:.1f} tb_600k_h_fbank={mb['fbank'] * SEED_HOURS / 1e6:.1f} "
            f"s_per_update_raw={spu['raw']:.3f} s_per_update_fbank={spu['fbank']:.3f} "
            f"throughput_ratio_raw_over_fbank={spu['fbank'] / spu['raw']:.2f}"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
