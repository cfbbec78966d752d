#!/usr/bin/env python3
"""Training-step throughput and peak memory: ssl_conformer vs ESPnet's conformer.

Both encoders get the same work: forward + backward of a fixed batch of
log-Mel-shaped inputs (80 channels) in train mode, one CPU thread, at the same
d_model, heads, blocks, linear_units and conv kernel. ESPnet's encoder is the
stock ``ConformerEncoder`` with rel_pos / rel_selfattn / rel_pos_type latest,
macaron_style and the conv module. Ours runs with its default 64 subsampling
channels (the recipe's default) and with subsampling channels = d_model as
ESPnet's ``Conv2dSubsampling`` has (the equal-size, apples-to-apples row), each
eager and compiled (``torch.compile``, inductor by default, in place through
``nn.Module.compile``; compilation happens in the warm-up steps, which are not
timed). The last line gives ``equal_size_ratio_eager`` and
``equal_size_ratio_compiled``: the equal-size row's CPU-time throughput over
the stock encoder's (eager) at the longest length.

Each (encoder, length) configuration runs twice, each time in a fresh
subprocess: once for throughput with the default allocator, once for memory.

Memory method: the memory run fixes ``MALLOC_MMAP_THRESHOLD_`` at 64 KiB, so tensor
buffers are mmapped and returned to the OS when freed and RSS follows live memory.
(That makes every allocation above 64 KiB fault in fresh pages, a cost a training
run does not pay below glibc's 32 MiB dynamic threshold, so throughput is not
measured in that run: the encoder with more mid-sized temporaries would pay more.)
After building the model and inputs and one warm-up step, the worker resets
the kernel's RSS high-water mark (``echo 5 > /proc/self/clear_refs``), reads
the current RSS as baseline, runs the timed steps and reads ``VmHWM``. Peak
memory = VmHWM - baseline: activations, autograd buffers, gradients and
temporaries of a training step, excluding the model weights and inputs.

Throughput: utterances per second of the fastest timed step, measured in
process CPU time (one compute thread, so on an idle machine this equals wall
time; on a shared, oversubscribed machine it excludes time spent waiting for a
core, which wall time does not). Wall-clock throughput of the fastest step is
printed too. Ratios use the CPU-time figures.

Run:  .venv/bin/python bench/encoder.py            (about 10 minutes)
      .venv/bin/python bench/encoder.py --quick    (short smoke run)
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _worker(cfg: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(REPO))
    common = dict(
        input_size=80,
        output_size=cfg["d_model"],
        attention_heads=cfg["heads"],
        linear_units=cfg["linear_units"],
        num_blocks=cfg["blocks"],
        dropout_rate=0.1,
        positional_dropout_rate=0.1,
        attention_dropout_rate=0.0,
        input_layer="conv2d",
        normalize_before=True,
        macaron_style=True,
        activation_type="swish",
        use_cnn_module=True,
        cnn_module_kernel=cfg["kernel"],
    )
    torch.manual_seed(0)
    if cfg["encoder"] == "stock":
        from espnet2.asr.encoder.conformer_encoder import ConformerEncoder

        model = ConformerEncoder(
            **common,
            pos_enc_layer_type="rel_pos",
            selfattention_layer_type="rel_selfattn",
            rel_pos_type="latest",
        )
    else:
        from espnet_ext.nets.ssl_conformer import SSLConformerEncoder

        model = SSLConformerEncoder(**common, subsampling_channels=cfg["channels"])
    model.train()
    if cfg.get("compile"):
        model.compile(backend=cfg["compile"])

    batch, frames = cfg["batch"], cfg["frames"]
    x = torch.randn(batch, frames, 80)
    # a realistic padded batch: lengths spread from T down to 0.85 T
    lengths = torch.tensor([frames - (i * frames * 15) // (100 * max(1, batch - 1)) for i in range(batch)])

    def step() -> tuple:
        model.zero_grad(set_to_none=True)
        start, start_cpu = time.perf_counter(), time.process_time()
        out, olens, _ = model(x, lengths)
        valid = torch.arange(out.size(1))[None, :] < olens[:, None]
        loss = (out.pow(2).sum(-1) * valid).sum() / valid.sum()
        loss.backward()
        return time.perf_counter() - start, time.process_time() - start_cpu

    step()  # warm-up: one-off allocations, oneDNN primitive creation, compilation
    if cfg.get("compile"):
        step()  # a compiled model may recompile once (dynamic shapes)
    model.zero_grad(set_to_none=True)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset VmHWM to the current RSS
    baseline = _status_kib("VmRSS")
    times = [step() for _ in range(cfg["iters"])]
    peak = _status_kib("VmHWM")
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "wall": [w for w, _ in times],
        "cpu": [c for _, c in times],
        "peak_mib": (peak - baseline) / 1024.0,
    }


def _run(cfg: dict, memory: bool) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    if memory:  # RSS follows live memory; every allocation above 64 KiB then page-faults afresh
        env.update(MALLOC_MMAP_THRESHOLD_="65536", MALLOC_TRIM_THRESHOLD_="65536")
    proc = subprocess.run(
        [sys.executable, __file__, "--worker", json.dumps(cfg)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"worker {cfg} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--linear-units", type=int, default=1024)
    parser.add_argument("--kernel", type=int, default=31)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--frames", type=int, nargs="+", default=[1000, 3000])
    parser.add_argument(
        "--compile-backend",
        default="inductor",
        help="torch.compile backend of the compiled rows ('none': skip them)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(_worker(json.loads(args.worker))))
        return
    if args.quick:
        args.blocks, args.batch, args.iters, args.frames = 1, 2, 1, [200, 400]

    base = dict(
        d_model=args.d_model,
        heads=args.heads,
        blocks=args.blocks,
        linear_units=args.linear_units,
        kernel=args.kernel,
        batch=args.batch,
        iters=args.iters,
    )
    backend = None if args.compile_backend == "none" else args.compile_backend
    equal = f"ssl_conformer, {args.d_model} sub. ch."
    encoders = [("stock conformer (rel_pos)", dict(encoder="stock"))]
    for label, channels in (("ssl_conformer, 64 sub. ch.", 64), (equal, args.d_model)):
        encoders.append((label, dict(encoder="ours", channels=channels)))
        if backend:
            encoders.append(
                (
                    f"{label[len('ssl_conformer, ') :]} compiled",
                    dict(encoder="ours", channels=channels, compile=backend),
                )
            )
    print(
        f"d_model={args.d_model} heads={args.heads} blocks={args.blocks} "
        f"linear_units={args.linear_units} kernel={args.kernel} batch={args.batch} "
        f"train mode, forward+backward, 1 thread, "
        f"{args.iters} timed steps after 1 warm-up"
    )
    header = (
        f"{'frames':>6} {'encoder':<28} {'params':>9} {'utt/s':>7} "
        f"{'wall u/s':>8} {'peak MiB':>9} {'thr x':>6} {'mem x':>6}"
    )
    print(header)
    print("-" * len(header))
    ratios_at = {}
    for frames in args.frames:
        stock = None
        for label, extra in encoders:
            res = _run({**base, **extra, "frames": frames}, memory=False)
            res["peak_mib"] = _run({**base, **extra, "frames": frames}, memory=True)["peak_mib"]
            ups = args.batch / min(res["cpu"])
            wall_ups = args.batch / min(res["wall"])
            if stock is None:
                stock = (ups, res["peak_mib"])
                ratios = f"{'1.00':>6} {'1.00':>6}"
            else:
                ratios = f"{ups / stock[0]:>6.2f} {res['peak_mib'] / stock[1]:>6.2f}"
                ratios_at[label] = ups / stock[0]
            print(
                f"{frames:>6} {label:<28} {res['params'] / 1e6:>8.2f}M {ups:>7.2f} "
                f"{wall_ups:>8.2f} {res['peak_mib']:>9.0f} {ratios}",
                flush=True,
            )
    print(
        "utt/s: CPU-time throughput; wall u/s: wall-clock throughput; "
        "peak MiB: peak RSS above model+inputs\n"
        "thr x = CPU-time throughput ours/stock (higher is better); "
        "mem x = peak memory ours/stock (lower is better)"
    )
    compiled = ratios_at.get(f"{equal[len('ssl_conformer, ') :]} compiled")
    print(
        f"frames={args.frames[-1]} "
        f"equal_size_ratio_eager={ratios_at[equal]:.2f} "
        f"equal_size_ratio_compiled="
        + ("n/a" if compiled is None else f"{compiled:.2f}")
        + f" default_ratio_eager={ratios_at['ssl_conformer, 64 sub. ch.']:.2f}"
    )


if __name__ == "__main__":
    main()
