#!/usr/bin/env python3
"""Step-checkpoint cost at 0.6B: how long rank 0 blocks training per save, ours vs ESPnet's.

The state: a 590M-parameter model (a stack of ``Linear(4096, 4096)``, the full-scale
Conformer's size; the layer type does not matter for serialization) with AdamW state
(both moments exist: every parameter has been updated once), i.e. ~7 GB in fp32.

* ESPnet's way: what ``espnet2.train.trainer.Trainer.run`` does for ``checkpoint.pth``,
  ``torch.save({model, reporter, optimizers, schedulers, scaler}, path)`` in the training
  thread (no fsync: it may return at page-cache speed; also timed with an fsync);
* ours: :meth:`espnet_ext.train.async_writer.AsyncCheckpointWriter.submit`, the time
  training is blocked (host snapshot into reused buffers + hand-off), and the background
  write's duration (serialize, CRC-32, fsync, atomic rename, manifest, prune).

Runs are interleaved (ESPnet, ours, ESPnet, ...) with an ``os.sync`` between, written to
a real disk under ``--dir``; medians are reported. The first snapshot allocates and
first-touches its buffers and is reported apart (training pays it once per run).

Resume: a fresh subprocess builds the model and optimizer, restores the checkpoint and
reports its peak RSS (``VmHWM``): ours (memory-mapped, pages released once copied,
``RunContext._restore``) and ESPnet's (``torch.load`` into memory, then
``load_state_dict``). The live training state itself (weights + moments) is the floor.

Last line: ``blocking_s_ours=X blocking_s_espnet=Y resume_peak_rss_gb=Z`` (Z: ours).

Run:  .venv/bin/python bench/checkpoint.py                 (590M: ~15 GB of RAM, minutes)
      .venv/bin/python bench/checkpoint.py --params 50M    (development)
"""

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

WIDTH = 4096


def _count(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1e3, "M": 1e6, "G": 1e9, "B": 1e9}.get(text[-1])
    return int(float(text[:-1]) * scale) if scale else int(text)


def _model(params: int) -> torch.nn.Module:
    layers = max(1, round(params / (WIDTH * WIDTH + WIDTH)))
    return torch.nn.Sequential(*[torch.nn.Linear(WIDTH, WIDTH) for _ in range(layers)])


def _optimizer(model):
    return torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), weight_decay=0.01, foreach=False)


def _train_once(model, optim):
    """One update of every parameter (both AdamW moments exist), one parameter at a time
    so that no full set of gradients is ever allocated."""
    for p in model.parameters():
        p.grad = torch.randn_like(p).mul_(1e-3)
        optim.step()
        p.grad = None


def _rss(field: str = "VmHWM") -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / 1e9
    return float("nan")


def _fsync(path: Path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def _resume_child(args) -> None:
    """In a fresh process: restore ``args.resume_child`` and print the peak RSS."""
    torch.set_num_threads(1)
    model = _model(_count(args.params))
    optim = _optimizer(model)
    built = _rss("VmRSS")
    path = Path(args.resume_child)
    tic = time.perf_counter()
    if args.impl == "ours":
        from espnet_ext.train import resume as R

        options = types.SimpleNamespace(
            output_dir=str(path.parent.parent),
            ngpu=0,
            keep_step_checkpoints=1,
            watchdog_minutes=None,
            accum_grad=1,
        )
        context = R.RunContext(
            model,
            [optim],
            [None],
            options,
            types.SimpleNamespace(distributed=False, dist_rank=0, dist_world_size=1),
        )
        rest = context._restore(path)
        del rest
        context.close()
    else:  # espnet2.train.trainer.Trainer.resume
        states = torch.load(path, map_location="cpu", weights_only=False)
        model.load_state_dict(states["model"])
        for o, s in zip([optim], states["optimizers"]):
            o.load_state_dict(s)
        del states
    gc.collect()
    seconds = time.perf_counter() - tic
    live = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    live += sum(
        v.numel() * v.element_size()
        for s in optim.state.values()
        for v in s.values()
        if isinstance(v, torch.Tensor)
    )
    print(
        json.dumps(
            {
                "peak_gb": _rss("VmHWM"),
                "after_gb": _rss("VmRSS"),
                "built_gb": built,
                "live_state_gb": live / 1e9,
                "seconds": seconds,
            }
        )
    )


def _resume(impl: str, path: Path, args) -> dict:
    cmd = [sys.executable, __file__, "--params", args.params, "--resume-child", str(path), "--impl", impl]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"resume child ({impl}) failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", default="590M", help="model size, e.g. 590M (default) or 50M")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dir", default="/tmp", help="where to write (a real disk; default /tmp)")
    parser.add_argument("--resume-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--impl", default="ours", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.resume_child:
        return _resume_child(args)
    torch.set_num_threads(1)

    from espnet2.train.reporter import Reporter

    from espnet_ext.train import checkpoint as ckpt
    from espnet_ext.train.async_writer import AsyncCheckpointWriter

    torch.manual_seed(0)
    model = _model(_count(args.params))
    optim = _optimizer(model)
    _train_once(model, optim)
    params = sum(p.numel() for p in model.parameters())
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    state_bytes += sum(v.numel() * v.element_size() for s in optim.state.values() for v in s.values())

    def espnet_state():
        return {
            "model": model.state_dict(),
            "reporter": Reporter().state_dict(),
            "optimizers": [optim.state_dict()],
            "schedulers": [None],
            "scaler": None,
        }

    def our_state(position):
        return dict(
            espnet_state(),
            format=ckpt.FORMAT,
            epoch=1,
            position=position,
            rng=[ckpt.capture_rng()],
            sub_reporter={"count": 0, "total_count": 0, "stats": {}},
            nonfinite_total=0,
            epoch_valid_updates=position,
            accum_grad=1,
            world_size=1,
        )

    with tempfile.TemporaryDirectory(dir=args.dir, prefix="bench_checkpoint.") as tmp:
        tmp = Path(tmp)
        stock_path = tmp / "checkpoint.pth"
        step_dir = tmp / ckpt.STEP_DIR
        writer = AsyncCheckpointWriter(step_dir, keep=1, pin_memory=False)
        espnet_s, espnet_fsync_s, ours_blocked, ours_snapshot, ours_write = [], [], [], [], []
        position = 0

        def ours():
            nonlocal position
            position += 1
            tic = time.perf_counter()
            timing = writer.submit(our_state(position), 1, position)
            result = writer.wait()
            return timing, time.perf_counter() - tic, result

        os.sync()
        first, first_total, _ = ours()  # allocates the snapshot buffers
        for _ in range(args.repeats):
            os.sync()
            tic = time.perf_counter()
            torch.save(espnet_state(), stock_path)
            espnet_s.append(time.perf_counter() - tic)
            _fsync(stock_path)
            espnet_fsync_s.append(time.perf_counter() - tic)
            os.sync()
            timing, total, result = ours()
            ours_blocked.append(timing["blocked_s"])
            ours_snapshot.append(timing["snapshot_s"])
            ours_write.append(result["write_s"])
        nbytes = result["bytes"]
        stock_bytes = stock_path.stat().st_size
        newest = result["checkpoint"].path
        peak_bench = _rss("VmHWM")
        writer.snapshot.release()
        model = optim = writer = None  # free them before the resume measurement
        gc.collect()
        resume_ours = _resume("ours", newest, args)
        resume_espnet = _resume("espnet", stock_path, args)

    med = statistics.median
    x, y = med(ours_blocked), med(espnet_s)
    rate_ours = nbytes / med(ours_write) / 2**20
    print(
        f"model: {params / 1e6:.0f} M parameters ({params // (WIDTH * WIDTH + WIDTH)} x Linear({WIDTH}, {WIDTH}))"
        " + AdamW moments: "
        f"{state_bytes / 1e9:.2f} GB of state; file {nbytes / 1e9:.2f} GB ours, {stock_bytes / 1e9:.2f} GB ESPnet"
    )
    print(
        f"disk: {args.dir}; median of {args.repeats} interleaved runs; torch threads 1; "
        f"bench peak RSS {peak_bench:.1f} GB (state + snapshot buffers)"
    )
    print()
    print(f"{'per save (s)':<46}{'median':>9}{'min':>9}{'max':>9}")
    rows = [
        ("ESPnet torch.save (training blocked)", espnet_s),
        ("ESPnet torch.save + fsync", espnet_fsync_s),
        ("ours: training blocked (snapshot + hand-off)", ours_blocked),
        ("ours:   of which snapshot copy", ours_snapshot),
        ("ours: background write (CRC, fsync, manifest)", ours_write),
    ]
    for name, values in rows:
        print(f"{name:<46}{med(values):>9.3f}{min(values):>9.3f}{max(values):>9.3f}")
    print(
        f"first save of a run (allocates {first['snapshot_s']:.1f} s of snapshot buffers): blocked "
        f"{first['blocked_s']:.3f} s, write done after {first_total:.1f} s"
    )
    print(
        f"snapshot copy {state_bytes / med(ours_snapshot) / 1e9:.1f} GB/s; background write "
        f"{rate_ours:.0f} MiB/s; ESPnet torch.save {stock_bytes / y / 2**20:.0f} MiB/s "
        f"(+ fsync {stock_bytes / med(espnet_fsync_s) / 2**20:.0f} MiB/s)"
    )
    print(
        f"ratio blocked ours / ESPnet: {x / y:.3f} (goal <= 0.2); vs ESPnet + fsync: "
        f"{x / med(espnet_fsync_s):.3f}"
    )
    print(
        f"at --save_every_minutes 5: training blocked {x / 300:.2%} of the time (ESPnet's way "
        f"{y / 300:.2%}); host memory for the snapshot: {state_bytes / 1e9:.1f} GB"
    )
    print()
    for name, r in (
        ("ours (mmap, pages released)", resume_ours),
        ("ESPnet (torch.load + load_state_dict)", resume_espnet),
    ):
        print(
            f"resume {name:<40} peak RSS {r['peak_gb']:5.2f} GB, after {r['after_gb']:5.2f} GB, "
            f"{r['seconds']:.1f} s (live state {r['live_state_gb']:.2f} GB, model+optimizer built "
            f"{r['built_gb']:.2f} GB)"
        )
    print(
        f"blocking_s_ours={x:.3f} blocking_s_espnet={y:.3f} resume_peak_rss_gb={resume_ours['peak_gb']:.2f}"
    )


if __name__ == "__main__":
    main()
