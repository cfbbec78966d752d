#!/usr/bin/env python3
"""Gradient accumulation on DDP: ESPnet's stock trainer vs espnet_ext's no_sync trainer.

Part 1 (measured). ``--world`` gloo processes on this machine (default 2), each with one
compute thread, train the same real ESPnet ASR model (the embedded recipe's ssl_conformer
encoder + Transformer decoder, dropout and SpecAugment off) on the same pre-materialized
micro-batches from ESPnet's own data pipeline (a synthetic kaldi-ark set, sharded by ESPnet
per rank), with ``accum_grad`` (default 8), once with ``espnet2.train.trainer.Trainer.
train_one_epoch`` (stock) and once with ``espnet_ext.train.trainer.Trainer.train_one_epoch``
and ``accum_no_sync true`` (ours), starting from the same parameters, alternating the order
over ``--repeats``. Counted per optimizer step on rank 0:

* gradient all-reduces: DDP's bucket all-reduces, through a counting comm hook
  (:class:`espnet_ext.distributed.comm_stats.CommCounter`), calls and payload bytes;
* every other collective, by kind (all_reduce, all_gather, broadcast, barrier, the
  object collectives, DDP's buffer broadcast): ESPnet's per-micro-batch stop flag and
  statistics gathers (stock), the per-micro-batch loss-weight all-reduce and one
  statistics all-reduce per update (ours, ``--stats_reduce update``), and whatever else runs.

Time per optimizer step is wall time (the median over repeats; the machine may be shared,
so treat the ratio as indicative). The final parameters of the two runs are compared.

Part 2 (on paper). What the saved all-reduces are worth for the seed's setting: model size
from building the full-scale configs' models on the meta device, fp32 gradients (ESPnet's
``use_amp`` autocasts activations; parameters and their gradients stay fp32, and DDP reduces
them as such), a ring all-reduce moving 2 (N - 1) / N x the gradient bytes through each
node's inter-node links (NCCL's rings cross every node boundary once per ring, so a node's
link carries what one rank sends), at assumed per-node bandwidths. With ``accum_grad`` 8
the no_sync trainer saves 7 all-reduces per optimizer step.

Run:  .venv/bin/python bench/ddp_accum.py              (about 1-2 minutes)
      .venv/bin/python bench/ddp_accum.py --quick      (short smoke run)
"""

import argparse
import copy
import dataclasses
import gc
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# The embedded recipe's model (conf/*_embedded.yaml), deterministic: no dropout, no SpecAugment.
_MODEL_CONF = {
    "frontend": None,
    "input_size": 80,
    "normalize": None,
    "specaug": None,
    "encoder": "ssl_conformer",
    "encoder_conf": {
        "output_size": 144,
        "attention_heads": 4,
        "linear_units": 576,
        "num_blocks": 6,
        "cnn_module_kernel": 15,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "attention_dropout_rate": 0.0,
        "subsampling_channels": 64,
    },
    "decoder": "transformer",
    "decoder_conf": {
        "attention_heads": 4,
        "linear_units": 576,
        "num_blocks": 2,
        "dropout_rate": 0.0,
        "positional_dropout_rate": 0.0,
        "self_attention_dropout_rate": 0.0,
        "src_attention_dropout_rate": 0.0,
    },
    "model_conf": {"ctc_weight": 0.3, "lsm_weight": 0.1, "length_normalized_loss": False},
    "batch_type": "sorted",
    "num_workers": 0,
    "optim": "sgd",
    "optim_conf": {"lr": 0.05},
    "grad_clip": 1000.0,
    "num_att_plot": 0,
    "seed": 0,
}
_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_dataset(root: Path, n_utts: int, min_frames: int, max_frames: int, seed: int = 0) -> Path:
    """A synthetic ESPnet training set: kaldi-ark (T, 80) features, shape file, char text."""
    import kaldiio
    import numpy as np

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with (
        kaldiio.WriteHelper(f"ark,scp:{root}/feats.ark,{root}/feats.scp") as ark,
        open(root / "feats_shape", "w") as shape,
        open(root / "text", "w") as text,
    ):
        for i in range(n_utts):
            utt = f"utt{i:05d}"
            frames = int(rng.integers(min_frames, max_frames + 1))
            ark(utt, rng.standard_normal((frames, 80)).astype(np.float32))
            shape.write(f"{utt} {frames},80\n")
            words = [
                "".join(rng.choice(list(_LETTERS[:12]), size=int(rng.integers(2, 6))))
                for _ in range(int(rng.integers(1, 4)))
            ]
            text.write(f"{utt} {' '.join(words)}\n")
    (root / "tokens.txt").write_text(
        "\n".join(["<blank>", "<unk>", "<space>", *_LETTERS, "<sos/eos>"]) + "\n"
    )
    return root


def _train_args(data: Path, config: Path, out: Path):
    return [
        "--config", str(config),
        "--token_type", "char",
        "--token_list", str(data / "tokens.txt"),
        "--train_data_path_and_name_and_type", f"{data}/feats.scp,speech,kaldi_ark",
        "--train_data_path_and_name_and_type", f"{data}/text,text,text",
        "--train_shape_file", str(data / "feats_shape"),
        "--valid_data_path_and_name_and_type", f"{data}/feats.scp,speech,kaldi_ark",
        "--valid_data_path_and_name_and_type", f"{data}/text,text,text",
        "--valid_shape_file", str(data / "feats_shape"),
        "--output_dir", str(out),
        "--ngpu", "0",
        "--multiprocessing_distributed", "false",
        "--dist_backend", "gloo",
    ]  # fmt: skip


def _run_once(trainer_cls, no_sync: bool, task, args, options, dist_opt, batches, init_state):
    import torch
    import torch.distributed as dist
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
    from espnet2.train.reporter import Reporter

    from espnet_ext.distributed.comm_stats import CommCounter

    set_all_random_seed(args.seed)
    model = task.build_model(args)
    model.load_state_dict(init_state)
    ddp = torch.nn.parallel.DistributedDataParallel(
        model,
        find_unused_parameters=args.unused_parameters,
        gradient_as_bucket_view=args.gradient_as_bucket_view,
    )  # as espnet2.train.trainer.Trainer.run wraps it on CPU
    counter = CommCounter()
    counter.install(ddp)
    optimizers = task.build_optimizers(args, model=model)
    reporter = Reporter()
    reporter.set_epoch(1)
    dist.barrier()
    with counter.count_collectives():
        t0 = time.perf_counter()
        with reporter.observe("train", 1) as sub:
            trainer_cls.train_one_epoch(
                model=ddp,
                iterator=batches,
                optimizers=optimizers,
                schedulers=[None],
                scaler=None,
                reporter=sub,
                summary_writer=None,
                options=dataclasses.replace(
                    options, accum_no_sync=no_sync, stats_reduce="update" if no_sync else "micro_batch"
                ),
                distributed_option=dist_opt,
            )
        elapsed = time.perf_counter() - t0
    dist.barrier()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    epoch_stats = dict(reporter.stats[1]["train"])  # the epoch's aggregated statistics
    del ddp, optimizers
    gc.collect()
    return counter, elapsed, state, epoch_stats


def _worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
        WORLD_SIZE=str(world), LOCAL_RANK=str(rank), OMP_NUM_THREADS="1",
    )  # fmt: skip
    import torch

    torch.set_num_threads(1)
    torch.set_num_interop_threads(1)
    sys.path.insert(0, str(REPO))
    from espnet2.torch_utils.set_all_random_seed import set_all_random_seed
    from espnet2.train.distributed_utils import DistributedOption, resolve_distributed_mode
    from espnet2.train.trainer import Trainer as StockTrainer
    from espnet2.utils.build_dataclass import build_dataclass

    import espnet_ext  # noqa: F401  (registers ssl_conformer)
    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.train.trainer import Trainer as OurTrainer

    args = ASRTask.get_parser().parse_args(
        _train_args(Path(cfg["data"]), Path(cfg["config"]), Path(cfg["out"]))
    )
    resolve_distributed_mode(args)  # WORLD_SIZE > 1 with an external launcher: distributed
    dist_opt = build_dataclass(DistributedOption, args)
    dist_opt.init_options()
    dist_opt.init_torch_distributed()
    set_all_random_seed(args.seed)
    init_state = copy.deepcopy(ASRTask.build_model(args).state_dict())
    n_params = sum(v.numel() for v in init_state.values() if v.is_floating_point())
    options = OurTrainer.build_options(args)
    batches = list(ASRTask.build_iter_factory(args, dist_opt, mode="train").build_iter(1))
    steps = len(batches) // args.accum_grad

    # One gloo all-reduce of a gradient-sized fp32 buffer, for scale (median of 5).
    buf = torch.zeros(n_params)
    ar_times = []
    for _ in range(6):
        torch.distributed.barrier()
        t0 = time.perf_counter()
        torch.distributed.all_reduce(buf)
        ar_times.append(time.perf_counter() - t0)
    allreduce_s = statistics.median(ar_times[1:])

    runs = {"stock": (StockTrainer, False), "ours": (OurTrainer, True)}
    # Warm-up (allocator, DDP bucket rebuild, kernels), discarded.
    warm = batches[: args.accum_grad]
    for trainer_cls, no_sync in runs.values():
        _run_once(trainer_cls, no_sync, ASRTask, args, options, dist_opt, warm, init_state)

    stats = {name: {"times": []} for name in runs}
    states, epoch_stats = {}, {}
    for rep in range(cfg["repeats"]):
        order = list(runs) if rep % 2 == 0 else list(reversed(runs))
        for name in order:
            counter, elapsed, state, epoch_stats[name] = _run_once(
                *runs[name], ASRTask, args, options, dist_opt, batches, init_state
            )
            stats[name]["times"].append(elapsed / steps)
            stats[name].update(
                grad_calls=counter.grad_calls / steps,
                grad_bytes=counter.grad_bytes / steps,
                other_calls=counter.other_calls / steps,
                other_bytes=counter.other_bytes / steps,
                kinds={k: [c / steps, b / steps] for k, (c, b) in counter.kinds.items()},
            )
            states[name] = state
    if rank == 0:
        diff = max(
            (states["stock"][k].float() - states["ours"][k].float()).abs().max().item()
            for k in states["stock"]
        )
        moved = max(
            (states["stock"][k].float() - init_state[k].float()).abs().max().item() for k in states["stock"]
        )
        skip = (
            "time",
            "total_count",
            "train_time",
            "iter_time",
            "forward_time",
            "backward_time",
            "optim_step_time",
        )
        stat_diff = {
            k: abs(float(epoch_stats["stock"][k]) - float(epoch_stats["ours"][k]))
            for k in epoch_stats["stock"]
            if k not in skip and k in epoch_stats["ours"]
        }
        result = dict(
            stat_diff=stat_diff, epoch_stats={n: {k: float(v) for k, v in d.items() if k not in skip} for n, d in epoch_stats.items()},
            world=world, accum_grad=args.accum_grad, steps=steps, repeats=cfg["repeats"],
            micro_batch_utts=args.batch_size, n_params=n_params, grad_nbytes=4 * n_params,
            stats=stats, max_param_diff=diff, max_param_update=moved, allreduce_s=allreduce_s,
        )  # fmt: skip
        Path(cfg["result"]).write_text(json.dumps(result, indent=1))
    torch.distributed.destroy_process_group()


def measure(
    world: int, accum_grad: int, steps: int, repeats: int, utts_per_rank: int, frames: tuple, workdir: Path
) -> dict:
    import torch.multiprocessing as mp
    import yaml

    batch = world * utts_per_rank
    data = write_dataset(workdir / "data", batch * accum_grad * steps, *frames)
    conf = dict(_MODEL_CONF, batch_size=batch, accum_grad=accum_grad)
    config = workdir / "bench.yaml"
    config.write_text(yaml.safe_dump(conf))
    cfg = dict(data=str(data), config=str(config), out=str(workdir / "exp"),
               result=str(workdir / "result.json"), repeats=repeats)  # fmt: skip
    mp.start_processes(_worker, args=(world, _free_port(), cfg), nprocs=world, start_method="spawn")
    return json.loads(Path(cfg["result"]).read_text())


def seed_param_counts() -> dict:
    """Trainable parameters of the full-scale configs' models, built on the meta device."""
    import torch

    sys.path.insert(0, str(REPO))
    import espnet_ext  # noqa: F401
    from espnet_ext.tasks.asr import ASRTask
    from espnet_ext.tasks.ssl import SSLTask

    counts = {}
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp, "ssl_tokens.txt")
        small.write_text("<blank>\n<unk>\n<sos/eos>\n")
        bpe = Path(tmp, "tokens.txt")  # LibriSpeech recipe: nbpe 5000
        bpe.write_text("\n".join(["<blank>", "<unk>", *[f"t{i}" for i in range(4997)], "<sos/eos>"]))
        jobs = [
            ("pre-training", SSLTask, "conf/pretrain_conformer_bestrq.yaml", small,
             ["--preencoder", "none"]),
            ("fine-tuning", ASRTask, "conf/finetune_conformer_transformer.yaml", bpe, []),
        ]  # fmt: skip
        for name, task, conf, tokens, extra in jobs:
            args = task.get_parser().parse_args(
                ["--config", str(REPO / conf), "--token_list", str(tokens), "--output_dir", tmp] + extra
            )
            with torch.device("meta"):
                model = task.build_model(args)
            steps = args.max_epoch * args.num_iters_per_epoch // args.accum_grad
            counts[name] = (conf, sum(p.numel() for p in model.parameters() if p.requires_grad), steps)
    return counts


def paper_estimate(counts: dict, ranks: int, accum_grad: int, link_gbps) -> list:
    lines = [
        f"Seed setting on paper: {ranks} ranks (16 nodes x 8 A100), accum_grad {accum_grad}: "
        f"the no_sync trainer saves {accum_grad - 1} gradient all-reduces per optimizer step.",
        f"  ring all-reduce: each node's inter-node links carry 2 x (N-1)/N = "
        f"{2 * (ranks - 1) / ranks:.3f} x the gradient bytes; fp32 gradients (4 B/param).",
    ]
    header = f"  {'model':<14}{'params':>8}{'grads':>9}" + "".join(f"{f'{g:g} Gb/s':>22}" for g in link_gbps)
    lines += [
        header,
        f"  {'':<14}{'':>8}{'':>9}" + "".join(f"{'1 AR / saved per step':>22}" for _ in link_gbps),
    ]
    for name, (_conf, n, _) in counts.items():
        nbytes = 4 * n
        row = f"  {name:<14}{n / 1e6:>7.0f}M{nbytes / 1e9:>7.2f}GB"
        for g in link_gbps:
            t = 2 * (ranks - 1) / ranks * nbytes / (g * 1e9 / 8)
            row += f"{f'{t:.3f} s / {(accum_grad - 1) * t:.2f} s':>22}"
        lines.append(row)
    for name, (_conf, n, total) in counts.items():
        if total:
            t = [2 * (ranks - 1) / ranks * 4 * n / (g * 1e9 / 8) * (accum_grad - 1) for g in link_gbps]
            lines.append(
                f"  over {name}'s {total:,} optimizer steps: "
                + ", ".join(f"{x * total / 3600:.0f} h at {g:g} Gb/s" for x, g in zip(t, link_gbps))
                + " of all-reduce time saved (less what DDP would have overlapped with backward)"
            )
    lines.append(
        "  For scale: the configs' budget puts an optimizer step (8 micro-batches) at ~0.25-0.5 s "
        "of compute, so one micro-batch's backward (~2/3 of 1/8 of that: ~20-40 ms) can hide at "
        "most that much of each per-micro-batch all-reduce DDP overlaps with it."
    )
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--accum_grad", type=int, default=8)
    p.add_argument("--steps", type=int, default=3, help="optimizer steps per timed run")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--utts_per_rank", type=int, default=2)
    p.add_argument("--frames", type=int, nargs=2, default=(100, 200), help="min, max frames per utterance")
    p.add_argument(
        "--link_gbps",
        type=float,
        nargs="+",
        default=(200.0, 400.0, 1600.0),
        help="assumed inter-node bandwidth per node (Gb/s) for the paper estimate",
    )
    p.add_argument("--no_estimate", action="store_true", help="skip part 2")
    p.add_argument("--quick", action="store_true", help="accum_grad 4, 1 step, 1 repeat")
    p.add_argument("--json", default=None, help="also write the measured figures here")
    a = p.parse_args()
    if a.quick:
        a.accum_grad, a.steps, a.repeats = 4, 1, 1

    with tempfile.TemporaryDirectory() as tmp:
        r = measure(a.world, a.accum_grad, a.steps, a.repeats, a.utts_per_rank, tuple(a.frames), Path(tmp))
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=1))
    s, o = r["stats"]["stock"], r["stats"]["ours"]
    t_s, t_o = statistics.median(s["times"]), statistics.median(o["times"])
    print(
        f"DDP gradient accumulation, {r['world']} gloo ranks x 1 thread, accum_grad {r['accum_grad']}, "
        f"{r['micro_batch_utts']} utts per micro-batch ({r['micro_batch_utts'] // r['world']} per rank), "
        f"model {r['n_params'] / 1e6:.2f}M params ({r['grad_nbytes'] / 1e6:.1f} MB fp32 grads); "
        f"{r['steps']} optimizer steps x {r['repeats']} repeats per trainer"
    )
    print(f"  {'per optimizer step':<38}{'stock ESPnet':>14}{'ours':>16}{'ratio':>8}")
    rows = [
        ("gradient all-reduce calls (DDP buckets)", s["grad_calls"], o["grad_calls"], "{:.1f}"),
        ("gradient all-reduce payload (MB)", s["grad_bytes"] / 1e6, o["grad_bytes"] / 1e6, "{:.1f}"),
        ("  = gradient sets reduced", s["grad_bytes"] / r["grad_nbytes"], o["grad_bytes"] / r["grad_nbytes"], "{:.1f}"),
        ("other collectives, all kinds", s["other_calls"], o["other_calls"], "{:.1f}"),
        ("other collectives payload (kB)", s["other_bytes"] / 1e3, o["other_bytes"] / 1e3, "{:.2f}"),
        ("wall time per step (s, median)", t_s, t_o, "{:.3f}"),
    ]  # fmt: skip
    kinds = sorted(set(s["kinds"]) | set(o["kinds"]))
    by_kind = [
        (f"  {k}: calls", s["kinds"].get(k, [0, 0])[0], o["kinds"].get(k, [0, 0])[0], "{:.1f}") for k in kinds
    ]
    for name, a_, b_, fmt in rows:
        ratio = f"{a_ / b_:.2f}x" if b_ else "-"
        print(f"  {name:<38}{fmt.format(a_):>14}{fmt.format(b_):>16}{ratio:>8}")
    print("  every collective per optimizer step, by kind (stock: --stats_reduce micro_batch; ours: update):")
    for name, a_, b_, fmt in by_kind:
        print(f"  {name:<52}{fmt.format(a_):>8}{fmt.format(b_):>10}")
    print(
        f"  {'  total collectives':<52}{s['grad_calls'] + s['other_calls']:>8.1f}"
        f"{o['grad_calls'] + o['other_calls']:>10.1f}"
    )
    print(
        f"  one gloo all-reduce of the {r['grad_nbytes'] / 1e6:.1f} MB gradient here: "
        f"{r['allreduce_s'] * 1e3:.1f} ms (saved per step: {s['grad_bytes'] / r['grad_nbytes'] - 1:.0f} of them)"
    )
    print(
        f"  time per step, all repeats (s): stock {['%.3f' % x for x in s['times']]}, "
        f"ours {['%.3f' % x for x in o['times']]}"
    )
    print(
        f"  final parameters: max |stock - ours| = {r['max_param_diff']:.2e} "
        f"(largest update from the start: {r['max_param_update']:.2e})"
    )
    worst = max(r["stat_diff"], key=r["stat_diff"].get)
    print(
        f"  epoch statistics (loss, acc, ...): max |stock - ours| = {r['stat_diff'][worst]:.2e} ({worst}, "
        f"stock {r['epoch_stats']['stock'][worst]:.6g}) over {len(r['stat_diff'])} statistics"
    )
    if a.no_estimate:
        return
    counts = seed_param_counts()
    print()
    for line in paper_estimate(counts, 128, 8, a.link_gbps):
        print(line)


if __name__ == "__main__":
    main()
