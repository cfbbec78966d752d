#!/usr/bin/env python3
"""Seconds per update of the embedded fine-tuning on this CPU: ESPnet's defaults vs the recipe's.

Trains ``conf/finetune_conformer_transformer_embedded.yaml`` (ESPnet's real ASR task and
trainer, through ``espnet_ext.bin.asr_train``) for ``--updates`` updates on a synthetic
kaldi-ark set (random 80-dim features of 2-6 s, character transcripts), in fresh processes,
with every thread setting left to PyTorch (all cores), in five variants:

* ``stock``: ESPnet's default ``num_workers 1`` (a DataLoader process) and float32 (ESPnet
  autocasts only on CUDA, so ``use_amp`` does nothing on a CPU);
* ``workers0``: ``num_workers 0`` (batches loaded in the training process);
* ``bf16``: ``num_workers 1`` and ``use_amp true`` with the project trainer (CPU bf16 autocast);
* ``recipe``: ``num_workers 0`` and float32, as the embedded configs set them (bf16 autocast
  was x0.66 of float32's speed on a 2-core AMD EPYC of 2026-12-02);
* ``recipe_bf16``: ``num_workers 0`` and ``use_amp true``.

The time is the training epoch's wall time from ESPnet's log (validation excluded), divided
by the updates; the median over ``--repeats`` alternated runs. On a shared machine read the
ratios as indicative. bf16 pays off only on CPUs with native bf16 (AVX512-BF16 or AMX).

Run:  .venv/bin/python bench/cpu_training.py             (about 3 minutes on 2 cores)
      .venv/bin/python bench/cpu_training.py --quick     (smoke run)
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import kaldiio
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "conf" / "finetune_conformer_transformer_embedded.yaml"
VARIANTS = {
    "stock": ["--num_workers", "1", "--use_amp", "false"],
    "workers0": ["--num_workers", "0", "--use_amp", "false"],
    "bf16": ["--num_workers", "1", "--use_amp", "true"],
    "recipe": ["--num_workers", "0", "--use_amp", "false"],
    "recipe_bf16": ["--num_workers", "0", "--use_amp", "true"],
}
_LETTERS = "ABCDEFGHIJKLMNOPRSTUVWY"


def make_set(directory: Path, utts: int, seed: int) -> None:
    """Random features (2-6 s) and transcripts of about 13 characters per second."""
    rng = np.random.RandomState(seed)
    directory.mkdir(parents=True)
    shapes, texts = [], []
    with kaldiio.WriteHelper(f"ark,scp:{directory}/feats.ark,{directory}/feats.scp") as writer:
        for i in range(utts):
            frames = int(rng.randint(200, 600))
            utt = f"u{i:04d}"
            writer[utt] = rng.randn(frames, 80).astype(np.float32)
            shapes.append(f"{utt} {frames},80")
            n_chars = frames * 13 // 100
            words, total = [], 0
            while total < n_chars:
                w = "".join(rng.choice(list(_LETTERS), rng.randint(2, 8)))
                words.append(w)
                total += len(w) + 1
            texts.append(f"{utt} {' '.join(words)}")
    (directory / "feats_shape").write_text("\n".join(shapes) + "\n")
    (directory / "text").write_text("\n".join(texts) + "\n")


def run(work: Path, name: str, extra, updates: int, k: int) -> float:
    out = work / f"{name}_{k}"
    tokens = work / "tokens.txt"
    cmd = [
        sys.executable,
        "-m",
        "espnet_ext.bin.asr_train",
        "--config",
        str(CONFIG),
        "--token_type",
        "char",
        "--token_list",
        str(tokens),
        "--ngpu",
        "0",
        "--train_data_path_and_name_and_type",
        f"{work}/train/feats.scp,speech,kaldi_ark",
        "--train_data_path_and_name_and_type",
        f"{work}/train/text,text,text",
        "--train_shape_file",
        f"{work}/train/feats_shape",
        "--valid_data_path_and_name_and_type",
        f"{work}/valid/feats.scp,speech,kaldi_ark",
        "--valid_data_path_and_name_and_type",
        f"{work}/valid/text,text,text",
        "--valid_shape_file",
        f"{work}/valid/feats_shape",
        "--output_dir",
        str(out),
        "--max_epoch",
        "1",
        "--num_iters_per_epoch",
        str(updates),
        "--save_every_minutes",
        "none",
        "--keep_nbest_models",
        "1",
        *extra,
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"{name}: training failed:\n{(proc.stdout + proc.stderr)[-3000:]}")
    log = proc.stdout + proc.stderr
    m = re.search(r"1epoch results: \[train\].*?time=((\d+) minutes? and )?([\d.]+) seconds", log)
    if not m:
        sys.exit(f"{name}: no epoch time in the log")
    seconds = float(m.group(3)) + 60 * float(m.group(2) or 0)
    return seconds / updates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--updates", type=int, default=60)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--quick", action="store_true", help="10 updates, 1 repeat")
    args = p.parse_args()
    if args.quick:
        args.updates, args.repeats = 10, 1
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        make_set(work / "train", 300, 0)
        make_set(work / "valid", 8, 1)
        (work / "tokens.txt").write_text(
            "\n".join(["<blank>", "<unk>", "<space>", *_LETTERS, "<sos/eos>"]) + "\n"
        )
        times = {name: [] for name in VARIANTS}
        for k in range(args.repeats):
            order = list(VARIANTS) if k % 2 == 0 else list(reversed(VARIANTS))
            for name in order:
                times[name].append(run(work, name, VARIANTS[name], args.updates, k))
    print(
        f"conf/finetune_conformer_transformer_embedded.yaml, {args.updates} updates, "
        f"{os.cpu_count()} CPUs, median of {args.repeats}"
    )
    base = statistics.median(times["stock"])
    for name, extra in VARIANTS.items():
        t = statistics.median(times[name])
        print(f"{name:9s} {' '.join(extra):40s} {t:.3f} s/update  speed-up x{base / t:.2f}")


if __name__ == "__main__":
    main()
