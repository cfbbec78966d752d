#!/usr/bin/env python3
"""Step-checkpoint cost: espnet_ext's atomic writer vs ESPnet's ``checkpoint.pth`` write.

Same work for both: the training state of a real ssl_conformer encoder + BEST-RQ loss
(the recipe's pre-training model, scaled down to fit this machine) after one AdamW
update -- model, optimizer (exp_avg, exp_avg_sq, step), scheduler, reporter -- written
to the same directory.

* stock: what ``espnet2.train.trainer.Trainer.run`` does at the end of an epoch,
  ``torch.save(state, output_dir / "checkpoint.pth")`` in place (a kill during the write
  destroys the previous checkpoint; no fsync, so the timing may be page-cache speed);
* stock + fsync: the same followed by ``os.fsync``, i.e. until the bytes are on disk;
* ours: :func:`espnet_ext.train.checkpoint.save_step_checkpoint` (temporary file with a
  running CRC-32, fsync, atomic rename, directory fsync, manifest written the same way).

Also timed: validating a checkpoint (size + CRC-32 re-read) and loading it, which is what
a resume pays before training continues.

Projection to the full-scale model (conf/pretrain_conformer_bestrq.yaml: Conformer
24 x 1024, FFN 4096, kernel 31, 8192-code BEST-RQ head): its parameters are counted on the
``meta`` device (nothing allocated); bytes = measured bytes per parameter (fp32 weights
and both AdamW moments, i.e. ~12 B) x that count; time = bytes / the measured throughput
of each writer on this disk. The cluster's filesystem will differ: the script prints the
formula's inputs so the projection can be redone with its throughput.

Lost work at the defaults (``--save_every_minutes 5``, ``--save_every_steps`` off): a
kill loses the training since the newest committed checkpoint, at most 5 min plus one
update, plus the restart (process start, validate + load, skipping consumed batches
without reading them).

Run:  .venv/bin/python bench/checkpoint.py           (about a minute)
      .venv/bin/python bench/checkpoint.py --quick   (small model, one repeat)
"""

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

FULL = dict(output_size=1024, attention_heads=16, linear_units=4096, num_blocks=24, cnn_module_kernel=31)
FULL_CODEBOOK = 8192
SECONDS_PER_UPDATE = (0.25, 0.5)  # the full-scale config's own estimate (128 A100s)


def _model(output_size, attention_heads, linear_units, num_blocks, cnn_module_kernel, codebook_size):
    from espnet_ext.nets.ssl_conformer import SSLConformerEncoder
    from espnet_ext.ssl.best_rq import BestRQLoss

    return torch.nn.ModuleDict({
        "encoder": SSLConformerEncoder(
            input_size=80, output_size=output_size, attention_heads=attention_heads,
            linear_units=linear_units, num_blocks=num_blocks, cnn_module_kernel=cnn_module_kernel,
        ),
        "loss": BestRQLoss(encoder_output_size=output_size, codebook_size=codebook_size),
    })


def _trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _state(model):
    from espnet2.train.reporter import Reporter

    from espnet_ext.schedulers.warmup_cosine_lr import WarmupCosineLR

    optim = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01)
    sched = WarmupCosineLR(optim, warmup_steps=10, total_steps=100)
    for p in model.parameters():  # one update: AdamW allocates both moments
        p.grad = torch.randn_like(p) * 1e-3
    optim.step()
    sched.step()
    optim.zero_grad()
    return {
        "model": model.state_dict(),
        "reporter": Reporter().state_dict(),
        "optimizers": [optim.state_dict()],
        "schedulers": [sched.state_dict()],
        "scaler": None,
    }


def _drop_cache(path: Path):
    try:  # so that reads come from the disk, as after a crash and restart
        fd = os.open(path, os.O_RDONLY)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        os.close(fd)
    except (OSError, AttributeError):
        pass


def _time(fn, repeats):
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        fn()
        times.append(time.perf_counter() - tic)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--dir", default=None, help="where to write (default: a temporary dir under /tmp)")
    parser.add_argument("--blocks", type=int, default=None)
    args = parser.parse_args()
    torch.set_num_threads(1)

    from espnet_ext.train import checkpoint as ckpt

    size = dict(output_size=512, attention_heads=8, linear_units=2048, num_blocks=args.blocks or (2 if args.quick else 8),
                cnn_module_kernel=31, codebook_size=FULL_CODEBOOK)
    repeats = 1 if args.quick else 7
    torch.manual_seed(0)
    model = _model(**size)
    state = _state(model)
    params = _trainable(model)
    with torch.device("meta"):
        full_params = _trainable(_model(**FULL, codebook_size=FULL_CODEBOOK))

    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        tmp = Path(tmp)
        stock_path = tmp / "checkpoint.pth"

        def stock():
            torch.save(state, stock_path)

        def stock_fsync():
            torch.save(state, stock_path)
            fd = os.open(stock_path, os.O_RDONLY)
            os.fsync(fd)
            os.close(fd)

        position = [0]

        def ours():
            position[0] += 2
            saved = ckpt.save_step_checkpoint(state, tmp / ckpt.STEP_DIR, 1, position[0])
            ckpt.prune_step_checkpoints(tmp / ckpt.STEP_DIR, keep=1)
            return saved

        stock()  # warm-up (allocator, first-touch)
        # Interleaved, so that a shared disk's drifting load hits all writers alike.
        times = {stock: [], stock_fsync: [], ours: []}
        for _ in range(repeats):
            for fn, seconds in times.items():
                os.sync()  # each writer starts with nothing else dirty (ext4 fsyncs entangle)
                seconds.append(_time(fn, 1))
        t_stock, t_stock_fsync, t_ours = (statistics.median(times[fn]) for fn in (stock, stock_fsync, ours))
        fastest = {name: min(times[fn]) for name, fn in (("stock", stock), ("stock + fsync", stock_fsync), ("ours", ours))}
        saved = ckpt.list_step_checkpoints(tmp / ckpt.STEP_DIR)[0]
        nbytes = saved.path.stat().st_size
        stock_bytes = stock_path.stat().st_size

        def verify():
            _drop_cache(saved.path)
            assert ckpt.verify_step_checkpoint(saved) is None

        def load():
            torch.load(saved.path, map_location="cpu", weights_only=True)

        t_verify = _time(verify, repeats)
        t_load = _time(load, repeats)

    mib = nbytes / 2**20
    per_param = nbytes / params
    full_bytes = per_param * full_params
    rate = {"stock": stock_bytes / t_stock, "stock + fsync": stock_bytes / t_stock_fsync, "ours": nbytes / t_ours}
    print(f"model: ssl_conformer {size['num_blocks']} x {size['output_size']} + BEST-RQ head, "
          f"{params / 1e6:.1f} M trainable parameters, AdamW state after one update")
    print(f"checkpoint: {mib:.1f} MiB ours, {stock_bytes / 2**20:.1f} MiB stock "
          f"({per_param:.2f} bytes per parameter); median of {repeats} interleaved runs "
          "(ours includes deleting the checkpoint it replaces)")
    print()
    print(f"{'writer':<16}{'seconds':>10}{'MiB/s':>10}{'vs stock':>10}{'fastest s':>11}")
    for name, t in (("stock", t_stock), ("stock + fsync", t_stock_fsync), ("ours", t_ours)):
        print(f"{name:<16}{t:>10.3f}{rate[name] / 2**20:>10.0f}{t / t_stock:>10.2f}{fastest[name]:>11.3f}")
    print(f"ours / (stock + fsync): {t_ours / t_stock_fsync:.2f}")
    print(f"resume: validate (re-read + CRC-32) {t_verify:.3f} s, load {t_load:.3f} s "
          f"({nbytes / (t_verify + t_load) / 2**20:.0f} MiB/s together)")
    print()
    print(f"full-scale model: {full_params / 1e6:.0f} M trainable parameters -> "
          f"{full_bytes / 1e9:.2f} GB per step checkpoint ({per_param:.2f} B/param)")
    for name in ("stock", "stock + fsync", "ours"):
        print(f"  {name:<14} {full_bytes / rate[name]:6.1f} s at this disk's {rate[name] / 2**20:.0f} MiB/s")
    t_full = full_bytes / rate["ours"]
    t_full_resume = full_bytes / (nbytes / (t_verify + t_load))
    interval = 5 * 60
    print(f"  resume: validate + load {t_full_resume:.1f} s")
    print(f"  at --save_every_minutes 5: {t_full / interval:.1%} of training time spent writing "
          f"(rank 0 writes, the other ranks wait); keep 3 -> {3 * full_bytes / 1e9:.1f} GB on disk "
          f"(+1 while writing)")
    lo, hi = SECONDS_PER_UPDATE
    print(f"lost work per kill at the defaults: at most 5 min of training + one update "
          f"({lo}-{hi} s at full scale) + the restart (process start, {t_full_resume:.0f} s validate + "
          f"load, consumed batches skipped without reading)")


if __name__ == "__main__":
    main()
